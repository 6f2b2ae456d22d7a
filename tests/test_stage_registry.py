"""Every place that lists the stages agrees with the one registry, steps/stages.py.

The places derived from it (the runner's mapping, scripts/build-images) are
checked here too, so that a stage added to the registry and nowhere else
fails with the name of each place still to write.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from steps.cloudbuild import engine
from steps.lib.kustomize import KUSTOMIZE_IMAGE
from steps.stages import IMAGE_STAGES, IMAGE_TARGETS, IMAGES, STAGES, TOOLS, Stage, by_name

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DOCKERFILE = (REPO / "Dockerfile.steps").read_text()


def dockerfile_stages() -> dict[str, list[str]]:
    """Each ``FROM ... AS NAME`` block of Dockerfile.steps: its lines, FROM first."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DOCKERFILE.splitlines():
        found = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line)
        if found:
            current = blocks.setdefault(found.group(2), [line])
        elif current is not None:
            current.append(line)
    return blocks


BLOCKS = dockerfile_stages()


def base_of(block: str) -> str:
    found = re.match(r"FROM\s+(\S+)", BLOCKS[block][0])
    assert found
    return found.group(1)


def copied_env(block: str) -> str:
    """The environment a target copies in (``COPY --from=env-X /opt/gitops-steps``)."""
    for line in BLOCKS[block]:
        found = re.match(r"COPY --from=(\S+) /opt/gitops-steps", line)
        if found:
            return found.group(1)
    raise AssertionError(f"Dockerfile.steps target {block}: copies no /opt/gitops-steps")


def installed_extras(env: str) -> set[str]:
    """The extras an ``env-*`` environment's ``deps-*`` block installs."""
    deps = base_of(env)
    for line in BLOCKS[deps]:
        found = re.search(r"requirements-of\.py((?:\s+[\w-]+)*)\s*>", line)
        if found:
            return set(found.group(1).split())
    raise AssertionError(f"Dockerfile.steps {deps}: no requirements-of.py line")


def test_names_are_unique_and_images_exist() -> None:
    assert len({stage.name for stage in STAGES}) == len(STAGES)
    for stage in STAGES:
        assert by_name(stage.image).has_own_image, f"{stage.name}: {stage.image} has no image"
        host = by_name(stage.image)
        assert set(stage.extras) <= set(host.extras), f"{stage.name}: {host.name} lacks extras"
        assert not stage.git or host.git, f"{stage.name} needs git; {host.name} has none"
    own = tuple(image.target for image in IMAGES if image.variant is None)
    assert own == tuple(stage.name for stage in IMAGE_STAGES)
    assert len(set(IMAGE_TARGETS)) == len(IMAGE_TARGETS)


def test_the_image_kustomize_names_is_the_one_that_carries_it() -> None:
    """steps/lib/kustomize.py's refusal names an image (libraries cannot import the registry)."""
    carriers = [image.target for image in IMAGES if image.kubectl]
    assert carriers == [KUSTOMIZE_IMAGE]
    assert next(i for i in IMAGES if i.target == KUSTOMIZE_IMAGE).stage.name == "update-manifest"


@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.name)
def test_module_has_main(stage: Stage) -> None:
    assert importlib.util.find_spec(stage.module) is not None, f"{stage.module}: no such module"
    assert "def main(argv" in Path(REPO, *stage.module.split(".")).with_suffix(".py").read_text()


def test_console_scripts() -> None:
    expected = {stage.script: f"{stage.module}:main" for stage in STAGES}
    expected |= {script: f"{module}:main" for script, module in TOOLS.items()}
    assert PROJECT["scripts"] == expected, "pyproject.toml [project.scripts]"


def test_extras() -> None:
    declared = set(PROJECT["optional-dependencies"])
    # gitops-sandbox is shipped on purpose, as an extra that brings every stage it runs.
    assert PROJECT["optional-dependencies"]["sandbox"] == ["gitops-steps[all]"]
    for stage in STAGES:
        assert set(stage.extras) <= declared, f"{stage.name}: extras missing in pyproject.toml"


def test_dockerfile_targets() -> None:
    finals = {name for name, lines in BLOCKS.items() if any("ENTRYPOINT" in x for x in lines)}
    assert finals == set(IMAGE_TARGETS), "Dockerfile.steps targets"
    header = re.search(r"^# Targets: (.*)\.$", DOCKERFILE, re.M)
    assert header and header.group(1).split(", ") == list(IMAGE_TARGETS), "header comment"
    for image in IMAGES:
        lines = BLOCKS[image.target]
        assert base_of(image.target) == ("with-git" if image.git else "base"), image.target
        assert f'ENTRYPOINT ["/opt/gitops-steps/bin/{image.stage.script}"]' in lines, image.target
        assert any(f'title="{image.stage.script}"' in line for line in lines), image.target
        extras = installed_extras(copied_env(image.target))
        assert extras == set(image.extras), f"{image.target}: Dockerfile.steps installs {extras}"


def test_cloudbuild_steps_yaml_builds_and_smoke_tests_each_image() -> None:
    config = yaml.safe_load((REPO / "cloudbuild" / "steps.yaml").read_text())
    steps = {step["id"]: step for step in config["steps"]}
    built = [step_id.removeprefix("build-") for step_id in steps if step_id.startswith("build-")]
    assert built == list(IMAGE_TARGETS), "cloudbuild/steps.yaml build-* steps"
    pushed = [image.split("/")[-1].split(":")[0] for image in config["images"]]
    assert pushed == list(IMAGE_TARGETS), "cloudbuild/steps.yaml images:"
    for target in IMAGE_TARGETS:
        args = steps[f"build-{target}"]["args"]
        assert args[args.index("--target") + 1] == target
        assert steps[f"help-{target}"]["name"].split("/")[-1].startswith(f"{target}:")


def test_runner_maps_each_image_to_its_script() -> None:
    assert tuple(engine.STAGES) == IMAGE_TARGETS
    for image in IMAGES:
        name = f"us-docker.pkg.dev/p/gitops-steps/{image.target}:1.0"
        assert engine.stage_of(name, None) == image.stage.name
        assert engine.stage_of(name, "us-docker.pkg.dev/p/gitops-steps") == image.stage.name


def test_build_images_builds_each_image() -> None:
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert proc.stdout.split() == list(IMAGE_TARGETS)


def test_readme_documents_each_stage() -> None:
    headings = re.findall(r"^## (gitops-.*)$", (REPO / "README.md").read_text(), re.M)
    documented = {name for heading in headings for name in re.findall(r"gitops-[\w-]+", heading)}
    assert {stage.script for stage in STAGES} <= documented
