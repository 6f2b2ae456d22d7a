"""The whole pipeline end to end, through the real cloudbuild.yaml files, in the sandbox.

Each scenario gets its own sandbox (gitops-sandbox up: registry, Git server with
the app and env repos, Kubernetes emulator, GKE API stand-in), runs the app
repo's cloudbuild.yaml with gitops-cloudbuild (the image really built with
buildah and pushed), and lets the push to ``candidate`` trigger the env
repo's cloudbuild.yaml. Each prints its duration.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from steps.cloudbuild.demo import Pipeline, crashing_release, greeting_release, running_sandbox
from steps.sandbox import triggers
from steps.sandbox import up as sandbox
from steps.sandbox.up import containers_env, provide_python_base

TOOLS = ("buildah", "git")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS)
    or os.geteuid() != 0
    or not os.access("/usr/bin/docker-registry", os.X_OK),
    reason="needs root, buildah, git and docker-registry",
)
TIMEOUT = 300.0


@pytest.fixture(scope="module")
def python_base() -> str:
    return provide_python_base()


@pytest.fixture
def pipeline(
    python_base: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    started = time.monotonic()
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running
    print(f"\n{request.node.name}: {time.monotonic() - started:.1f}s")


def deploy(pipeline: Pipeline, commit: str, builds_before: int) -> dict[str, object]:
    """App build for ``commit``, then its triggered env build; that build's record."""
    build, lines = pipeline.app_build(commit)
    assert build.status == "SUCCESS", "\n".join(lines[-30:])
    records = pipeline.wait_env_builds(builds_before + 1, TIMEOUT)
    return records[-1]


def image_trailer(pipeline: Pipeline, ref: str) -> str:
    body = pipeline.log(ref, "%B")[0]
    lines = [line for line in body.splitlines() if line.startswith("Image: ")]
    assert len(lines) == 1, body
    return lines[0].removeprefix("Image: ")


def test_happy_path_the_cluster_runs_exactly_the_built_digest(pipeline: Pipeline) -> None:
    commit = pipeline.values["APP_FIRST_COMMIT"]

    record = deploy(pipeline, commit, 0)

    assert record["status"] == "SUCCESS", Path(str(record["log"])).read_text()[-3000:]
    assert pipeline.registry_tags() == [commit[:7]]
    digest = pipeline.registry_digest(commit[:7])
    image = f"{pipeline.values['REGISTRY']}/sandbox-project/apps/hello@{digest}"
    candidate = pipeline.tip("candidate")
    assert candidate == record["commit"]
    assert image in pipeline.show("candidate", "hello/deployment.yaml")
    assert image_trailer(pipeline, "candidate") == image
    assert pipeline.log("production", "%s")[0].startswith(f"Promote {candidate[:12]}")
    assert pipeline.show("production", "hello/deployment.yaml") == pipeline.show(
        "candidate", "hello/deployment.yaml"
    )
    cluster = pipeline.cluster()
    assert cluster["image"] == image
    assert cluster["running"] == [image]
    assert cluster["ready"] == 2


def test_a_failing_app_test_stops_the_pipeline(pipeline: Pipeline) -> None:
    test = pipeline.app_file("test_app.py") + (
        "\n\ndef test_greeting_is_polite() -> None:\n"
        '    assert greeting("GKE") == "Good day, GKE!"\n'
    )
    commit = pipeline.app_commit({"test_app.py": test}, "A test the app fails")
    production = pipeline.tip("production")

    build, lines = pipeline.app_build(commit)

    assert build.status == "FAILURE"
    statuses = {step.id: step.status for step in build.steps}
    assert statuses["test"] == "FAILURE"
    assert all(statuses[s] != "SUCCESS" for s in ("build", "push", "push-candidate"))
    assert any("test_greeting_is_polite" in line for line in lines)
    assert pipeline.registry_tags() == []
    assert pipeline.tip("candidate") is None
    assert pipeline.tip("production") == production
    time.sleep(0.5)  # a trigger, had there been a push, would have queued by now
    assert pipeline.env_builds() == []


