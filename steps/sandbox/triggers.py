"""The sandbox's Cloud Build triggers on the env repo: ``candidate``, and in a chain each
environment's branch (``candidate`` -> staging's build, ``staging`` -> production's).

``env.git`` gets a post-receive hook (``install_hook``) that, for each push to
``refs/heads/candidate``, starts a detached ``run`` and returns at once, as a
trigger queues a build without holding up the push. ``run`` checks the pushed
commit out (Cloud Build fetches the source of the commit it was triggered by)
and runs ``gitops-cloudbuild run`` on that checkout's ``cloudbuild.yaml`` with
the trigger's built-ins (``COMMIT_SHA``, ``SHORT_SHA``, ``BRANCH_NAME``,
``REPO_NAME``) and substitutions. The Git token reaches the build through
``--secret-env-file``, never a command line.

Each triggered build leaves ``DIR/triggers/NNNN.json`` (commit, status,
exit code, log) and its output in ``DIR/logs/build-NNNN.log``;
``wait_for_builds`` reads them back.

A fault hook for tests: build numbers listed in ``DIR/triggers/hold``
(``hold_builds``) stay queued until ``release_builds``, as a busy worker pool
would keep them, which forces the order in which triggered builds run.

``serve-git`` is the sandbox's Git server process: the loopback server of
``steps.sandbox.gitserver`` with the token read from ``DIR/secrets.env``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from steps.sandbox import up as sandbox

BRANCH = "candidate"
REPO_NAME = "env"
TRIGGER_NAME = "env-candidate"
ZERO = "0" * 40
HOLD = "hold"
HOLD_LIMIT = 600.0
"""Seconds a held build waits at most before it runs anyway."""


def triggers_of(values: Mapping[str, str]) -> dict[str, tuple[str, str | None]]:
    """Branch -> (trigger name, environment) for the sandbox (pure).

    One environment: ``env-candidate`` on ``candidate``. A chain: each
    environment's build is triggered by the branch it promotes from.
    """
    chain = sandbox.chain_of(values)
    if not chain:
        return {BRANCH: (TRIGGER_NAME, None)}
    sources = [BRANCH, *chain[:-1]]
    return {source: (f"env-{env}", env) for source, env in zip(sources, chain, strict=True)}


def pushed_commits(lines: Sequence[str], branch: str = BRANCH) -> list[str]:
    """The new tips of ``branch`` in post-receive's ``OLD NEW REF`` lines (pure)."""
    commits = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == f"refs/heads/{branch}" and parts[1] != ZERO:
            commits.append(parts[1])
    return commits


def _clean_env() -> dict[str, str]:
    """The environment without the hook's Git variables (GIT_DIR, GIT_CONFIG_*, ...)."""
    drop = ("GIT_", "GITOPS_")
    return {k: v for k, v in os.environ.items() if k in sandbox.KEEP or not k.startswith(drop)}


def _new_record(layout: sandbox.Layout, record: Mapping[str, Any]) -> int:
    """Claim the next ``triggers/NNNN.json`` (atomic); its number."""
    layout.triggers.mkdir(parents=True, exist_ok=True)
    number = len(list(layout.triggers.glob("*.json"))) + 1
    while True:
        path = layout.triggers / f"{number:04d}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({**record, "number": number}, handle)
        return number


def _update_record(layout: sandbox.Layout, number: int, **changes: Any) -> dict[str, Any]:
    path = layout.triggers / f"{number:04d}.json"
    record: dict[str, Any] = json.loads(path.read_text())
    record.update(changes)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)
    return record


def start_build(
    layout: sandbox.Layout, commit: str, *, engine: str = "process", branch: str = BRANCH
) -> int:
    """Queue the env build ``branch`` triggers for ``commit``, detached; the record's number."""
    trigger, environment = triggers_of(sandbox.read_env(layout.root))[branch]
    record = {
        "trigger": trigger,
        "environment": environment,
        "branch": branch,
        "commit": commit,
        "status": "QUEUED",
        "queued": time.time(),
    }
    number = _new_record(layout, record)
    argv = [sys.executable, "-m", "steps.sandbox.triggers", "run", "--dir", str(layout.root)]
    argv += ["--number", str(number), "--engine", engine]
    sandbox.spawn(layout, f"build-{number:04d}", argv, _clean_env())
    return number


def hold_builds(layout: sandbox.Layout, numbers: Sequence[int]) -> None:
    """Keep the triggered builds ``numbers`` (queued or still to come) queued."""
    layout.triggers.mkdir(parents=True, exist_ok=True)
    (layout.triggers / HOLD).write_text("".join(f"{n}\n" for n in numbers))


def release_builds(layout: sandbox.Layout) -> None:
    (layout.triggers / HOLD).unlink(missing_ok=True)


def _wait_while_held(layout: sandbox.Layout, number: int) -> None:
    deadline = time.monotonic() + HOLD_LIMIT
    while time.monotonic() < deadline:
        try:
            held = (layout.triggers / HOLD).read_text().split()
        except FileNotFoundError:
            return
        if str(number) not in held:
            return
        time.sleep(0.05)


