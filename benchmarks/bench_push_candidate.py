"""Added latency per writer when 64 push-candidate processes race for one branch.

Against the loopback smart-HTTP server, in the same run:

- baseline: one push-candidate at a time (median of N solo runs);
- N at once to N separate repositories (no race: only the machine is shared);
- N at once to one branch, N different paths (mirror mode), then N at once
  to one path (``--image`` edits of one manifest).

Every writer runs with the default retry policy (``--max-attempts`` counts
failures only; lost races are retried for up to ``CONTENTION_BUDGET``
seconds), from a plain install of this checkout in a temporary venv.

For each writer, added latency = its wall time - the solo median. Prints the
p50/p95 added latency, the ratios to the solo median, how many attempts the
writers needed, how many gave up, and the throughput: writers landed per
minute from the first start to the last landing. (On a small machine most of
the added latency is CPU contention between the N interpreters, not Git.)

    .venv/bin/python benchmarks/bench_push_candidate.py [--writers 64] [--solo 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from plain_install import child_env, plain_install

from steps.sandbox.gitserver import GitServer


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITOPS_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, **extra)
    return env


BIN = Path(sys.executable).parent
"""Where ``gitops-push-candidate`` is: the plain install's venv (set in main)."""


def command(url: str, path: str, source: list[str], result: Path) -> list[str]:
    return [
        str(BIN / "gitops-push-candidate"),
        *("--repo", url, "--path", path, *source),
        *("--result-file", str(result)),
    ]


def seed(url: str, work: Path, env: dict[str, str], writers: int) -> None:
    clone = work / "seed"
    clone.mkdir(parents=True)
    images = "".join(
        f"        - name: c{i:02d}\n          image: reg.example.test/p/c{i:02d}:v0\n"
        for i in range(writers)
    )
    manifest = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        f"  template:\n    spec:\n      containers:\n{images}"
    )
    (clone / "web").mkdir()
    (clone / "web" / "deploy.yaml").write_text(manifest)
    identity = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.test",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.test",
    }
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["commit", "-qm", "seed"],
        ["push", "-q", url, "HEAD:refs/heads/candidate"],
    ):
        subprocess.run(["git", *args], cwd=clone, env={**env, **identity}, check=True)


GAVE_UP: list[str] = []


def run_many(cmds: list[list[str]], env: dict[str, str]) -> list[float]:
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in cmds
    ]
    ends: list[float] = [0.0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                ends[i] = time.perf_counter() - start
                pending.discard(i)
        time.sleep(0.002)
    for proc in procs:
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        if proc.returncode != 0:
            GAVE_UP.append(err)
            print(f"a writer failed ({proc.returncode}): {err.strip().splitlines()[-1]}")
    return ends


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(label: str, times: list[float], solo: float, results: list[Path]) -> None:
    added = [t - solo for t in times]
    attempts = Counter(json.loads(r.read_text())["attempts"] for r in results if r.exists())
    landed = sum(attempts.values())
    p50, p95 = percentile(added, 0.50), percentile(added, 0.95)
    print(
        f"{label:28} added p50 {p50 * 1000:7.0f} ms ({(solo + p50) / solo:4.1f}x solo) | "
        f"p95 {p95 * 1000:7.0f} ms ({(solo + p95) / solo:4.1f}x solo) | "
        f"landed {landed}/{len(results)} in {max(times):.1f} s "
        f"({landed / max(times) * 60:.0f}/min) | "
        f"attempts {dict(sorted(attempts.items()))} | load {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--solo", type=int, default=8)
    parser.add_argument(
        "--dev-venv", action="store_true", help="run this interpreter's install (editable)"
    )
    args = parser.parse_args(argv)
    global BIN
    with ExitStack() as stack:
        if not args.dev_venv:
            BIN = stack.enter_context(plain_install(extras="git"))
        measure(args)
    print(f"writers that gave up: {len(GAVE_UP)}")
    return 1 if GAVE_UP else 0


def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-writers-") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        env = child_env(clean_env(work / "home", BUILD_ID="bench"))
        with GitServer(work / "srv") as server:
            server.init_bare("env.git")
            url = server.repo_url("env.git")
            seed(url, work, env, args.writers)

            def sources(tag: str, n: int) -> list[str]:
                src = work / f"src-{tag}-{n}"
                src.mkdir()
                (src / "deploy.yaml").write_text(f"writer: {tag}-{n}\n")
                return ["--from", str(src)]

            solo_times = []
            for n in range(args.solo):
                result = work / f"solo-{n}.json"
                cmd = command(url, f"solo-{n}", sources("solo", n), result)
                solo_times += run_many([cmd], env)
            solo = statistics.median(solo_times)
            print(f"baseline: one writer alone, median of {args.solo}: {solo * 1000:.0f} ms")

            results = [work / f"apart-{i}.json" for i in range(args.writers)]
            cmds = []
            for i in range(args.writers):
                server.init_bare(f"apart-{i}.git")
                seed(server.repo_url(f"apart-{i}.git"), work / f"apart-{i}", env, args.writers)
                cmd = command(
                    server.repo_url(f"apart-{i}.git"), "svc", sources("apart", i), results[i]
                )
                cmds.append(cmd)
            apart = run_many(cmds, env)
            report(f"{args.writers} writers, {args.writers} repos", apart, solo, results)

            results = [work / f"paths-{i}.json" for i in range(args.writers)]
            cmds = [
                command(url, f"svc-{i:02d}", sources("paths", i), results[i])
                for i in range(args.writers)
            ]
            report(
                f"{args.writers} writers, {args.writers} paths", run_many(cmds, env), solo, results
            )

            results = [work / f"image-{i}.json" for i in range(args.writers)]
            cmds = [
                command(
                    url,
                    "web",
                    ["--image", f"reg.example.test/p/c{i:02d}@sha256:{i + 1:064x}"],
                    results[i],
                )
                for i in range(args.writers)
            ]
            report(
                f"{args.writers} writers, one path (--image)", run_many(cmds, env), solo, results
            )


if __name__ == "__main__":
    raise SystemExit(main())