def test_a_crashing_image_fails_the_env_build_and_rolls_back(pipeline: Pipeline) -> None:
    good = deploy(pipeline, pipeline.values["APP_FIRST_COMMIT"], 0)
    assert good["status"] == "SUCCESS"
    production = pipeline.tip("production")
    production_image = pipeline.cluster()["image"]
    commit = crashing_release(pipeline)

    bad = deploy(pipeline, commit, 1)

    assert bad["status"] == "FAILURE"
    assert bad["commit"] == pipeline.tip("candidate")
    assert "behavior: crash" in pipeline.show("candidate", "hello/deployment.yaml")
    log = Path(str(bad["log"])).read_text()
    assert "CrashLoopBackOff" in log
    # The history page is still made (failures belong on it), nothing is
    # promoted, and the build still ends FAILURE, on its last step.
    assert 'Finished Step #5 - "history": SUCCESS' in log
    assert "verify-rollout did not succeed (exit 1): nothing to promote" in log
    assert 'Finished Step #7 - "verdict": FAILURE (exit status 1)' in log
    assert pipeline.tip("production") == production
    cluster = pipeline.cluster()
    assert cluster["image"] == production_image
    assert cluster["annotations"].get("sandbox.gitops-steps.dev/behavior") != "crash"
    assert cluster["running"] == [production_image]


def test_rerunning_an_old_env_build_rolls_back(pipeline: Pipeline) -> None:
    v1 = deploy(pipeline, pipeline.values["APP_FIRST_COMMIT"], 0)
    v1_image = pipeline.cluster()["image"]
    v2 = deploy(pipeline, greeting_release(pipeline, "v2"), 1)
    assert (v1["status"], v2["status"]) == ("SUCCESS", "SUCCESS")
    assert pipeline.cluster()["image"] != v1_image

    pipeline.rerun_env_build(str(v1["commit"]))
    again = pipeline.wait_env_builds(3, TIMEOUT)[-1]

    assert again["status"] == "SUCCESS", Path(str(again["log"])).read_text()[-3000:]
    assert pipeline.cluster()["image"] == v1_image
    subject = pipeline.log("production", "%s")[0]
    assert subject.startswith(f"Rollback to {str(v1['commit'])[:12]}")
    assert "Rollback-From: " in pipeline.log("production", "%B")[0]


def test_three_commits_at_once_end_with_one_agreed_truth(pipeline: Pipeline) -> None:
    first = greeting_release(pipeline, "one")
    second = greeting_release(pipeline, "two")
    third = greeting_release(pipeline, "three")

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(pipeline.app_build, [first, second, third]))

    # Builds of the same app racing for hello/ all land: each attempt goes on
    # top of the others (push-candidate only refuses edits from elsewhere).
    for build, lines in results:
        assert build.status == "SUCCESS", "\n".join(lines[-40:])
    records = pipeline.wait_env_builds(3, TIMEOUT)
    candidates = pipeline.log("candidate", "%H")[:-1]  # the seed commit apart
    assert len(candidates) == 3
    assert sorted(str(r["commit"]) for r in records) == sorted(candidates)
    succeeded = [
        c for c in candidates if any(r["commit"] == c and r["status"] == "SUCCESS" for r in records)
    ]
    assert succeeded, records
    newest_ok = succeeded[0]  # log order: newest first
    production_tip = pipeline.log("production", "%B")[0]
    assert f"Promoted-From: candidate@{newest_ok}" in production_tip
    cluster = pipeline.cluster()
    assert cluster["image"] in pipeline.show("production", "hello/deployment.yaml")
    assert pipeline.show("production", "hello/deployment.yaml") == pipeline.show(
        newest_ok, "hello/deployment.yaml"
    )
    promoted = [b for b in pipeline.log("production", "%B") if "Promoted-From" in b]
    for build_commit in candidates:
        if build_commit not in succeeded:
            assert not any(build_commit in body for body in promoted)
    for record in records:
        log = Path(str(record["log"])).read_text()
        assert "lock production: acquired" in log and "lock production: released" in log
        if "not promoting (superseded)" in log:
            assert not any(f"candidate@{record['commit']}" in body for body in promoted)
    for commit in candidates:
        assert sum(f"candidate@{commit}" in body for body in promoted) <= 1


