"""gitops-history on an env repo with 10,000 attempts, against plain git reading the same refs.

Builds a bare env repo with ``git fast-import``: ``--attempts`` candidate
commits over 20 services, written as push-candidate writes them (trailers
and all); about 70% promoted on production (1% of those later rolled back
to), 15% failed and 5% superseded verdicts as notes in ``refs/notes/gitops``.
Then times, alternately and in the same run (medians of ``--rounds``):

- baseline: ``git fetch`` of candidate, production and the notes into an
  empty bare repository, then ``git log`` of both branches with their
  messages and notes: the least any tool reading this story must do;
- ``gitops-history`` (in this process) doing the same and classifying,
  computing the figures and rendering: json, html, ``--path`` one service,
  and ``--since`` the last tenth (its baseline then fetches
  ``--shallow-since`` too).

    .venv/bin/python benchmarks/bench_history.py [--attempts 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from git_env import clean_env

from steps.history import main as history_main

SERVICES = 20
START = 1_700_000_000
STEP = 3600


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def fast_import(repo: Path, env: dict[str, str], stream: bytes) -> None:
    subprocess.run(
        ["git", "--git-dir", str(repo), "fast-import", "--quiet"], input=stream, env=env, check=True
    )


def candidate_stream(attempts: int) -> bytes:
    out = io.BytesIO()
    for n in range(1, attempts + 1):
        service = f"svc{n % SERVICES:02d}"
        image = f"us-docker.pkg.dev/p/r/{service}@sha256:{digest(n)}"
        message = (
            f"Deploy {service}@sha256:{digest(n)[:12]} to {service}\n\n"
            f"Source: app@{digest(-n)[:40]}\nChanged in {service}:\n  M {service}/deploy.yaml\n\n"
            f"Gitops-Step: push-candidate\nSource-Repo: app\n"
            f"Source-Commit: {digest(-n)[:40]}\nBuild-Id: build-{n}\n"
            f"Image: {image}\n"
        )
        when = START + n * STEP
        out.write(f"commit refs/heads/candidate\nmark :{n}\n".encode())
        out.write(f"committer bench <bench@example.test> {when} +0000\n".encode())
        out.write(data(message))
        out.write(f"M 100644 inline {service}/deploy.yaml\n".encode())
        out.write(data(f"kind: Deployment\nimage: {image}\n"))
    return out.getvalue()


def production_and_notes(shas: list[str]) -> bytes:
    """Promote ~70% of attempts, roll back ~1%, and write failed/superseded verdicts."""
    out = io.BytesIO()
    live: dict[str, list[str]] = {}
    notes: list[tuple[str, str, int]] = []
    for n, sha in enumerate(shas, start=1):
        service = f"svc{n % SERVICES:02d}"
        when = START + n * STEP
        kind = n % 20
        if kind < 14:
            trailers = f"Gitops-Step: promote\nPromoted-From: candidate@{sha}\nBuild-Id: env-{n}\n"
            subject = f"Promote {sha[:12]}"
            promoted = live.setdefault(service, [])
            if kind == 0 and len(promoted) >= 2:
                # Roll this service back from what is live to the one before.
                target, current = promoted[-2], promoted[-1]
                trailers = (
                    f"Gitops-Step: promote\nPromoted-From: candidate@{target}\n"
                    f"Rollback-From: {current}\n"
                    f"Build-Id: env-{n}\n"
                )
                subject = f"Rollback to {target[:12]}"
                sha = target
            message = (
                f"{subject}\n\nproduction:{service} := candidate@{sha}:{service}\n\n{trailers}"
                f"Source-Commit: {digest(-n)[:40]}\n"
            )
            out.write(b"commit refs/heads/production\n")
            out.write(f"committer bench <bench@example.test> {when + 600} +0000\n".encode())
            out.write(data(message))
            out.write(f"M 100644 inline {service}/deploy.yaml\n".encode())
            out.write(data(f"kind: Deployment\nimage: {sha}\n"))
            promoted.append(sha)
        elif kind < 17:
            notes.append((sha, "failed", when + 300))
        elif kind < 18:
            notes.append((sha, "superseded", when + 300))
    out.write(b"commit refs/notes/gitops\n")
    out.write(f"committer bench <bench@example.test> {START} +0000\n".encode())
    out.write(data("verdicts"))
    for sha, outcome, when in notes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        line = f'{{"build_id": "env", "outcome": "{outcome}", "reason": "X", "time": "{stamp}"}}\n'
        out.write(f"N inline {sha}\n".encode())
        out.write(data(line))
    return out.getvalue()


def build(repo: Path, attempts: int, env: dict[str, str]) -> None:
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, env=env)
    fast_import(repo, env, candidate_stream(attempts))
    shas = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-list", "--reverse", "candidate"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    fast_import(repo, env, production_and_notes(shas))


def baseline(repo: Path, root: Path, env: dict[str, str], since: int | None) -> None:
    """Fetch the same refs into an empty bare repo and log them: plain git's floor."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        git = ["git", "--git-dir", tmp]
        subprocess.run([*git, "init", "-q", "--bare"], check=True, env=env)
        shallow = [f"--shallow-since={since}"] if since else []
        for spec, options in (
            ("+refs/heads/candidate:refs/remotes/origin/candidate", shallow),
            ("+refs/heads/production:refs/remotes/origin/production", shallow),
            ("+refs/notes/gitops:refs/notes/gitops", ["--depth=1"]),
        ):
            subprocess.run([*git, "fetch", "-q", *options, str(repo), spec], check=True, env=env)
        for ref in ("refs/remotes/origin/candidate", "refs/remotes/origin/production"):
            subprocess.run(
                [
                    *git,
                    "log",
                    "-z",
                    "--notes=refs/notes/gitops",
                    "--format=%H%x1f%ct%x1f%N%x1f%B",
                    ref,
                ],
                stdout=subprocess.DEVNULL,
                check=True,
                env=env,
            )


def ours(repo: Path, root: Path, args: list[str]) -> None:
    output = root / "out"
    with contextlib.redirect_stderr(io.StringIO()):
        code = history_main(["--repo", str(repo), *args, "--output", str(output)])
    assert code == 0, code


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        env = clean_env(root / "home")
        os.environ.update(env)  # gitops-history runs in this process
        repo = root / "env.git"
        started = time.perf_counter()
        build(repo, args.attempts, env)
        print(f"env repo: {args.attempts} attempts, built in {time.perf_counter() - started:.1f} s")
        last_tenth = START + int(args.attempts * 0.9) * STEP
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_tenth))
        end = START + (args.attempts + 1) * STEP
        until = ["--until", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))]
        cases: list[tuple[str, list[str], int | None]] = [
            ("json, everything", ["--format", "json", *until], None),
            ("html, everything", ["--format", "html", *until], None),
            ("json, --path svc03", ["--format", "json", "--path", "svc03", *until], None),
            (
                "json, --since last tenth",
                ["--format", "json", "--since", since, *until],
                last_tenth,
            ),
        ]
        print(f"{'case':28} {'git (s)':>8} {'history (s)':>12} {'ratio':>6}")
        for name, extra, cutoff in cases:
            base: list[float] = []
            mine: list[float] = []
            for _ in range(args.rounds):
                base.append(timed(partial(baseline, repo, root, env, cutoff)))
                mine.append(timed(partial(ours, repo, root, extra)))
            b, m = statistics.median(base), statistics.median(mine)
            print(f"{name:28} {b:8.2f} {m:12.2f} {m / b:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
