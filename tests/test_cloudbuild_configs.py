"""The Cloud Build configs users copy: they parse, and every part lines up.

- every flag a step passes to one of our stages is one its parser accepts;
- every ``$_VAR`` used is defined (with a default, or checked as required by
  the first step) and every one defined is used; other ``$VAR`` are Cloud
  Build built-ins; ``$$`` is an escape;
- step ids are unique and ``waitFor`` names earlier steps;
- secrets come from ``availableSecrets``;
- the step images the pipelines run are the ones cloudbuild/steps.yaml pushes,
  built from the targets of Dockerfile.steps;
- with the defaults, the app build's test and update-manifest steps work on
  the example app.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.cloudbuild.substitutions import BUILT_INS as CLOUD_BUILD_BUILT_INS
from steps.lib.cli import env_name
from steps.lib.kustomize import KUSTOMIZE_IMAGE
from steps.stages import IMAGE_TARGETS, image_named

REPO = Path(__file__).resolve().parent.parent
CLOUDBUILD = REPO / "cloudbuild"
CONFIGS = ("app.yaml", "env.yaml", "steps.yaml")
STAGE_MODULES = {
    "test": "steps.test_stage",
    "update-manifest": "steps.update_manifest",
    "push-candidate": "steps.push_candidate",
    "verify-rollout": "steps.verify_rollout",
    "promote": "steps.promote",
}
# Commands a step may run in a stage's image through ``entrypoint: gitops-X``.
COMMAND_MODULES = {**STAGE_MODULES, "history": "steps.history"}
STEPS_IMAGE = re.compile(
    r"^\$\{_STEPS_IMAGE_PREFIX\}/(?P<image>[a-z-]+|\$\{_[A-Z_]+\}):\$\{_STEPS_VERSION\}$"
)
IMAGE_CHOICES = {"_UPDATE_MANIFEST_IMAGE": ("update-manifest", KUSTOMIZE_IMAGE)}
"""Substitutions that choose a step image, and every image each may name (app.yaml's comment)."""
BUILT_INS = set(CLOUD_BUILD_BUILT_INS)
_TOKEN = re.compile(r"\$\$|\$\{(?P<braced>\w+)\}|\$(?P<bare>\w+)")


def raw_text(name: str) -> str:
    return (CLOUDBUILD / name).read_text()


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CLOUDBUILD / name).read_text())
    assert isinstance(data, dict)
    return data