def test_an_older_candidates_build_running_last_is_superseded_not_a_rollback(
    pipeline: Pipeline,
) -> None:
    """What load did to the test above once, forced: the oldest candidate's build,
    triggered first, takes the lock last. It must not roll the newer one back."""
    releases = [greeting_release(pipeline, name) for name in ("one", "two", "three")]
    triggers.hold_builds(pipeline.layout, [1])  # the first push's build stays queued
    try:
        for commit in releases:  # one after the other: build N is the Nth candidate's
            build, lines = pipeline.app_build(commit)
            assert build.status == "SUCCESS", "\n".join(lines[-30:])
        deadline = time.monotonic() + TIMEOUT
        while not all(r.get("status") == "SUCCESS" for r in pipeline.env_builds()[1:3]):
            assert time.monotonic() < deadline, pipeline.env_builds()
            time.sleep(0.2)
        newest, tip = pipeline.log("candidate", "%H")[0], pipeline.tip("production")
        assert pipeline.log("production", "%s")[0].startswith(f"Promote {newest[:12]}")
    finally:
        triggers.release_builds(pipeline.layout)
    late = pipeline.wait_env_builds(3, TIMEOUT)[0]

    oldest = pipeline.log("candidate", "%H")[-2]  # the seed commit apart
    assert (late["number"], late["commit"]) == (1, oldest)
    log = Path(str(late["log"])).read_text()
    assert late["status"] == "SUCCESS", log[-3000:]
    assert "nothing applied (superseded)" in log and "not promoting (superseded)" in log
    assert "lock production: acquired" in log and "lock production: released" in log
    assert "applied default/Deployment/hello" not in log
    assert pipeline.tip("production") == tip
    assert not any("Rollback" in s for s in pipeline.log("production", "%s"))
    assert pipeline.cluster()["image"] in pipeline.show(newest, "hello/deployment.yaml")
    env_dir = pipeline.values["ENV_REPO_DIR"]
    note = sandbox.git("--git-dir", env_dir, "notes", "--ref=gitops", "show", oldest)
    assert '"outcome": "superseded"' in note


