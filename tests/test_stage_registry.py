"""Every place that lists the stages agrees with the one registry, steps/stages.py.

Some places derive it when they run (the runner's mapping, scripts/build-images,
the image tests, the benchmarks); scripts/stage_files.py writes the others'
generated parts (Dockerfile.steps, cloudbuild/steps.yaml, pyproject.toml's
console scripts, the README's image table). Each is checked here, so that a
registry edit not followed by the generator fails naming the place and the
command; the last test proves, on a copy of the tree, that a seventh stage is
its module plus one registry row.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

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
    finals = [name for name, lines in BLOCKS.items() if any("ENTRYPOINT" in x for x in lines)]
    assert finals == list(IMAGE_TARGETS), "Dockerfile.steps targets"
    assert re.search(r"^ARG BASE_IMAGE=\S+$", DOCKERFILE, re.M), "the base stays an ARG"
    assert BLOCKS["base"][0] == "FROM ${BASE_IMAGE} AS base"
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


# -- the generated parts, and a seventh stage


def stage_files() -> ModuleType:
    """scripts/stage_files.py (a script, not part of the package), imported."""
    spec = importlib.util.spec_from_file_location(
        "stage_files", REPO / "scripts" / "stage_files.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_parts_are_what_the_registry_says() -> None:
    generator = stage_files()
    for path, text in generator.render(REPO).items():
        assert (REPO / path).read_text() == text, (
            f"{path} differs from steps/stages.py: run {generator.COMMAND}"
        )


def test_generated_blocks_need_their_markers(tmp_path: Path) -> None:
    generator = stage_files()
    text = "a\n# BEGIN GENERATED x: keep\nold\n# END GENERATED x\nb\n"
    assert generator.splice(text, "x", "new\n", "f") == text.replace("old", "new")
    for broken in ("a\n", text.replace("END", "FINISH"), text + text):
        with pytest.raises(generator.MarkerError, match="f: needs one 'BEGIN GENERATED x'"):
            generator.splice(broken, "x", "new\n", "f")


SEVENTH_ROW = """\
    Stage(
        name="notify",
        module="steps.notify",
        extras=("git",),
        image="notify",
        git=True,
    ),
"""
SEVENTH_MODULE = '''\
"""gitops-notify: a hypothetical seventh stage (tests/test_stage_registry.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from steps.lib.cli import StepParser, StepRun, add_common_options, run_step


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    parser = StepParser("gitops-notify", "Tell someone.")
    add_common_options(parser)
    args = parser.parse_step_args(argv)
    step_run.result_file = args.result_file
    return {"status": "notified"}


def main(argv: Sequence[str] | None = None) -> int:
    return run_step("notify", lambda step_run: run(argv, step_run))
'''


def registry_tests(tree: Path) -> subprocess.CompletedProcess[str]:
    """This module's tests (but this one) run on ``tree``: its files, its registry."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not seventh"]
    argv += ["tests/test_stage_registry.py"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_a_seventh_stage_is_its_module_plus_one_registry_row(tmp_path: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    tree = tmp_path / "tree"
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    registry = tree / "steps" / "stages.py"
    text = registry.read_text()
    assert text.count("\n)\n\nIMAGE_STAGES") == 1
    registry.write_text(
        text.replace("\n)\n\nIMAGE_STAGES", "\n" + SEVENTH_ROW + ")\n\nIMAGE_STAGES")
    )
    (tree / "steps" / "notify.py").write_text(SEVENTH_MODULE)

    # The row alone: each derived place that is written, not computed, is named.
    before = registry_tests(tree)
    assert before.returncode == 1, before.stdout
    for failing in (
        "test_console_scripts",
        "test_dockerfile_targets",
        "test_cloudbuild_steps_yaml_builds_and_smoke_tests_each_image",
        "test_generated_parts_are_what_the_registry_says",
    ):
        assert f"FAILED tests/test_stage_registry.py::{failing}" in before.stdout, before.stdout
    assert "run .venv/bin/python scripts/stage_files.py" in before.stdout

    written = subprocess.run(
        [sys.executable, "scripts/stage_files.py"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert sorted(filter(None, written)) == [
        "wrote Dockerfile.steps",
        "wrote README.md",
        "wrote cloudbuild/steps.yaml",
        "wrote pyproject.toml",
    ]
    after = registry_tests(tree)
    # Every derived place is right: the runner maps notify's image to it,
    # build-images builds it, the Dockerfile, steps.yaml, the console scripts and
    # the README's image table have it. What is left is prose: its README section.
    assert after.stdout.count("FAILED") == 1, after.stdout
    assert "FAILED tests/test_stage_registry.py::test_readme_documents_each_stage" in after.stdout
    assert "gitops-notify" in after.stdout
    dockerfile = (tree / "Dockerfile.steps").read_text()
    assert "FROM with-git AS notify\nCOPY --from=env-git /opt/gitops-steps" in dockerfile
    assert 'ENTRYPOINT ["/opt/gitops-steps/bin/gitops-notify"]' in dockerfile
    assert "| `notify` | `gitops-notify` |" in (tree / "README.md").read_text()
    pyproject = tomllib.loads((tree / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["gitops-notify"] == "steps.notify:main"
    listed = subprocess.run(
        ["scripts/build-images", "--list"], cwd=tree, capture_output=True, text=True, check=True
    )
    assert listed.stdout.split()[-1] == "notify"
    mapped = subprocess.run(
        [sys.executable, "-c", "from steps.cloudbuild import engine; import steps; "
         "print(engine.stage_of('us-docker.pkg.dev/p/gitops-steps/notify:1', None), "
         "steps.__file__)"],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert mapped.stdout.split() == ["notify", str(tree / "steps" / "__init__.py")]
