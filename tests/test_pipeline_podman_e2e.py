"""The pipeline with every stage in its image: app build and env build through
``gitops-cloudbuild run --engine podman``, from the command line, against the sandbox.

The stage images are the ones scripts/build-images makes
(``localhost/gitops-steps/<stage>:dev``); the configs are the env and app repos'
own cloudbuild.yaml, given ``_STEPS_IMAGE_PREFIX``/``_STEPS_VERSION`` as a
user would. Each stage step must have run in its image (the build record says
where every step ran); Google's builders (git, docker) run as local tools.
The env build runs from the command line with the sandbox's metadata server
(``--metadata-server``), whose tokens its GKE API stand-in accepts, and the
sandbox's settings given to every step with ``--env``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# The five stage images built from this checkout (layers cached after the first build).
from test_images import PREFIX, TAG, images, needs_image_tools  # noqa: F401

from steps.cloudbuild import run
from steps.cloudbuild.demo import Pipeline
from steps.sandbox import up as sandbox

pytestmark = [
    pytest.mark.slow,
    needs_image_tools,
    pytest.mark.skipif(
        shutil.which("git") is None or not os.access("/usr/bin/docker-registry", os.X_OK),
        reason="needs the Debian packages git and docker-registry",
    ),
]


def checkout(repo_dir: str, commit: str, target: Path) -> Path:
    sandbox.git("clone", "--quiet", "--no-checkout", repo_dir, str(target))
    sandbox.git("-C", str(target), "checkout", "--quiet", commit)
    return target


def run_cli(config: Path, source: Path, subs: dict[str, str], extra: list[str], tmp: Path) -> dict:
    result = tmp / f"{source.name}-result.json"
    argv = [str(config), "--source", str(source), "--engine", "podman"]
    argv += ["--substitutions", ",".join(f"{k}={v}" for k, v in subs.items())]
    argv += ["--records", str(tmp / "records"), "--result-file", str(result), *extra]
    code = run.main(argv)
    summary = json.loads(result.read_text())
    record = json.loads(Path(summary["record"]).read_text())
    assert code == 0, "\n".join(
        f"{s['id']}: {s['status']} {s['error']} {s['log_tail'][-15:]}" for s in record["steps"]
    )
    return record


def ran_in(record: dict) -> dict[str, str]:
    return {step["id"]: step["ran_in"] for step in record["steps"]}


@pytest.mark.usefixtures("images")
def test_app_and_env_builds_run_every_stage_in_its_image(tmp_path: Path) -> None:
    sandbox.provide_python_base()
    directory = tmp_path / "sandbox"
    values = sandbox.up(sandbox.Options(directory, {}, fast=True, trigger=False, engine="podman"))
    try:
        pipeline = Pipeline(directory)
        step_images = {"_STEPS_IMAGE_PREFIX": PREFIX, "_STEPS_VERSION": TAG}
        secrets = ["--secret-env-file", values["SECRET_ENV_FILE"]]
        commit = values["APP_FIRST_COMMIT"]

        app = checkout(values["APP_REPO_DIR"], commit, tmp_path / "app")
        subs = {**sandbox.substitutions(values, "app"), **step_images}
        subs.update(COMMIT_SHA=commit, BRANCH_NAME="main", REPO_NAME="app")
        extra = [*secrets, "--env", f"GITOPS_INSECURE_REGISTRY={values['REGISTRY']}"]
        app_record = run_cli(app / "cloudbuild.yaml", app, subs, extra, tmp_path)
        where = ran_in(app_record)
        for stage in ("test", "update-manifest", "push-candidate"):
            ids = [s["id"] for s in app_record["steps"] if s["name"].endswith(f"/{stage}:{TAG}")]
            assert ids and all(where[i] == f"podman {PREFIX}/{stage}:{TAG}" for i in ids), where
        assert "host" in where.values()  # docker build: buildah on the host

        candidate = pipeline.tip("candidate")
        assert candidate is not None
        env = checkout(values["ENV_REPO_DIR"], candidate, tmp_path / "env")
        subs = {**sandbox.substitutions(values, "env"), **step_images}
        subs.update(COMMIT_SHA=candidate, BRANCH_NAME="candidate", REPO_NAME="env")
        extra = [*secrets, "--metadata-server", values["GCE_METADATA_HOST"]]
        extra += ["--env", f"GITOPS_CONTAINER_API_URL={values['GITOPS_CONTAINER_API_URL']}"]
        env_record = run_cli(env / "cloudbuild.yaml", env, subs, extra, tmp_path)
        where = ran_in(env_record)
        for stage in ("verify-rollout", "promote"):
            ids = [s["id"] for s in env_record["steps"] if s["name"].endswith(f"/{stage}:{TAG}")]
            assert ids and all(where[i] == f"podman {PREFIX}/{stage}:{TAG}" for i in ids), where

        digest = pipeline.registry_digest(commit[:7])
        image = f"{values['REGISTRY']}/sandbox-project/apps/hello@{digest}"
        assert image in pipeline.show("candidate", "hello/deployment.yaml")
        assert pipeline.log("production", "%s")[0].startswith(f"Promote {candidate[:12]}")
        assert pipeline.cluster()["running"] == [image]
    finally:
        sandbox.down(directory)
