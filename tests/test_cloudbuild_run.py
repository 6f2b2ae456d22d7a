"""gitops-cloudbuild run and rerun with the process engine, on small configs.

Real git repositories and real processes in temporary directories. Order and
parallelism are proven by files the steps write (nanosecond clocks, markers),
never by timing thresholds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_git import git
from test_images import images, needs_image_tools  # noqa: F401  (images: built once per module)

from steps.cloudbuild import engine, rerun, run
from steps.cloudbuild.records import BuildRecord
from steps.cloudbuild.run import run_build
from steps.cloudbuild.stepgraph import Step, Volume
from steps.lib.errors import UsageError

BASH = {"name": "bash", "entrypoint": "bash"}
MAPS = ["bash=bash", "ubuntu=sh"]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = tmp_path / "src"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git("remote", "add", "origin", "https://example.test/owner/hello-app.git", cwd=repo)
    (repo / "README").write_text("hello\n", encoding="utf-8")
    git("add", "README", cwd=repo)
    git("commit", "-qm", "first", cwd=repo)
    return repo


def bash(script: str, **fields: Any) -> dict[str, Any]:
    return {**BASH, "args": ["-c", script], **fields}


class Build:
    def __init__(self, tmp_path: Path, source: Path) -> None:
        self.tmp = tmp_path
        self.source = source
        self.records = tmp_path / "records"
        self.lines: list[str] = []

    def run(self, data: dict[str, Any], **kwargs: Any) -> BuildRecord:
        path = self.tmp / "cloudbuild.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        kwargs.setdefault("map_images", MAPS)
        kwargs.setdefault("records_dir", self.records)
        kwargs.setdefault("substitutions", {})
        return run_build(path, self.source, log=self.lines.append, **kwargs)

    def log(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def build(tmp_path: Path, source: Path) -> Build:
    return Build(tmp_path, source)


def stamp(name: str) -> str:
    return f"date +%s%N > /workspace/t/{name}"


def read_stamp(workspace: Path, name: str) -> int:
    return int((workspace / "t" / name).read_text().strip())


def test_graph_order_and_parallel_steps(build: Build, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    # a and b start at once: each waits until the other has started.
    meet = (
        "mkdir -p /workspace/t; {me}; for i in $(seq 200); do"
        " [ -f /workspace/t/{other}.start ] && break; sleep 0.05; done;"
        " [ -f /workspace/t/{other}.start ]; {end}"
    )
    data = {
        "steps": [
            bash(
                meet.format(me=stamp("a.start"), other="b", end=stamp("a.end")),
                id="a",
                waitFor=["-"],
            ),
            bash(
                meet.format(me=stamp("b.start"), other="a", end=stamp("b.end")),
                id="b",
                waitFor=["-"],
            ),
            bash(stamp("c.start"), id="c", waitFor=["a", "b"]),
            bash(stamp("d.start"), id="d"),
        ]
    }
    record = build.run(data, write_workspace=ws)
    assert record.status == "SUCCESS", build.log()
    assert [s.status for s in record.steps] == ["SUCCESS"] * 4
    c = read_stamp(ws, "c.start")
    assert c > read_stamp(ws, "a.end") and c > read_stamp(ws, "b.end")
    assert read_stamp(ws, "d.start") > c  # no waitFor: after every earlier step
    assert 'Starting Step #0 - "a"' in build.log()


def test_built_ins_from_git_and_overrides(build: Build, source: Path) -> None:
    head = git("rev-parse", "HEAD", cwd=source).strip()
    data = {
        "steps": [
            bash(
                "echo $COMMIT_SHA/$SHORT_SHA/$BRANCH_NAME/$REPO_NAME/$PROJECT_ID/$BUILD_ID", id="x"
            )
        ]
    }
    record = build.run(data)
    assert (
        f'Step #0 - "x": {head}/{head[:7]}/main/hello-app/sandbox-project/{record.build_id}'
        in build.log()
    )
    build.lines.clear()
    record = build.run(data, substitutions={"BRANCH_NAME": "feature"}, project_id="p1")
    assert "/main/" not in build.log() and "/feature/hello-app/p1/" in build.log()


def test_allow_failure_and_exit_codes(build: Build) -> None:
    data = {
        "steps": [
            bash("exit 5", id="may-fail", allowFailure=True),
            bash("exit 3", id="allowed-code", allowExitCodes=[3]),
            bash("echo after", id="after"),
        ]
    }
    record = build.run(data)
    assert record.status == "SUCCESS", build.log()
    assert record.step("may-fail").status == "FAILURE" and record.step("may-fail").allowed_failure
    assert record.step("allowed-code").exit_code == 3
    assert record.step("after").status == "SUCCESS"
    data["steps"][1] = bash("exit 4", id="allowed-code", allowExitCodes=[3], allowFailure=True)
    record = build.run(data)
    assert record.status == "FAILURE"
    assert record.step("allowed-code").status == "FAILURE"
    assert record.step("after").status == "CANCELLED"


def test_timeout_kills_the_step(build: Build) -> None:
    data = {
        "steps": [
            bash("echo started; sleep 60", id="slow", timeout="0.5s"),
            bash("true", id="next"),
        ]
    }
    record = build.run(data)
    assert record.status == "FAILURE"
    assert record.step("slow").status == "TIMEOUT"
    assert record.step("next").status == "CANCELLED"
    assert "step timed out after 0.5s" in build.log()


def test_first_failure_cancels_the_rest(build: Build, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    data = {
        "steps": [
            bash(
                "mkdir -p t; touch t/slow; sleep 60; touch t/slow-finished",
                id="slow",
                waitFor=["-"],
            ),
            bash("while [ ! -f t/slow ]; do sleep 0.05; done; exit 2", id="fail", waitFor=["-"]),
            bash("touch t/never", id="after-slow", waitFor=["slow"]),
        ]
    }
    record = build.run(data, write_workspace=ws)
    assert record.status == "FAILURE"
    assert [s.status for s in record.steps] == ["CANCELLED", "FAILURE", "CANCELLED"]
    assert record.step("fail").exit_code == 2
    assert not (ws / "t" / "slow-finished").exists() and not (ws / "t" / "never").exists()


def test_secret_env_is_masked_in_logs_and_records(build: Build, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# local values\nTOKEN=s3cr3t-value-42\n", encoding="utf-8")
    data = {
        "steps": [
            bash(
                'echo "token=$$TOKEN"; printf \'{"t": "%s"}\' "$$TOKEN" > $$BUILDER_OUTPUT/output',
                id="uses",
                secretEnv=["TOKEN"],
            )
        ],
        "availableSecrets": {
            "secretManager": [{"versionName": "projects/p/secrets/t/versions/1", "env": "TOKEN"}]
        },
    }
    record = build.run(data, secret_env_file=secrets)
    assert record.status == "SUCCESS", build.log()
    assert 'Step #0 - "uses": token=[REDACTED]' in build.log()
    assert "s3cr3t" not in build.log()
    assert record.path is not None
    assert "s3cr3t" not in record.path.read_text()
    assert record.step("uses").output == '{"t": "[REDACTED]"}'


def test_missing_secret_value_is_a_usage_error(build: Build) -> None:
    data = {
        "steps": [bash("true", secretEnv=["TOKEN"])],
        "availableSecrets": {"secretManager": [{"versionName": "v", "env": "TOKEN"}]},
    }
    with pytest.raises(run.UsageError, match="secretEnv TOKEN has no value"):
        build.run(data)


def test_env_dir_script_automap_and_options_env(build: Build) -> None:
    data = {
        "steps": [
            bash(
                'mkdir -p sub; echo "$$GLOBAL $$LOCAL $$(basename $$PWD)"',
                id="env",
                dir="sub",
                env=["LOCAL=l-$_NAME"],
            ),
            {
                "id": "script",
                "name": "ubuntu",
                "script": "echo script $_NAME $PROJECT_ID $GLOBAL",
                "automapSubstitutions": True,
            },
            {
                "id": "shebang",
                "name": "ubuntu",
                "script": "#!/usr/bin/env bash\necho bash ${BASH_VERSION:+yes}",
            },
            bash("echo no-automap=$${_NAME:-unset}", id="plain"),
        ],
        "substitutions": {"_NAME": "n1"},
        "options": {"env": ["GLOBAL=g"]},
    }
    record = build.run(data)
    assert record.status == "SUCCESS", build.log()
    log = build.log()
    assert 'Step #0 - "env": g l-n1 sub' in log
    assert 'Step #1 - "script": script n1 sandbox-project g' in log
    assert 'Step #2 - "shebang": bash yes' in log
    # Without automapSubstitutions a step's environment has no substitutions.
    assert 'Step #3 - "plain": no-automap=unset' in log


def test_volumes_home_and_builder_output(build: Build) -> None:
    data = {
        "steps": [
            bash(
                "echo cached > /cache/v; echo remembered > $$HOME/note; "
                "echo '{\"step\": 1}' > $$BUILDER_OUTPUT/output",
                id="write",
                volumes=[{"name": "cache", "path": "/cache"}],
            ),
            bash(
                'echo "$$(cat /cache/v) $$(cat $$HOME/note) $$(basename $$HOME)"',
                id="read",
                volumes=[{"name": "cache", "path": "/cache"}],
            ),
        ]
    }
    record = build.run(data)
    assert record.status == "SUCCESS", build.log()
    assert 'Step #1 - "read": cached remembered home' in build.log()
    assert json.loads(record.step("write").output) == {"step": 1}
    assert record.step("read").output == ""


def test_workspace_paths_rewritten_only_where_needed() -> None:
    from steps.cloudbuild.execute import Context

    ctx = Context.__new__(Context)
    ctx.workspace, ctx.home = Path("/tmp/ws"), Path("/tmp/home")
    ctx.volumes, ctx.options = {"c": Path("/tmp/vol")}, {}
    step = Step(index=0, id="x", name="bash", volumes=(Volume("c", "/cache"),))
    assert ctx.rewrite("--out=/workspace/a", step) == "--out=/tmp/ws/a"
    assert ctx.rewrite("/workspace", step) == "/tmp/ws"
    assert ctx.rewrite("/workspaces/a x/workspace", step) == "/workspaces/a x/workspace"
    assert ctx.rewrite("--pip-cache-dir=/cache", step) == "--pip-cache-dir=/tmp/vol"
    assert ctx.rewrite("https://h/workspace/x", step) == "https://h/workspace/x"


def test_metadata_server_gives_google_auth_a_token(build: Build) -> None:
    pytest.importorskip("google.auth")
    code = (
        "import os, urllib.request as u\n"
        "import google.auth.compute_engine as ce, google.auth.transport.requests as tr\n"
        "c = ce.Credentials(); c.refresh(tr.Request())\n"
        "print('token', c.token[:12], c.service_account_email)\n"
        "host = os.environ['GCE_METADATA_HOST']\n"
        "try:\n"
        "    u.urlopen(f'http://{host}/computeMetadata/v1/project/project-id')\n"
        "except Exception as e: print('without header:', e.code)\n"
    )
    step = {"id": "auth", "name": "python:3.12-slim", "entrypoint": "python", "args": ["-c", code]}
    # Mapped to a host command by the user: the only way a third-party image runs here.
    record = build.run({"steps": [step]}, map_images=[*MAPS, "python:*=python3"])
    assert record.status == "SUCCESS", build.log()
    assert 'Step #0 - "auth": token ya29.sandbox' in build.log()
    assert "without header: 403" in build.log()


def test_our_step_images_run_our_console_scripts(build: Build) -> None:
    data = {
        "steps": [
            {
                "id": "help",
                "name": "${_STEPS_IMAGE_PREFIX}/update-manifest:${_V}",
                "args": ["--help"],
            },
            {
                "id": "entry",
                "name": "${_STEPS_IMAGE_PREFIX}/promote:${_V}",
                "entrypoint": "gitops-history",
                "args": ["--help"],
            },
        ],
        "substitutions": {
            "_STEPS_IMAGE_PREFIX": "us-docker.pkg.dev/${PROJECT_ID}/gitops-steps",
            "_V": "0.1.0",
        },
        "options": {"dynamicSubstitutions": True},
    }
    record = build.run(data)
    assert record.status == "SUCCESS", build.log()
    assert "usage: gitops-update-manifest" in build.log()
    assert "usage: gitops-history" in build.log()


def test_images_without_local_equivalent_fail_clearly(build: Build) -> None:
    data = {
        "steps": [
            {"id": "up", "name": "gcr.io/cloud-builders/gsutil", "args": ["cp", "a", "gs://b/"]}
        ]
    }
    record = build.run(data)
    assert record.status == "FAILURE"
    assert (
        "gcr.io/cloud-builders/gsutil is not available locally; map it with --map-image"
        in build.log()
    )
    record = build.run(data, map_images=["gcr.io/cloud-builders/gsutil=echo gsutil"])
    assert record.status == "SUCCESS"
    assert 'Step #0 - "up": gsutil cp a gs://b/' in build.log()


def test_google_builders_map_to_local_tools(source: Path) -> None:
    def command(name: str, *args: str) -> list[str]:
        step = Step(index=0, id="x", name=name, args=args)
        return engine.local_command(step, name, args, steps_prefix=None, maps=[])

    assert Path(command("gcr.io/cloud-builders/git", "status")[0]).name == "git"
    build_cmd = command("gcr.io/cloud-builders/docker", "build", "-t", "x:1", ".")
    assert [Path(build_cmd[0]).name, *build_cmd[1:]] == [
        "buildah",
        "bud",
        "--isolation",
        "chroot",
        "--layers",
        "--pull=never",
        "-t",
        "x:1",
        ".",
    ]
    push = command("gcr.io/cloud-builders/docker", "push", "127.0.0.1:5000/a/b:1")
    assert push[1:] == [
        "push",
        "--tls-verify=false",
        "127.0.0.1:5000/a/b:1",
        "docker://127.0.0.1:5000/a/b:1",
    ]
    with pytest.raises(engine.NotRunnable, match="docker 'run' has no local equivalent"):
        command("gcr.io/cloud-builders/docker", "run", "x")
    # Google's builders keep the entrypoint a step names (env.yaml: git with bash).
    git_bash = Step(index=0, id="x", name="gcr.io/cloud-builders/git", entrypoint="bash")
    argv = engine.local_command(git_bash, git_bash.name, ["-c", "true"], steps_prefix=None, maps=[])
    assert Path(argv[0]).name == "bash" and argv[1:] == ["-c", "true"]
    # A user's image never runs on the host unless the user maps it.
    for image in ("python:3.12", "alpine"):
        with pytest.raises(engine.NotRunnable, match=r"--map-image .* --engine podman"):
            command(image, "true")


@pytest.mark.parametrize(
    ("maps", "image", "expected"),
    [
        # '*' matches any text, '/' and ':' included, and fills the target's '*'.
        (["gcr.io/p/*=localhost/*"], "gcr.io/p/a/b:1", "localhost/a/b:1"),
        # Several '*' fill in order.
        (["*/p/*:*=localhost/*/*:dev"], "gcr.io/p/app:1", "localhost/gcr.io/app:dev"),
        # A target without tag keeps the image's tag when only the name matched.
        (["gcr.io/p/app=localhost/app"], "gcr.io/p/app:7", "localhost/app:7"),
        (
            ["gcr.io/p/app=localhost/app"],
            "gcr.io/p/app@sha256:" + "a" * 64,
            "localhost/app@sha256:" + "a" * 64,
        ),
        # A target with its own tag wins.
        (["gcr.io/p/app:*=localhost/app:dev"], "gcr.io/p/app:7", "localhost/app:dev"),
        # The first match wins; no match leaves the image alone.
        (["x/*=y/*", "x/a=z"], "x/a:1", "y/a:1"),
        (["x/*=y/*"], "w/a:1", "w/a:1"),
    ],
)
def test_map_image_wildcards(maps: list[str], image: str, expected: str) -> None:
    assert engine.container_image(image, engine.parse_map_images(maps)) == expected


def test_where_steps_run() -> None:
    maps = engine.parse_map_images(["bash=bash", "gcr.io/p/*=localhost/*"])
    ours = "localhost/gitops-steps/update-manifest:dev"
    assert engine.placement(ours, "process", maps, None) == engine.HOST
    assert engine.placement(ours, "podman", maps, None) == engine.CONTAINER
    assert engine.placement("bash", "podman", maps, None) == engine.HOST  # mapped to a command
    assert engine.placement("gcr.io/p/x:1", "process", maps, None) == engine.CONTAINER
    assert engine.placement("gcr.io/cloud-builders/git", "podman", maps, None) == engine.HOST
    assert engine.placement("python:3.7-slim", "process", maps, None) == engine.CONTAINER


def test_an_unmapped_image_stops_without_a_container_engine(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "container_engine_for", lambda chosen: None)
    marker = tmp_path / "ran-on-the-host"
    step = {
        "id": "deps",
        "name": "python:3.7-slim",
        "entrypoint": "/bin/sh",
        "args": ["-c", f"touch {marker}; pip install flask"],
    }
    record = build.run({"steps": [step]})
    assert record.status == "FAILURE"
    assert not marker.exists()
    assert "--map-image python=COMMAND or run with --engine podman" in build.log()


def test_docker_build_stops_before_the_network_when_the_base_is_missing(
    build: Build, source: Path
) -> None:
    if not shutil.which("buildah"):
        pytest.skip("needs buildah")
    (source / "Dockerfile").write_text(
        "ARG BASE=gitops-test-absent/python:3.7-slim\nFROM ${BASE} AS build\n"
        "FROM build\nRUN true\n",
        encoding="utf-8",
    )
    step = {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", "x:1", "."]}
    record = build.run({"steps": [step]})
    assert record.status == "FAILURE"
    assert (
        "docker build: base image gitops-test-absent/python:3.7-slim is not in local storage; "
        "stopping before any network access" in build.log()
    )


def test_dockerfile_bases(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        "ARG V=3.12\nFROM --platform=linux/amd64 python:${V}-slim AS base\n"
        "FROM base\nFROM scratch\nCOPY --from=base / /\n",
        encoding="utf-8",
    )
    (tmp_path / "other.Dockerfile").write_text("FROM alpine:3\n", encoding="utf-8")
    assert engine.dockerfile_bases(["build", "-t", "x", "ctx"], tmp_path) == ["python:3.12-slim"]
    assert engine.dockerfile_bases(["build", "--build-arg", "V=3.7", "-t=x", "ctx"], tmp_path) == [
        "python:3.7-slim"
    ]
    assert engine.dockerfile_bases(["build", "-f", "other.Dockerfile", "."], tmp_path) == [
        "alpine:3"
    ]


def test_container_command_is_cloud_build_like() -> None:
    step = Step(index=0, id="x", name="img", args=("a",), entrypoint="sh")
    argv = engine.container_command(
        "podman",
        step,
        "img",
        ["a"],
        env={"K": "v"},
        mounts=[("/ws", "/workspace")],
        workdir="/workspace",
        script_path=None,
        name="n",
    )
    assert argv[1:] == [
        "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm", "--name", "n",
        "--network", "host", "-w", "/workspace", "-v", "/ws:/workspace", "-e", "K",
        "--entrypoint", "sh", "img", "a",
    ]  # fmt: skip


def test_rerun_replays_the_same_build(build: Build, source: Path) -> None:
    first_commit = git("rev-parse", "HEAD", cwd=source).strip()
    data = {
        "steps": [
            bash(
                'echo "$_GREETING $COMMIT_SHA $$(git rev-parse HEAD) $$(cat README) $$FROM_CALLER"',
                id="show",
            )
        ],
        "substitutions": {"_GREETING": "hi"},
    }
    record = build.run(data, substitutions={"_GREETING": "hello"}, extra_env={"FROM_CALLER": "yes"})
    assert record.status == "SUCCESS", build.log()
    (source / "README").write_text("changed\n", encoding="utf-8")
    git("commit", "-qam", "second", cwd=source)
    build.lines.clear()
    again = rerun.rerun_build(record.build_id, build.records, log=build.lines.append)
    assert again.build_id != record.build_id and again.status == "SUCCESS"
    assert f'"show": hello {first_commit} {first_commit} hello yes' in build.log()
    assert again.request["substitutions"]["_GREETING"] == "hello"
    assert again.request["extra_env"] == {"FROM_CALLER": "yes"}


def test_cli_run_only_skip_and_rerun(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cb.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "steps": [
                    bash("echo one $_X", id="one"),
                    bash("echo two", id="two"),
                    bash("exit 1", id="three"),
                ]
            }
        ),
        encoding="utf-8",
    )
    records = tmp_path / "records"
    base = [
        str(config),
        "--source",
        str(source),
        "--substitutions",
        "_X=x1",
        "--records",
        str(records),
    ]
    base += ["--map-image", "bash=bash"]
    assert run.main([*base, "--only", "one", "two"]) == 0
    err = capsys.readouterr().err
    assert 'Step #0 - "one": one x1' in err and "BUILD SUCCESS" in err
    assert run.main([*base, "--skip", "two"]) == 1
    [failed] = [
        json.loads(p.read_text())
        for p in records.glob("*.json")
        if json.loads(p.read_text())["status"] == "FAILURE"
    ]
    assert [s["status"] for s in failed["steps"]] == ["SUCCESS", "SKIPPED", "FAILURE"]
    assert rerun.main([failed["build_id"], "--records", str(records)]) == 1
    assert run.main([*base, "--only", "nope"]) == 2
    assert "no step with that id" in capsys.readouterr().err


def test_cli_refuses_a_config_cloud_build_would_refuse(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cb.yaml"
    config.write_text(yaml.safe_dump({"steps": [bash("echo $_MISSING")]}), encoding="utf-8")
    argv = [str(config), "--source", str(source), "--records", str(tmp_path / "r")]
    # gcloud builds submit keeps MUST_MATCH; a trigger would run it (ALLOW_LOOSE).
    assert run.main([*argv, "--started-by", "submit"]) == 2
    assert (
        'key in the template "_MISSING" is not matched in the substitution data'
        in capsys.readouterr().err
    )


def test_records_default_under_the_source(build: Build, source: Path) -> None:
    record = build.run({"steps": [bash("true")]}, records_dir=None)
    assert record.path == source / ".gitops-cloudbuild" / "builds" / f"{record.build_id}.json"
    saved = json.loads(record.path.read_text())
    assert saved["status"] == "SUCCESS" and saved["steps"][0]["duration"] >= 0
    assert saved["config"]["steps"][0]["args"] == ["-c", "true"]


# -- podman: each step in its image (needs root, podman and the step images) --

STEP_IMAGE = "localhost/gitops-steps/update-manifest:dev"


@pytest.mark.slow
@needs_image_tools
@pytest.mark.usefixtures("images")  # built from this checkout, as CI has none yet
def test_podman_engine_runs_steps_in_their_images(build: Build, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cache = [{"name": "cache", "path": "/cache"}]
    data = {
        "steps": [
            {"id": "help", "name": STEP_IMAGE, "args": ["--help"]},
            {
                "id": "inside",
                "name": STEP_IMAGE,
                "entrypoint": "sh",
                "args": [
                    "-c",
                    "echo in > /workspace/inside; echo kept > $$HOME/h; echo v > /cache/v;"
                    ' echo "{\\"pwd\\": \\"$$PWD\\"}" > $$BUILDER_OUTPUT/output',
                ],
                "volumes": cache,
            },
            {
                "id": "script",
                "name": STEP_IMAGE,
                "script": "cat $HOME/h /cache/v",
                "volumes": cache,
            },
            {"id": "extra", "name": STEP_IMAGE, "entrypoint": "sh", "args": ["-c", "echo $$EXTRA"]},
        ]
    }
    record = build.run(
        data, engine="podman", write_workspace=ws, map_images=[], extra_env={"EXTRA": "for-all"}
    )
    assert record.status == "SUCCESS", build.log()
    assert "usage: gitops-update-manifest" in build.log()
    assert (ws / "inside").read_text() == "in\n"
    assert json.loads(record.step("inside").output) == {"pwd": "/workspace"}
    assert 'Step #2 - "script": kept' in build.log() and 'Step #2 - "script": v' in build.log()
    assert 'Step #3 - "extra": for-all' in build.log()


@pytest.mark.slow
@needs_image_tools
@pytest.mark.usefixtures("images")  # built from this checkout, as CI has none yet
def test_a_missing_stage_image_is_an_error_under_podman(build: Build) -> None:
    missing = "localhost/gitops-steps/update-manifest:never-built"
    record = build.run({"steps": [{"name": missing, "args": ["--help"]}]}, engine="podman")
    assert record.status == "FAILURE"
    assert f"image {missing} is not available to podman" in build.log()
    assert "usage: gitops-update-manifest" not in build.log()  # never run on the host


@pytest.mark.slow
@needs_image_tools
@pytest.mark.usefixtures("images")
def test_the_process_engine_runs_a_third_party_image_in_podman(build: Build) -> None:
    base = "docker.io/library/python:3.12-slim"  # scripts/build-images tags its base so
    step = {"name": base, "entrypoint": "sh", "args": ["-c", "test ! -e /work && echo inside"]}
    record = build.run({"steps": [step]}, map_images=[])
    assert record.status == "SUCCESS", build.log()
    assert "inside" in build.log()


@pytest.mark.slow
def test_docker_build_and_push_go_through_buildah(
    build: Build, source: Path, registry: Any
) -> None:
    if os.geteuid() != 0 or shutil.which("buildah") is None:
        pytest.skip("needs root and buildah")
    (source / "Dockerfile").write_text("FROM scratch\nCOPY README /README\n", encoding="utf-8")
    git("add", "Dockerfile", cwd=source)
    git("commit", "-qm", "dockerfile", cwd=source)
    image = f"{registry.address}/cloudbuild-run/hello:$SHORT_SHA"
    data = {
        "steps": [
            {
                "id": "build",
                "name": "gcr.io/cloud-builders/docker",
                "args": ["build", "-t", image, "."],
            },
            {"id": "push", "name": "gcr.io/cloud-builders/docker", "args": ["push", image]},
            {
                "id": "tag",
                "name": "gcr.io/cloud-builders/docker",
                "args": ["tag", image, f"{registry.address}/cloudbuild-run/hello:listed"],
            },
        ],
        # Pushed by the build itself once every step succeeded, as on Cloud Build.
        "images": [f"{registry.address}/cloudbuild-run/hello:listed"],
    }
    record = build.run(data)
    short = git("rev-parse", "--short=7", "HEAD", cwd=source).strip()
    try:
        assert record.status == "SUCCESS", build.log()
        assert record.images == [
            {"image": f"{registry.address}/cloudbuild-run/hello:listed", "status": "SUCCESS"}
        ]
        with urllib.request.urlopen(f"{registry.url}/v2/cloudbuild-run/hello/tags/list") as answer:
            assert sorted(json.load(answer)["tags"]) == sorted([short, "listed"])
    finally:
        env = {**os.environ, **engine.containers_environ()}
        for tag in (short, "listed"):
            tagged = f"{registry.address}/cloudbuild-run/hello:{tag}"
            subprocess.run(["buildah", "rmi", tagged], env=env, capture_output=True, check=False)


def test_images_that_cannot_be_pushed_fail_the_build(build: Build) -> None:
    data = {"steps": [bash("true")], "images": ["127.0.0.1:9/nowhere/never:1"]}
    record = build.run(data)
    assert record.status == "FAILURE"
    assert record.images == [{"image": "127.0.0.1:9/nowhere/never:1", "status": "FAILURE"}]
    assert "ERROR: pushing 127.0.0.1:9/nowhere/never:1 failed" in build.log()
    assert build.run(data, push_images=False).status == "SUCCESS"


def test_what_a_step_leaves_running_stops_with_it(build: Build, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    data = {"steps": [bash("sleep 60 & echo $$! > /workspace/pid; echo started", id="bg")]}
    record = build.run(data, write_workspace=ws)
    assert record.status == "SUCCESS", build.log()
    pid = int((ws / "pid").read_text())
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid):
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_build_timeout_stops_everything(build: Build) -> None:
    data = {"steps": [bash("sleep 60", id="long"), bash("true", id="never")], "timeout": "0.5s"}
    record = build.run(data)
    assert record.status == "TIMEOUT"
    assert [s.status for s in record.steps] == ["CANCELLED", "CANCELLED"]


def test_options_apply_to_every_step(build: Build, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("SHARED=shared-secret-value\n", encoding="utf-8")
    data = {
        "steps": [
            bash("echo $$_WHO > /shared/who", id="one"),
            bash('echo "$$(cat /shared/who) $$BUILD_ID $$SHARED"', id="two"),
        ],
        "substitutions": {"_WHO": "options"},
        "availableSecrets": {"inline": [{"kmsKeyName": "k", "envMap": {"SHARED": "eA=="}}]},
        "options": {
            "automapSubstitutions": True,
            "volumes": [{"name": "shared", "path": "/shared"}],
            "secretEnv": ["SHARED"],
        },
    }
    record = build.run(data, secret_env_file=secrets)
    assert record.status == "SUCCESS", build.log()
    assert f'"two": options {record.build_id} [REDACTED]' in build.log()


def test_write_workspace_in_place_or_outside_the_source(build: Build, source: Path) -> None:
    record = build.run({"steps": [bash("echo made > made")]}, write_workspace=source)
    assert record.status == "SUCCESS" and (source / "made").read_text() == "made\n"
    with pytest.raises(run.UsageError, match="inside --source"):
        build.run({"steps": [bash("true")]}, write_workspace=source / "sub")


# -- our own configs, as far as they run without a cluster or a registry -------

REPO = Path(__file__).resolve().parent.parent


def test_app_config_tests_the_example_app(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(REPO / "examples" / "app", app)
    git("init", "-q", "-b", "main", cwd=app)
    git("add", "-A", cwd=app)
    git("commit", "-qm", "app", cwd=app)
    lines: list[str] = []
    record = run_build(
        REPO / "cloudbuild" / "app.yaml",
        app,
        only=["test"],
        records_dir=tmp_path / "records",
        log=lines.append,
    )
    assert record.status == "SUCCESS", "\n".join(lines)
    assert json.loads(record.step("test").output)["status"] == "passed"


def test_steps_config_smoke_tests_run_our_console_scripts(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    git("clone", "-q", str(REPO), str(checkout))
    smoke = ["help-test", "help-update-manifest", "help-push-candidate", "help-verify-rollout"]
    smoke += ["help-promote", "smoke-test-example", "smoke-render-example"]
    lines: list[str] = []
    record = run_build(
        REPO / "cloudbuild" / "steps.yaml",
        checkout,
        only=smoke,
        records_dir=tmp_path / "records",
        log=lines.append,
    )
    assert record.status == "SUCCESS", "\n".join(lines)
    assert (checkout / "out").exists() is False  # the workspace is a copy
    statuses = {s.id: s.status for s in record.steps}
    assert all(statuses[i] == "SUCCESS" for i in smoke)
    assert statuses["build-test"] == "SKIPPED"


# -- how a build is started, extra environment, the metadata server -----------


def test_started_by_sets_the_built_ins(build: Build) -> None:
    step = bash("echo commit=$COMMIT_SHA trigger=$TRIGGER_NAME short=${SHORT_SHA,,}")
    record = build.run({"steps": [step]})
    assert record.status == "SUCCESS", build.log()
    assert "commit=" + record.request["commit"] in build.log()
    assert "trigger=local" in build.log()
    build.lines.clear()
    # gcloud builds submit: no Git built-ins unless given, and no bash expansions
    # without dynamicSubstitutions (the config's own MUST_MATCH applies).
    plain = bash("echo commit=[$COMMIT_SHA] trigger=[$TRIGGER_NAME]")
    record = build.run({"steps": [plain]}, started_by="submit")
    assert record.status == "SUCCESS", build.log()
    assert "commit=[] trigger=[]" in build.log()
    with pytest.raises(UsageError, match="is not a valid built-in substitution"):
        build.run({"steps": [step]}, started_by="submit")


def test_extra_env_reaches_every_step(build: Build) -> None:
    data = {
        "steps": [
            bash("echo one=$$EXTRA", env=["OTHER=x"]),
            bash("echo two=$$EXTRA", env=["EXTRA=step-wins"]),
        ]
    }
    record = build.run(data, extra_env={"EXTRA": "from-env"})
    assert record.status == "SUCCESS", build.log()
    assert "one=from-env" in build.log() and "two=step-wins" in build.log()


def test_cli_env_flag(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cb.yaml"
    config.write_text(yaml.safe_dump({"steps": [bash("echo got=$$EXTRA")]}), encoding="utf-8")
    argv = [str(config), "--source", str(source), "--records", str(tmp_path / "r")]
    argv += ["--map-image", "bash=bash", "--env", "EXTRA=1", "--metadata-server", "none"]
    assert run.main(argv) == 0
    assert "got=1" in capsys.readouterr().err
    assert run.main([*argv, "--env", "NOPE"]) == 2


def test_an_existing_metadata_server_is_used(build: Build) -> None:
    gcp = pytest.importorskip("steps.sandbox.gcp")
    server = gcp.GcpSandbox().start()
    try:
        step = bash("echo host=$$GCE_METADATA_HOST")
        record = build.run({"steps": [step]}, metadata_server=server.address)
        assert record.status == "SUCCESS", build.log()
        assert f"host={server.address}" in build.log()
        build.lines.clear()
        # Also when GCE_METADATA_HOST is given (the sandbox's env file sets it).
        record = build.run({"steps": [step]}, extra_env={"GCE_METADATA_HOST": server.address})
        assert f"host={server.address}" in build.log()
    finally:
        server.stop()


def test_the_sandbox_gke_stand_in_accepts_tokens_of_its_metadata_server(build: Build) -> None:
    """env.yaml from the command line against the sandbox: --cluster needs a token
    the sandbox's GKE API accepts, so the build uses the sandbox's metadata server."""
    gcp = pytest.importorskip("steps.sandbox.gcp")
    server = gcp.GcpSandbox().start()
    server.add_cluster("projects/p/locations/l/clusters/c", gcp.Cluster("127.0.0.1:1", "ca"))
    code = (
        "import json, os, urllib.request as u\n"
        "h = os.environ['GCE_METADATA_HOST']\n"
        "r = u.Request(f'http://{h}/computeMetadata/v1/instance/service-accounts/default/token',"
        " headers={'Metadata-Flavor': 'Google'})\n"
        "t = json.load(u.urlopen(r))['access_token']\n"
        "r = u.Request(f'http://{h}/v1/projects/p/locations/l/clusters/c',"
        " headers={'Authorization': 'Bearer ' + t})\n"
        "print('cluster', u.urlopen(r).status)\n"
    )
    step = {"name": "python:3.12-slim", "entrypoint": "python", "args": ["-c", code]}
    try:
        record = build.run(
            {"steps": [step]}, map_images=["python:*=python3"], metadata_server=server.address
        )
    finally:
        server.stop()
    assert record.status == "SUCCESS", build.log()
    assert "cluster 200" in build.log()


def test_the_runner_does_not_need_the_sandbox_package(tmp_path: Path, source: Path) -> None:
    """Our images leave steps.sandbox out (and some leave git out); gitops-cloudbuild
    run still works there."""
    config = tmp_path / "cb.yaml"
    config.write_text(yaml.safe_dump({"steps": [bash("echo ran")]}), encoding="utf-8")
    code = (
        "import sys; sys.modules['steps.sandbox'] = None\n"
        "from steps.cloudbuild.__main__ import main\n"
        f"sys.exit(main(['run', {str(config)!r}, '--source', {str(source)!r},"
        f" '--records', {str(tmp_path / 'r')!r}, '--map-image', 'bash=bash']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCE_METADATA")}
    tools = tmp_path / "bin"  # and no git, as in the update-manifest image
    tools.mkdir()
    (tools / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    env["PATH"] = str(tools)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "ran" in proc.stderr and "no GCE metadata server" in proc.stderr


def test_the_classic_tutorials_app_config_runs_as_far_as_this_machine_allows(
    build: Build, source: Path
) -> None:
    """The GKE GitOps tutorial's layout (tests/cloudbuild_cases/ok_tutorial_app.yaml):
    its python:3.7-slim step never runs on the host, and its docker build stops
    before the network when the base image is not here."""
    case = Path(__file__).parent / "cloudbuild_cases" / "ok_tutorial_app.yaml"
    data = yaml.safe_load(case.read_text(encoding="utf-8"))
    (source / "Dockerfile").write_text("FROM python:3.7-slim\nCOPY . /app\n", encoding="utf-8")
    record = build.run(data, map_images=[])
    tests = record.step("unit tests")
    assert record.status == "FAILURE" and tests.status == "FAILURE"
    assert tests.ran_in != "host"
    assert "python:3.7-slim" in tests.error and "--map-image" in tests.error
    assert [s.status for s in record.steps[1:]] == ["CANCELLED"] * 5
    if shutil.which("buildah"):
        build.lines.clear()
        record = build.run(data, map_images=[], only=["build"])
        assert record.step("build").status == "FAILURE"
        assert "base image python:3.7-slim is not in local storage" in build.log()


def test_rerun_runs_no_hook_of_the_copied_repository(
    build: Build, source: Path, tmp_path: Path
) -> None:
    """The runner checks out a recorded commit in a copy of the user's repository:
    a hook or fsmonitor in that repository's config must not run on the host."""
    marker = tmp_path / "hook-ran"
    hook = source / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    hook.chmod(0o755)
    git("config", "core.fsmonitor", str(hook), cwd=source)
    record = build.run({"steps": [bash("true", id="noop")]})
    assert record.status == "SUCCESS", build.log()
    (source / "README").write_text("changed\n", encoding="utf-8")
    git("commit", "-qam", "second", cwd=source)
    marker.unlink(missing_ok=True)  # our own commit above ran it: that is the user's git
    again = rerun.rerun_build(record.build_id, build.records, log=build.lines.append)
    assert again.status == "SUCCESS", build.log()
    assert not marker.exists()


def test_the_build_context_repr_names_no_secret_or_environment(tmp_path: Path) -> None:
    """The runner's shared context holds decrypted secrets and every step's
    environment; a repr of it (a traceback, a debugger) must show neither."""
    import threading

    from steps.cloudbuild.execute import Context

    context = Context(
        engine="host",
        workspace=tmp_path,
        home=tmp_path,
        scratch=tmp_path,
        volumes={},
        values={"PROJECT_ID": "p"},
        options={},
        secrets={"TOKEN": "s3cr3t-value"},
        base_env={"API_KEY": "env-s3cr3t"},
        extra_env={"PASSWORD": "extra-s3cr3t"},
        maps=[],
        mask=None,  # type: ignore[arg-type]
        log=None,  # type: ignore[arg-type]
        cancel=threading.Event(),
    )
    text = repr(context)
    assert "s3cr3t" not in text and str(tmp_path) in text, text
