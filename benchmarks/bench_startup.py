"""Start-up of every stage: ``--help`` against ``python -c pass``, and time to the first call out.

1. ``--help``: each stage's console script, N runs alternated with the
   baseline ``python -c pass`` (the same interpreter); median each, ratio
   printed (target <= 3x). Twice: from a plain install of this checkout in a
   temporary venv (a wheel, byte-compiled, as in the images) and from this
   interpreter's environment (the dev ``.venv``: an editable install, whose
   import hook also slows ``python -c pass``).
2. First outside call: one loopback HTTP server stands in for everything a
   stage talks to (the Kubernetes API in a kubeconfig, the env repo's Git URL,
   the registry, the package index). It timestamps the first request of each
   run and answers 503; the stage is then stopped. Printed: median seconds
   from spawn to that first request, the path asked, and, for comparison, the
   same for ``kubectl get namespaces`` and ``git ls-remote`` (whole processes).

Children run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed) and
one unmeasured warm-up each, as an installed image has its ``.pyc`` files.

    .venv/bin/python benchmarks/bench_startup.py [--runs 9] [--dev-venv-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from plain_install import plain_install

from steps.stages import STAGES as REGISTRY

STAGES = tuple(stage.name for stage in REGISTRY)
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


BIN = Path(sys.executable).parent
"""The environment whose console scripts are measured (main sets it)."""


def script(stage: str) -> str:
    return str(BIN / f"gitops-{stage}")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


Times = dict[str, list[tuple[float, float]]]


def help_times(runs: int, env: dict[str, str]) -> tuple[list[tuple[float, float]], Times]:
    baseline: list[tuple[float, float]] = []
    stages: Times = {stage: [] for stage in STAGES}
    for _ in range(runs):
        for stage in STAGES:
            baseline.append(timed([str(BIN / "python"), "-c", "pass"], env))
            stages[stage].append(timed([script(stage), "--help"], env))
    return baseline, stages


def mid(values: list[tuple[float, float]], index: int) -> float:
    return statistics.median(v[index] for v in values)


class FirstCall:
    """A loopback server that notes when, and for what, the first request came."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.first: tuple[float, str] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                if outer.first is None:
                    outer.first = (time.monotonic(), f"{self.command} {self.path.split('?')[0]}")
                    outer.event.set()
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def measure(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
        self.first = None
        self.event.clear()
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its children (git, pip) are stopped with it
        )
        try:
            if not self.event.wait(120):
                raise SystemExit(f"{argv[0]}: no request within 120 s")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        if self.first is None:
            raise SystemExit(f"{argv[0]}: exited without a request: {err.decode()[-500:]}")
        return self.first[0] - started, self.first[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def first_call_commands(url: str, work: Path) -> dict[str, list[str]]:
    host = url.removeprefix("http://")
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]\n"
    )
    manifests = work / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: web}}\n"
        f"    spec: {{containers: [{{name: app, image: '{host}/app:v1'}}]}}\n"
    )
    (work / "requirements.txt").write_text("example-package-for-the-benchmark==1.0\n")
    repo = f"{url}/env.git"
    commit = "0" * 40
    return {
        "test": [script("test"), "--workdir", str(work), "--junit-xml", str(work / "j.xml")],
        "update-manifest": [script("update-manifest"), "--in-place", str(manifests),
                            "--image", f"{host}/app:v2", "--resolve-digests",
                            "--insecure-registry", host, "--dry-run"],
        "push-candidate": [script("push-candidate"), "--repo", repo, "--from", str(manifests),
                           "--path", "app"],
        "verify-rollout": [script("verify-rollout"), "--manifests", str(manifests),
                           "--kubeconfig", str(kubeconfig)],
        "promote": [script("promote"), "--repo", repo, "--commit", commit, "--path", "app",
                    "--require-live", "prod", "--kubeconfig", str(kubeconfig)],
        "history": [script("history"), "--repo", repo],
        "(kubectl get namespaces)": [KUBECTL, "--kubeconfig", str(kubeconfig),
                                     "--cache-dir", str(work / "kcache"), "get", "namespaces"],
        "(git ls-remote)": ["git", "ls-remote", repo],
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--dev-venv-only", action="store_true", help="skip the plain install (no wheel built)"
    )
    args = parser.parse_args(argv)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITOPS_", "KUBECONFIG", "PYTHONDONTWRITEBYTECODE"))
    }
    global BIN
    with ExitStack() as stack:
        image_like = plain_install("all", "pip", "pytest")  # the test image has pip, pytest
        plain = None if args.dev_venv_only else stack.enter_context(image_like)
        if plain is not None:
            BIN = plain
            print_help_times("plain install", args.runs, env)
        BIN = Path(sys.executable).parent
        print_help_times("dev .venv", args.runs, env)
        BIN = plain or BIN
        first_calls(args.runs, env)
    return 0


def print_help_times(label: str, runs: int, env: dict[str, str]) -> float:
    """Print each stage's --help against python -c pass; the worst wall ratio."""
    for stage in STAGES:  # warm-up: .pyc files written, page cache filled
        timed([script(stage), "--help"], env)
    baseline, stages = help_times(runs, env)
    base, base_cpu = mid(baseline, 0), mid(baseline, 1)
    print(f"{label}: python -c pass: median {base * 1000:.1f} ms wall, {base_cpu * 1000:.1f} ms "
          f"CPU ({BIN / 'python'}; load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    worst = worst_cpu = 0.0
    for stage, times in stages.items():
        ratio, ratio_cpu = mid(times, 0) / base, mid(times, 1) / base_cpu
        worst, worst_cpu = max(worst, ratio), max(worst_cpu, ratio_cpu)
        wall, cpu = mid(times, 0) * 1000, mid(times, 1) * 1000
        print(f"  gitops-{stage:<16} --help  median {wall:6.1f} ms wall (ratio {ratio:.2f}), "
              f"{cpu:6.1f} ms CPU (ratio {ratio_cpu:.2f})")  # fmt: skip
    print(f"{label}: --help worst ratio to python -c pass {worst:.2f} wall, {worst_cpu:.2f} CPU "
          "(target <= 3.0)")  # fmt: skip
    return worst


def first_calls(runs: int, env: dict[str, str]) -> None:
    base = statistics.median(
        timed([str(BIN / "python"), "-c", "pass"], env)[0] for _ in range(runs)
    )
    server = FirstCall()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            call_env = {**env, "PIP_INDEX_URL": f"{server.url}/simple", "GIT_TERMINAL_PROMPT": "0",
                        "HOME": str(work)}  # fmt: skip
            commands = first_call_commands(server.url, work)
            results: dict[str, list[float]] = {name: [] for name in commands}
            paths: dict[str, str] = {}
            for command in commands.values():
                server.measure(command, call_env, work)  # warm-up
            for _ in range(runs):
                for name, command in commands.items():
                    seconds, path = server.measure(command, call_env, work)
                    results[name].append(seconds)
                    paths[name] = path
    finally:
        server.close()
    print(f"time from spawn to the first outside request (median; {BIN}):")
    for name, times in results.items():
        label = name if name.startswith("(") else f"gitops-{name}"
        median = statistics.median(times)
        print(f"  {label:<26} {median * 1000:7.1f} ms  ({median / base:.1f}x python -c pass)  "
              f"first: {paths[name]}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