def run_build(layout: sandbox.Layout, number: int, *, engine: str = "process") -> int:
    """Check the commit out and run the env repo's cloudbuild.yaml on it; the exit code."""
    _wait_while_held(layout, number)
    record = _update_record(layout, number, status="WORKING", started=time.time())
    commit = str(record["commit"])
    values = sandbox.read_env(layout.root)
    source = layout.builds / f"trigger-{number:04d}" / "source"
    if source.exists():
        shutil.rmtree(source)
    source.parent.mkdir(parents=True, exist_ok=True)
    log = layout.log(f"build-{number:04d}")
    try:
        sandbox.git("clone", "--quiet", "--no-checkout", values["ENV_REPO_DIR"], str(source))
        sandbox.git("-C", str(source), "checkout", "--quiet", commit)
    except Exception as exc:
        _update_record(layout, number, status="FAILURE", exit_code=2, error=str(exc))
        return 2
    trigger = str(record.get("trigger") or TRIGGER_NAME)
    subs = {
        "COMMIT_SHA": commit,
        "SHORT_SHA": commit[:7],
        "BRANCH_NAME": str(record.get("branch") or BRANCH),
        "REPO_NAME": REPO_NAME,
        **sandbox.substitutions(values, "env", record.get("environment")),
    }
    print(
        f"gitops-sandbox: trigger {trigger}: gitops-cloudbuild run "
        f"{source / 'cloudbuild.yaml'} --source {source} --engine {engine} --substitutions "
        + ",".join(f"{k}={v}" for k, v in subs.items())
        + f" --secret-env-file {values['SECRET_ENV_FILE']}",
        flush=True,
    )
    from steps.cloudbuild.run import run_build as cloudbuild_run

    try:
        # The API rather than the command, to use the sandbox's metadata server
        # (it issues the tokens its GKE API stand-in accepts).
        build = cloudbuild_run(
            source / "cloudbuild.yaml",
            source,
            substitutions=subs,
            engine=engine,
            secret_env_file=Path(values["SECRET_ENV_FILE"]),
            records_dir=layout.builds / "records",
            extra_env=build_environ(values),
            metadata_server=False,
        )
    except Exception as exc:
        print(f"gitops-sandbox: trigger {trigger}: error: {exc}", flush=True)
        _update_record(layout, number, status="FAILURE", exit_code=2, error=str(exc), log=str(log))
        return 2
    code = 0 if build.status == "SUCCESS" else 1
    _update_record(
        layout,
        number,
        status=build.status,
        exit_code=code,
        build_id=build.build_id,
        record=str(build.path),
        finished=time.time(),
        log=str(log),
    )
    return code


def build_environ(values: Mapping[str, str]) -> dict[str, str]:
    """What a local build needs to reach the sandbox (never the Git token)."""
    names = ("GCE_METADATA_HOST", "GCE_METADATA_IP", "GITOPS_CONTAINER_API_URL")
    return {name: values[name] for name in names if name in values}


def builds(root: Path) -> list[dict[str, Any]]:
    """Every triggered build's record, oldest first."""
    directory = sandbox.Layout(Path(root).resolve()).triggers
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            records.append(json.loads(path.read_text()))
    return records


def wait_for_builds(root: Path, count: int, timeout: float = 600.0) -> list[dict[str, Any]]:
    """Bounded wait until ``count`` triggered builds have finished; all records."""
    deadline = time.monotonic() + timeout
    while True:
        records = builds(root)
        finished = [r for r in records if r.get("status") in ("SUCCESS", "FAILURE")]
        if len(finished) >= count and len(finished) == len(records):
            return records
        if time.monotonic() > deadline:
            states = ", ".join(f"{r['number']}:{r.get('status')}" for r in records)
            raise TimeoutError(f"{count} triggered builds not finished in {timeout:.0f}s: {states}")
        time.sleep(0.1)


# -- the processes ---------------------------------------------------------------------


def serve_git(layout: sandbox.Layout, port: int) -> int:
    from steps.sandbox.gitserver import GitServer

    token = sandbox.parse_env(layout.secrets.read_text())["GIT_TOKEN"]
    server = GitServer(layout.git_root, port, user=sandbox.GIT_USER, password=token)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    server.start()
    print(f"gitops-sandbox git: serving {layout.git_root} at {server.url}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopping.wait()
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m steps.sandbox.triggers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("hook", "run", "serve-git"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--engine", default="process")
    parser.add_argument("--number", type=int, help="run: the trigger record to build")
    parser.add_argument("--port", type=int, default=0, help="serve-git: the port")
    args = parser.parse_args(argv)
    layout = sandbox.Layout(Path(args.dir).resolve())
    if args.command == "serve-git":
        return serve_git(layout, args.port)
    if args.command == "run":
        if args.number is None:
            parser.error("run needs --number")
        return run_build(layout, args.number, engine=args.engine)
    lines = sys.stdin.read().splitlines()
    for branch, (trigger, _) in triggers_of(sandbox.read_env(layout.root)).items():
        for commit in pushed_commits(lines, branch):
            number = start_build(layout, commit, engine=args.engine, branch=branch)
            print(f"gitops-sandbox: trigger {trigger}: build {number} for {commit[:12]} queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