def test_rerunning_any_build_is_harmless(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steps.cloudbuild.rerun import rerun_build

    commit = pipeline.values["APP_FIRST_COMMIT"]
    app_build, lines = pipeline.app_build(commit)
    assert app_build.status == "SUCCESS", "\n".join(lines[-30:])
    first = pipeline.wait_env_builds(1, TIMEOUT)[-1]
    assert first["status"] == "SUCCESS"
    state = (pipeline.tip("candidate"), pipeline.tip("production"), pipeline.cluster()["image"])

    # The app build again, exactly as recorded (Cloud Build's retry) ...
    monkeypatch.setenv("GITOPS_INSECURE_REGISTRY", pipeline.values["REGISTRY"])
    again = rerun_build(app_build.build_id, pipeline.layout.builds / "records", log=lines.append)
    assert again.status == "SUCCESS", "\n".join(lines[-30:])
    assert again.build_id != app_build.build_id
    # ... and the env build again, through its trigger.
    pipeline.rerun_env_build(str(first["commit"]))
    records = pipeline.wait_env_builds(2, TIMEOUT)

    assert [r["status"] for r in records] == ["SUCCESS", "SUCCESS"]
    assert (pipeline.tip("candidate"), pipeline.tip("production")) == state[:2]
    assert pipeline.cluster()["image"] == state[2]
    assert pipeline.registry_tags() == [commit[:7]]


def test_the_demo_tells_the_whole_story_and_keeps_the_page(
    python_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from steps.cloudbuild.__main__ import main as cloudbuild

    page = tmp_path / "page" / "history.html"
    started = time.monotonic()
    code = cloudbuild(["demo", "--dir", str(tmp_path / "demo"), "--page", str(page)])
    captured = capsys.readouterr()
    print(f"\ndemo: {time.monotonic() - started:.1f}s")
    assert code == 0, captured.err[-3000:]
    out, err = captured.out, captured.err
    # A healthy release, a crashing one failing fast with the reason and rolled
    # back, a rollback by re-running the first env build, recorded as one.
    assert re.search(r"release 1: env build \S+: SUCCESS", err)
    assert re.search(r"release 2: env build \S+: FAILURE", err)
    assert "CrashLoopBackOff" in err and "rollback complete" in err
    assert "gcloud builds triggers run env-candidate --sha=" in err
    production = out.split("== production", 1)[1].split("== gitops-history", 1)[0]
    subjects = [line.split(None, 1)[1] for line in production.strip().splitlines()]
    assert subjects[0].startswith("Rollback to ")
    assert sum(s.startswith("Promote ") for s in subjects) == 2
    assert "failed" in out and "promoted" in out  # the history table
    # The page is kept, and its path is the last line a user reads.
    assert out.rstrip().splitlines()[-1] == f"history page: {page}"
    html = page.read_text()
    assert "failed" in html and "rolled back" in html
    assert not list((tmp_path / "demo" / "run").glob("*.pid"))  # stopped
    # Its app images went with the sandbox: the image cache does not grow per run.
    registry = re.search(r"runs (127\.0\.0\.1:\d+)/", out)
    assert registry is not None
    listed = subprocess.run(
        ["buildah", "images", "--format", "{{.Name}}"],
        env=containers_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert registry.group(1) not in listed.stdout


def test_the_demo_keeps_its_page_inside_the_checkout() -> None:
    from steps.cloudbuild.demo import PAGE

    repo = Path(__file__).resolve().parent.parent
    assert repo / "out" / "demo" / "history.html" == PAGE
    assert "/out/" in (repo / ".gitignore").read_text().split()


def test_the_sandbox_is_a_playground_for_your_own_app(pipeline: Pipeline, tmp_path: Path) -> None:
    """One command deploys your app; then sandbox.env alone lets your own commands in."""
    from steps.sandbox.__main__ import main as sandbox_main

    app = tmp_path / "myapp"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "app", app)
    template = app / "k8s" / "deployment.yaml.tpl"
    template.write_text(template.read_text().replace("/apps/hello:", "/apps/myapp:"))

    code = sandbox_main(
        ["deploy", "--dir", str(pipeline.layout.root), str(app), "--image", "myapp"]
    )

    assert code == 0
    registry = pipeline.values["REGISTRY"]
    image = pipeline.cluster()["image"]
    assert image.startswith(f"{registry}/sandbox-project/apps/myapp@sha256:")
    # Only what sandbox.env says, plus PATH: kubectl, our stages and buildah all reach it.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **pipeline.values}
    kubectl = subprocess.run(
        ["/usr/bin/kubectl", "get", "deployment", "hello", "-o",
         "jsonpath={.spec.template.spec.containers[0].image}"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (kubectl.returncode, kubectl.stdout) == (0, image), kubectl.stderr
    applied = subprocess.run(  # default flags: client-side validation against OpenAPI
        ["/usr/bin/kubectl", "apply", "-f", "-"],
        input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\ndata: {a: b}\n",
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (applied.returncode, applied.stdout) == (0, "configmap/mine created\n"), applied
    manifest = tmp_path / "pod.yaml"
    tag = pipeline.registry_tags("sandbox-project/apps/myapp")[0]
    reference = f"{registry}/sandbox-project/apps/myapp:{tag}"
    manifest.write_text(f"kind: Pod\nspec:\n  containers:\n    - image: {reference}\n")
    pinned = subprocess.run(
        [str(Path(sys.executable).parent / "gitops-update-manifest"), "--in-place", str(manifest),
         "--image", reference, "--resolve-digests"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    assert image.split("@", 1)[1] in manifest.read_text()
    listed = subprocess.run(
        ["buildah", "pull", "--quiet", reference],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr  # plain HTTP, no --tls-verify needed
