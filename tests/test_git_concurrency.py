"""Many push-candidate processes at once, and a Git server killed mid-push.

Everything runs against the loopback smart-HTTP server; bounded in count
(16 writers) and time (each process has a timeout).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_git import files_at, git, isolated_env, log, seed, write_tree

from steps.lib.git_messages import parse_trailers
from steps.sandbox.gitserver import GitServer

WRITERS = 16
PROCESS_TIMEOUT = 120


def start_writer(
    index: int,
    url: str,
    src: Path | None,
    path: str,
    home: Path,
    image: str | None = None,
    max_attempts: int = 25,
) -> subprocess.Popen[str]:
    env = isolated_env(
        home,
        {
            "BUILD_ID": f"build-{index:02d}",
            "COMMIT_SHA": f"{index:040x}",
            "REPO_NAME": f"service-{index:02d}",
        },
    )
    source = ["--image", image] if image else ["--from", str(src)]
    # 16 writers on a 2-CPU machine need up to ~8 rounds (see the benchmark);
    # a margin above the default 10 keeps this test about correctness, not speed.
    args = ["--repo", url, *source, "--path", path, "--max-attempts", str(max_attempts)]
    return subprocess.Popen(
        [sys.executable, "-m", "steps.push_candidate", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    outcomes = []
    for proc in processes:
        try:
            _, err = proc.communicate(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        outcomes.append((proc.returncode, err))
    return outcomes


def assert_linear(repo: Path, ref: str) -> list[str]:
    """Every commit has at most one parent; return the messages, newest first."""
    for line in git("--git-dir", str(repo), "rev-list", "--parents", ref).splitlines():
        assert len(line.split()) <= 2, f"merge commit in {ref}: {line}"
    git("--git-dir", str(repo), "fsck", "--strict", "--no-dangling")
    return log(repo, ref, "%B")


def build_ids(messages: list[str]) -> list[str]:
    return [v for m in messages for k, v in parse_trailers(m) if k == "Build-Id"]


def test_16_writers_to_16_paths_all_land_once(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str]
) -> None:
    url = git_server.repo_url("env.git")
    seed(url, "candidate", {"README": "env\n"}, tmp_path / "w")
    processes = []
    for i in range(WRITERS):
        src = write_tree(tmp_path / f"src-{i}", {"deploy.yaml": f"replicas: {i}\n"})
        processes.append(start_writer(i, url, src, f"svc-{i:02d}", tmp_path))
    outcomes = finish(processes)
    assert [code for code, _ in outcomes] == [0] * WRITERS, [e for _, e in outcomes]
    repo = git_server.root / "env.git"
    messages = assert_linear(repo, "candidate")
    assert len(messages) == WRITERS + 1
    assert sorted(build_ids(messages)) == [f"build-{i:02d}" for i in range(WRITERS)]
    for message in messages[:-1]:
        trailers = dict(parse_trailers(message))
        index = int(trailers["Build-Id"].split("-")[1])
        assert trailers["Source-Repo"] == f"service-{index:02d}"
        assert trailers["Source-Commit"] == f"{index:040x}"
        assert f"svc-{index:02d}" in message.splitlines()[0]
    expected = {f"svc-{i:02d}/deploy.yaml": f"replicas: {i}\n" for i in range(WRITERS)}
    assert files_at(repo, "candidate") == {"README": "env\n", **expected}


def test_losing_races_is_not_failing_24_writers_with_one_failure_allowed_all_land(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str]
) -> None:
    # --max-attempts counts failures (network, server); a push rejected because
    # another writer landed first is retried within a time budget instead. With
    # one failure allowed, every writer but the first loses at least one race.
    url = git_server.repo_url("env.git")
    seed(url, "candidate", {"README": "env\n"}, tmp_path / "w")
    writers = 24
    processes = []
    for i in range(writers):
        src = write_tree(tmp_path / f"src-{i}", {"deploy.yaml": f"replicas: {i}\n"})
        processes.append(start_writer(i, url, src, f"svc-{i:02d}", tmp_path, max_attempts=1))
    outcomes = finish(processes)
    assert [code for code, _ in outcomes] == [0] * writers, [e for _, e in outcomes]
    retried = [err for _, err in outcomes if "rejected, the branch moved" in err]
    assert retried, "no writer lost a race: the test did not test contention"
    messages = assert_linear(git_server.root / "env.git", "candidate")
    assert sorted(build_ids(messages)) == [f"build-{i:02d}" for i in range(writers)]
    expected = {f"svc-{i:02d}/deploy.yaml": f"replicas: {i}\n" for i in range(writers)}
    assert files_at(git_server.root / "env.git", "candidate") == {"README": "env\n", **expected}


def manifest(images: list[str]) -> str:
    containers = "".join(
        f"        - name: c{i:02d}\n          image: {image}\n" for i, image in enumerate(images)
    )
    return (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        f"  template:\n    spec:\n      containers:\n{containers}"
    )


def test_16_image_writers_to_one_path_all_land_once(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str]
) -> None:
    url = git_server.repo_url("env.git")
    old = [f"reg.example.test/p/c{i:02d}:v0" for i in range(WRITERS)]
    new = [f"reg.example.test/p/c{i:02d}@sha256:{i:064x}" for i in range(WRITERS)]
    seed(url, "candidate", {"web/deploy.yaml": manifest(old)}, tmp_path / "w")
    processes = [start_writer(i, url, None, "web", tmp_path, image=new[i]) for i in range(WRITERS)]
    outcomes = finish(processes)
    assert [code for code, _ in outcomes] == [0] * WRITERS, [e for _, e in outcomes]
    repo = git_server.root / "env.git"
    messages = assert_linear(repo, "candidate")
    assert len(messages) == WRITERS + 1
    assert sorted(build_ids(messages)) == [f"build-{i:02d}" for i in range(WRITERS)]
    for message in messages[:-1]:
        trailers = parse_trailers(message)
        index = int(dict(trailers)["Build-Id"].split("-")[1])
        assert ("Image", new[index]) in trailers
    assert files_at(repo, "candidate") == {"web/deploy.yaml": manifest(new)}


def test_16_writers_to_one_file_land_or_report_a_conflict(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str]
) -> None:
    url = git_server.repo_url("env.git")
    seed(url, "candidate", {"web/deploy.yaml": "replicas: 0\n"}, tmp_path / "w")
    processes = []
    for i in range(WRITERS):
        src = write_tree(tmp_path / f"src-{i}", {"deploy.yaml": f"replicas: {i + 1}\n"})
        processes.append(start_writer(i, url, src, "web", tmp_path))
    outcomes = finish(processes)
    codes = [code for code, _ in outcomes]
    assert set(codes) <= {0, 1}, outcomes
    assert 0 in codes
    for code, err in outcomes:
        if code == 1:
            assert "conflict: web/deploy.yaml" in err
    repo = git_server.root / "env.git"
    messages = assert_linear(repo, "candidate")
    landed = build_ids(messages)
    assert sorted(landed) == sorted(f"build-{i:02d}" for i, c in enumerate(codes) if c == 0)
    newest = int(landed[0].split("-")[1])
    assert files_at(repo, "candidate") == {"web/deploy.yaml": f"replicas: {newest + 1}\n"}


# ----------------------------------------------------------------- kill the server mid-push


class ServerProcess:
    """``gitops-sandbox git`` as its own process, so it can be SIGKILLed."""

    def __init__(self, root: Path, port: int = 0, delay: float = 0.0) -> None:
        args = ["git", "--root", str(root), "--port", str(port), "--init", "env.git"]
        if delay:
            args += ["--delay-receive-pack", str(delay)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "steps.sandbox", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"server did not start: {line!r}"
        self.port = int(match.group(1))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def server_processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


def lines_of(stream: object) -> queue.Queue[str]:
    """Read a pipe's lines in the background."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue[str], pattern: str, seen: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if re.search(pattern, line):
            return
        if line == "":
            break
    raise AssertionError(f"never saw {pattern!r} in:\n{''.join(seen)}")


