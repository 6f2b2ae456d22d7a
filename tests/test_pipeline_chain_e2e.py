"""Two environments end to end: candidate -> staging -> production, in the sandbox.

``gitops-sandbox up --chain``: one emulator, a namespace per environment (each
with its own Lease and live record), the app's manifests as Kustomize
overlays rendered by the app build, and one trigger per environment on the
real ``cloudbuild/env.yaml``: staging's on ``candidate``, production's on
``staging`` (``_REQUIRE_PROMOTED=true``; no soak time, so the story takes
minutes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_pipeline_e2e import TIMEOUT, pytestmark, python_base  # noqa: F401

from steps.cloudbuild.demo import Pipeline, crashing_release, greeting_release, running_sandbox
from steps.history import main as history
from steps.lib.git_messages import parse_trailers


@pytest.fixture
def pipeline(python_base: str, tmp_path: Path) -> Iterator[Pipeline]:  # noqa: F811
    with running_sandbox(tmp_path / "sandbox", chain=True) as running:
        yield running


def release(pipeline: Pipeline, commit: str, builds_before: int, builds: int) -> list[Any]:
    """App build for ``commit``; the env builds it set off (``builds`` of them)."""
    build, lines = pipeline.app_build(commit)
    assert build.status == "SUCCESS", "\n".join(lines[-30:])
    records = pipeline.wait_env_builds(builds_before + builds, TIMEOUT)
    return records[builds_before:]


def outcome(record: dict[str, Any]) -> tuple[str, str]:
    return str(record["trigger"]), str(record["status"])


def failure_log(records: list[dict[str, Any]]) -> str:
    return "\n".join(Path(str(r["log"])).read_text()[-2500:] for r in records)


def test_a_release_goes_through_staging_to_production_and_a_bad_one_stops_at_staging(
    pipeline: Pipeline,
) -> None:
    # Release 1: staging's build (triggered by candidate), then production's
    # (triggered by staging's new commit).
    one = release(pipeline, pipeline.values["APP_FIRST_COMMIT"], 0, 2)
    assert [outcome(r) for r in one] == [
        ("env-staging", "SUCCESS"),
        ("env-production", "SUCCESS"),
    ], failure_log(one)
    candidate_one, staging_one = pipeline.tip("candidate"), pipeline.tip("staging")
    assert candidate_one is not None and staging_one is not None
    # candidate records plain manifests per environment, rendered by Kustomize
    production_yaml = pipeline.show("candidate", "hello/production/manifests.yaml")
    assert "namespace: production" in production_yaml and "tier: production" in production_yaml
    assert "namespace: staging" in pipeline.show("candidate", "hello/staging/manifests.yaml")
    trailers = dict(parse_trailers(pipeline.log("production", "%B")[0]))
    assert trailers["Promoted-From"] == f"staging@{staging_one}"
    assert trailers["Release"] == candidate_one
    image_one = pipeline.cluster("production")["image"]
    assert "@sha256:" in image_one
    assert pipeline.cluster("staging")["image"] == image_one

    # Release 2: healthy, all the way.
    two = release(pipeline, greeting_release(pipeline, "Two"), 2, 2)
    assert [r["status"] for r in two] == ["SUCCESS", "SUCCESS"], failure_log(two)
    staging_two, production_two = pipeline.tip("staging"), pipeline.tip("production")
    image_two = pipeline.cluster("production")["image"]
    assert image_two != image_one

    # Release 3 crashes on staging: staging rolls itself back, its branch does
    # not move, so production's build never starts and production stays.
    three = release(pipeline, crashing_release(pipeline), 4, 1)
    assert [outcome(r) for r in three] == [("env-staging", "FAILURE")]
    assert pipeline.tip("staging") == staging_two
    assert pipeline.tip("production") == production_two
    assert pipeline.cluster("staging")["image"] == image_two
    assert pipeline.cluster("production")["image"] == image_two
    time.sleep(0.5)  # a trigger, had staging moved, would have queued by now
    assert len(pipeline.env_builds()) == 5

    # Production rolls back to release 1 by re-running its build for
    # staging's release 1 commit; staging is not touched.
    pipeline.rerun_env_build(staging_one, branch="staging")
    rerun = pipeline.wait_env_builds(6, TIMEOUT)[-1]
    assert outcome(rerun) == ("env-production", "SUCCESS"), failure_log([rerun])
    # the env build's history page is the chain's
    assert "history: wrote history/index.html" in Path(str(rerun["log"])).read_text()
    assert pipeline.log("production", "%s")[0].startswith(f"Rollback to {staging_one[:12]}")
    assert pipeline.cluster("production")["image"] == image_one
    assert pipeline.tip("staging") == staging_two
    assert pipeline.cluster("staging")["image"] == image_two

    # gitops-history --chain tells the same story from Git alone.
    page = pipeline.layout.builds / "chain.json"
    chain_args = ["--chain", "staging", "production", "--format", "json"]
    assert history(["--repo", pipeline.values["ENV_REPO_DIR"], "--path", "hello",
                    *chain_args, "--output", str(page)]) == 0  # fmt: skip
    releases = json.loads(page.read_text())["releases"]
    assert [r["environments"]["staging"]["outcome"] for r in releases] == [
        "failed", "promoted", "promoted"
    ]  # fmt: skip
    assert [r["environments"]["production"]["outcome"] for r in releases] == [
        "not-reached", "promoted", "promoted"
    ]  # fmt: skip
    assert releases[1]["environments"]["production"]["rolled_back"] is True
    assert releases[2]["environments"]["production"]["rollback_target"] is True


def test_a_candidate_commit_run_through_productions_trigger_is_refused_before_applying(
    pipeline: Pipeline,
) -> None:
    first = release(pipeline, pipeline.values["APP_FIRST_COMMIT"], 0, 2)
    assert [r["status"] for r in first] == ["SUCCESS", "SUCCESS"], failure_log(first)
    production = pipeline.tip("production")
    # Skipping staging: production's build run for the candidate commit itself
    # (`gcloud builds triggers run env-production --sha=CANDIDATE_COMMIT`).
    candidate = str(pipeline.tip("candidate"))
    pipeline.rerun_env_build(candidate, branch="staging")
    refused = pipeline.wait_env_builds(3, TIMEOUT)[-1]
    assert outcome(refused) == ("env-production", "FAILURE")
    log = Path(str(refused["log"])).read_text()
    assert "never promoted to staging (run staging's env build for it first)" in log
    assert "rolling out" not in log.lower() and "applied" not in log.split("never promoted")[1]
    assert pipeline.tip("production") == production