def names_used(value: Any) -> set[str]:
    """Substitution names in every string of ``value`` (``$$`` is a literal ``$``)."""
    if isinstance(value, str):
        return {
            m.group("braced") or m.group("bare")
            for m in _TOKEN.finditer(value)
            if m.group(0) != "$$"
        }
    if isinstance(value, dict):
        return set().union(*(names_used(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(names_used(v) for v in value), set())
    return set()


def substitute(text: str, values: dict[str, str]) -> str:
    """What Cloud Build does to an argument (defaults, built-ins, ``$$``)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        return substitute(values[name], values)

    return _TOKEN.sub(one, text)


def stage_args(step: dict[str, Any]) -> list[str]:
    """The arguments our stage gets: ``args``, or those after ``sh -c SCRIPT NAME``."""
    args = [str(a) for a in step.get("args", [])]
    if step.get("entrypoint") == "sh":
        assert args[0] == "-c", step["id"]
        return args[3:]
    entrypoint = step.get("entrypoint")
    assert entrypoint is None or entrypoint.removeprefix("gitops-") in COMMAND_MODULES, (
        f"{step['id']}: unexpected entrypoint {entrypoint}"
    )
    return args


def command_of(stage: str, step: dict[str, Any]) -> str:
    """The command a step runs: its image's stage, or ``gitops-X`` as entrypoint."""
    entrypoint = str(step.get("entrypoint", ""))
    return entrypoint.removeprefix("gitops-") if entrypoint.startswith("gitops-") else stage


def images_of(config: dict[str, Any], step: dict[str, Any]) -> list[str]:
    """The step images (targets) a step may run: its image, or each a substitution may choose."""
    match = STEPS_IMAGE.match(step["name"])
    if match is None:
        return []
    image = match.group("image")
    if not image.startswith("${"):
        return [image]
    name = image[2:-1]
    assert config["substitutions"][name] == IMAGE_CHOICES[name][0], f"{name}: default"
    return list(IMAGE_CHOICES[name])


def our_steps(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each step that runs one of our images, with the stage that image runs."""
    found = []
    for step in config["steps"]:
        stages = {image_named(image).stage.name for image in images_of(config, step)}
        assert len(stages) <= 1, f"{step['id']}: images of different stages {stages}"
        found += [(stage, step) for stage in stages]
    return found


@pytest.mark.parametrize("name", CONFIGS)
def test_ids_are_unique_and_wait_for_earlier_steps(name: str) -> None:
    seen: list[str] = []
    for step in load(name)["steps"]:
        step_id = step.get("id")
        assert step_id, f"{name}: every step has an id"
        assert step_id not in seen, f"{name}: duplicate id {step_id}"
        for other in step.get("waitFor", []):
            assert other == "-" or other in seen, f"{name}: {step_id} waits for unknown {other}"
        seen.append(step_id)


@pytest.mark.parametrize("name", CONFIGS)
def test_substitutions_are_defined_and_used(name: str) -> None:
    config = load(name)
    defined = config.get("substitutions", {})
    for key, value in defined.items():
        assert re.fullmatch(r"_[A-Z0-9_]+", key), f"{name}: {key} is not a user substitution"
        assert isinstance(value, str), f"{name}: {key} is not a string"
        optional = re.search(rf"^  {key}: \"\" +# optional", raw_text(name), re.M)
        if not value and not optional:  # required: the trigger sets it, the first step checks
            check = next(s for s in config["steps"] if s["id"] == "check-substitutions")
            assert f'"{key}=${{{key}}}"' in check["args"][1], f"{name}: {key} has no default"
    body = {k: v for k, v in config.items() if k != "substitutions"}
    used = names_used(body) | names_used(defined)
    user = {n for n in used if n.startswith("_")}
    assert user <= set(defined), f"{name}: undefined {sorted(user - set(defined))}"
    assert set(defined) <= names_used(body) | names_used(list(defined.values())), (
        f"{name}: defined but unused {sorted(set(defined) - names_used(body))}"
    )
    others = used - user
    assert others <= BUILT_INS, f"{name}: not built-in: {sorted(others - BUILT_INS)}"
    if any("${PROJECT_ID}" in v for v in defined.values()):
        assert config["options"]["dynamicSubstitutions"] is True


@pytest.mark.parametrize("name", CONFIGS)
def test_secrets_come_from_secret_manager(name: str) -> None:
    config = load(name)
    available = {
        entry["env"] for entry in config.get("availableSecrets", {}).get("secretManager", [])
    }
    for entry in config.get("availableSecrets", {}).get("secretManager", []):
        assert re.fullmatch(
            r"projects/\$PROJECT_ID/secrets/\$\{_\w+\}/versions/\w+", entry["versionName"]
        )
    wanted = {s for step in config["steps"] for s in step.get("secretEnv", [])}
    assert wanted <= available
    assert available <= wanted, f"{name}: secrets no step uses: {sorted(available - wanted)}"


@pytest.mark.parametrize("name", CONFIGS)
def test_flags_are_ones_the_stages_accept(name: str) -> None:
    config = load(name)
    values = {**{n: f"x{n.lower()}" for n in BUILT_INS}, **config.get("substitutions", {})}
    for image_stage, step in our_steps(config):
        stage = command_of(image_stage, step)
        parser = importlib.import_module(COMMAND_MODULES[stage]).build_parser()
        known = set(parser._option_string_actions)
        args = stage_args(step)
        for arg in args:
            if arg.startswith("--"):
                flag = arg.split("=", 1)[0]
                assert flag in known, f"{name}: step {step['id']}: {stage} has no {flag}"
        if args != ["--help"]:
            parser.parse_args([substitute(arg, values) for arg in args])
        if step.get("entrypoint") == "sh":
            script = step["args"][1]
            for variable in re.findall(r"\b(GITOPS_[A-Z_]+)=", script):
                assert variable in {env_name(flag) for flag in known if flag.startswith("--")}


def test_pipelines_run_the_images_steps_yaml_pushes() -> None:
    steps_config = load("steps.yaml")
    pushed = set(steps_config["images"])
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile.steps").read_text(), re.M))
    built = set()
    for step in steps_config["steps"]:
        args = [str(a) for a in step.get("args", [])]
        if args[:1] == ["build"]:
            target = args[args.index("--target") + 1]
            tag = args[args.index("-t") + 1]
            assert target in targets
            assert tag == f"${{_STEPS_IMAGE_PREFIX}}/{target}:${{_STEPS_VERSION}}"
            built.add(tag)
    assert pushed == built
    pushed_targets = {STEPS_IMAGE.match(image).group("image") for image in pushed}  # type: ignore[union-attr]
    assert pushed_targets == set(IMAGE_TARGETS)
    assert {image_named(target).stage.name for target in pushed_targets} == set(STAGE_MODULES)
    for name in ("app.yaml", "env.yaml"):
        config = load(name)
        for _, step in our_steps(config):
            for image in images_of(config, step):
                assert image in pushed_targets, f"{name}: {image} is not pushed by steps.yaml"
        for key in ("_STEPS_IMAGE_PREFIX", "_STEPS_VERSION"):
            assert config["substitutions"][key] == steps_config["substitutions"][key]
    stages_run = {stage for n in ("app.yaml", "env.yaml") for stage, _ in our_steps(load(n))}
    assert stages_run == set(STAGE_MODULES)


def test_env_build_passes_what_the_issue_asks() -> None:
    config = load("env.yaml")
    steps = {step["id"]: step for step in config["steps"]}
    verify = stage_args(steps["verify-rollout"])
    for flag in ("--lock=", "--record=", "--commit=$COMMIT_SHA", "--prune", "--notes="):
        assert any(arg.startswith(flag) for arg in verify), flag
    assert steps["verify-rollout"]["secretEnv"] == ["GIT_TOKEN"]  # --notes pushes
    history = stage_args(steps["history"])
    assert "--format=html" in history and steps["history"]["allowFailure"] is True
    assert "GITOPS_ROLLBACK_ON_FAILURE" in steps["verify-rollout"]["args"][1]
    promote = stage_args(steps["promote"])
    assert any(arg.startswith("--require-live=") for arg in promote)
    assert steps["promote"]["waitFor"] == ["verify-rollout"]


def test_app_build_steps_work_on_the_example(tmp_path: Path) -> None:
    """With the defaults, test and update-manifest run on the example as the app repo."""
    config = load("app.yaml")
    values = {
        **config["substitutions"],
        "PROJECT_ID": "demo-project",
        "SHORT_SHA": "abc1234",
        "COMMIT_SHA": "abc1234" + "0" * 33,
        "BUILD_ID": "build-1",
    }
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO / "examples" / "app", workspace)
    steps = dict(our_steps(config))
    for stage in ("test", "update-manifest"):
        args = [substitute(arg, values) for arg in stage_args(steps[stage])]
        args = [a for a in args if a != "--resolve-digests"]  # no registry here
        args = [a.replace("=/pip-cache", f"={tmp_path / 'pip-cache'}") for a in args]
        proc = subprocess.run(
            [sys.executable, "-m", STAGE_MODULES[stage], *args],
            cwd=workspace,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"{stage}: {proc.stderr}"
    rendered = (workspace / "out" / "manifests" / "deployment.yaml").read_text()
    assert "us-docker.pkg.dev/demo-project/apps/hello:abc1234" in rendered
    result = json.loads((workspace / "out" / "test.json").read_text())
    assert result["passed"] == 2


# -- configs cannot silently deploy to the wrong place


def run_env_build(
    tmp_path: Path, substitutions: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """gitops-cloudbuild run cloudbuild/env.yaml on an env checkout, as a trigger would."""
    source = tmp_path / "env"
    source.mkdir(exist_ok=True)
    shutil.copyfile(CLOUDBUILD / "env.yaml", source / "cloudbuild.yaml")
    (source / "hello").mkdir(exist_ok=True)
    secrets = tmp_path / "secrets.env"
    secrets.write_text("GIT_TOKEN=not-a-real-token\n")
    argv = [sys.executable, "-m", "steps.cloudbuild", "run", str(source / "cloudbuild.yaml")]
    argv += ["--source", str(source), "--substitutions", substitutions]
    argv += ["--secret-env-file", str(secrets), "--records", str(tmp_path / "records"), *extra]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


RIGHT = "_ENV_REPO=http://127.0.0.1:1/env.git,_CLUSTER=prod,_CLUSTER_LOCATION=europe-west1"


def test_a_misspelt_trigger_substitution_stops_the_env_build_before_anything(
    tmp_path: Path,
) -> None:
    wrong = RIGHT.replace("_CLUSTER=", "_CLUSTR=")

    done = run_env_build(tmp_path, wrong)

    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "substitution _CLUSTR: this config has no such substitution (misspelt?)" in output
    assert "substitution _CLUSTER is empty: set it on the trigger" in output
    assert 'Finished Step #0 - "check-substitutions": FAILURE' in output
    assert "Starting Step #1" not in output  # nothing fetched, nothing applied


def test_a_missing_required_substitution_stops_it_too(tmp_path: Path) -> None:
    done = run_env_build(tmp_path, "_ENV_REPO=http://127.0.0.1:1/env.git")

    assert done.returncode == 1
    output = done.stdout + done.stderr
    for name in ("_CLUSTER", "_CLUSTER_LOCATION"):
        assert f"substitution {name} is empty" in output
    assert "Starting Step #1" not in output


def test_right_substitutions_pass_the_check_and_name_the_target(tmp_path: Path) -> None:
    done = run_env_build(tmp_path, RIGHT, "--only", "check-substitutions")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "target cluster projects/sandbox-project/locations/europe-west1/clusters/prod" in (
        done.stdout + done.stderr
    )


@pytest.mark.parametrize("name", ["app.yaml", "env.yaml"])
def test_the_check_knows_exactly_the_configs_substitutions(name: str) -> None:
    config = load(name)
    step = next(s for s in config["steps"] if s["id"] == "check-substitutions")
    assert config["steps"][0] is step  # before anything else
    known = re.search(r'known=" ([^"]*) "', step["args"][1])
    assert known is not None
    assert known.group(1).split() == list(config["substitutions"])
    others = [s for s in config["steps"][1:] if not s.get("waitFor")]
    assert others == []  # every other step waits, directly or not, for the check


def test_no_config_defaults_the_target() -> None:
    env = load("env.yaml")["substitutions"]
    assert env["_CLUSTER"] == env["_CLUSTER_LOCATION"] == env["_ENV_REPO"] == ""
    assert load("app.yaml")["substitutions"]["_ENV_REPO"] == ""


def run_app_check(tmp_path: Path, substitutions: str) -> subprocess.CompletedProcess[str]:
    """The app build's first step alone, as a trigger with these substitutions runs it."""
    source = tmp_path / "app"
    source.mkdir(exist_ok=True)
    shutil.copyfile(CLOUDBUILD / "app.yaml", source / "cloudbuild.yaml")
    argv = [sys.executable, "-m", "steps.cloudbuild", "run", str(source / "cloudbuild.yaml")]
    argv += ["--source", str(source), "--substitutions", substitutions]
    argv += ["--records", str(tmp_path / "records"), "--only", "check-substitutions"]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def test_overlays_with_the_image_without_kustomize_stop_the_app_build_first(
    tmp_path: Path,
) -> None:
    """The default update-manifest image has no Kustomize: rendering overlays needs
    update-manifest-kustomize, and the check says so before the tests and the image build."""
    overlays = "_ENV_REPO=http://127.0.0.1:1/env.git,_OVERLAYS=staging=overlays/staging"

    refused = run_app_check(tmp_path, overlays)

    assert refused.returncode == 1
    assert (
        "substitution _OVERLAYS needs _UPDATE_MANIFEST_IMAGE=update-manifest-kustomize: "
        "the update-manifest image has no Kustomize"
    ) in refused.stdout + refused.stderr
    accepted = run_app_check(tmp_path, f"{overlays},_UPDATE_MANIFEST_IMAGE={KUSTOMIZE_IMAGE}")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    plain = run_app_check(tmp_path, "_ENV_REPO=http://127.0.0.1:1/env.git")
    assert plain.returncode == 0, plain.stdout + plain.stderr