def drain(lines: queue.Queue[str], seen: list[str]) -> str:
    while True:
        try:
            line = lines.get(timeout=5)
        except queue.Empty:
            break
        if line == "":
            break
        seen.append(line)
    return "".join(seen)


def start_push(url: str, src: Path, home: Path, *extra: str) -> subprocess.Popen[str]:
    env = isolated_env(home, {"BUILD_ID": "build-kill"})
    return subprocess.Popen(
        [sys.executable, "-m", "steps.push_candidate", "--repo", url, "--from", str(src), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_server_killed_mid_push_and_restarted_the_push_lands_once(
    tmp_path: Path, git_env: dict[str, str], server_processes: list[ServerProcess]
) -> None:
    root = tmp_path / "srv"
    first = ServerProcess(root, delay=3.0)
    server_processes.append(first)
    url = f"http://127.0.0.1:{first.port}/env.git"
    old_tip = seed(url, "candidate", {"web/a": "1", "api/b": "1"}, tmp_path / "w")
    src = write_tree(tmp_path / "src", {"a": "2"})
    proc = start_push(url, src, tmp_path, "--path", "web")
    lines, seen = lines_of(proc.stderr), []
    wait_for(lines, r"^push: \w+ -> candidate \(attempt 1\b", seen)
    time.sleep(0.5)  # the server holds the pack now
    first.kill()
    time.sleep(0.5)
    server_processes.append(ServerProcess(root, port=first.port))
    assert proc.wait(timeout=PROCESS_TIMEOUT) == 0, drain(lines, seen)
    err = drain(lines, seen)
    assert re.search(r"attempt ([2-9]|10), [1-9]/10 failed", err), err
    repo = root / "env.git"
    messages = assert_linear(repo, "candidate")
    assert build_ids(messages) == ["build-kill"]
    assert log(repo, "candidate")[1] == old_tip
    assert files_at(repo, "candidate") == {"web/a": "2", "api/b": "1"}


def test_server_killed_for_good_is_exit_3_with_the_branch_intact(
    tmp_path: Path, git_env: dict[str, str], server_processes: list[ServerProcess]
) -> None:
    root = tmp_path / "srv"
    server = ServerProcess(root, delay=3.0)
    server_processes.append(server)
    url = f"http://127.0.0.1:{server.port}/env.git"
    old_tip = seed(url, "candidate", {"web/a": "1"}, tmp_path / "w")
    src = write_tree(tmp_path / "src", {"a": "2"})
    proc = start_push(url, src, tmp_path, "--path", "web", "--max-attempts", "3")
    lines, seen = lines_of(proc.stderr), []
    wait_for(lines, r"^push: \w+ -> candidate \(attempt 1\b", seen)
    time.sleep(0.5)
    server.kill()
    assert proc.wait(timeout=PROCESS_TIMEOUT) == 3
    err = drain(lines, seen)
    assert "gave up on candidate" in err and "after 3 attempts" in err
    repo = root / "env.git"
    assert git("--git-dir", str(repo), "rev-parse", "candidate").strip() == old_tip
    git("--git-dir", str(repo), "fsck", "--strict")
