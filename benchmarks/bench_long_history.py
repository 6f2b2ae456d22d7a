"""push-candidate on an env repo with a long history, against plain git.

Builds a bare env repo whose ``candidate`` branch has 50,000 commits (with
``git fast-import``), then times, alternately and in the same run:

- baseline: ``git clone --depth 1 --single-branch`` + change one file +
  ``git commit`` + ``git push``, the least a script could do;
- ``gitops-push-candidate`` making the same kind of change (its own process,
  interpreter start-up included), from a plain install of this checkout in a
  temporary venv, as in the step image (``--dev-venv``: this interpreter's).

Both over the loopback smart-HTTP server and over ``file://``. Prints the
medians and the ratio (target: at most 1.5x).

    .venv/bin/python benchmarks/bench_long_history.py [--commits N] [--rounds N] [--dev-venv]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from git_env import clean_env
from plain_install import child_env, plain_install

from steps.sandbox.gitserver import GitServer

TREES = "20x5,200x10"
"""Tree shapes (services x files per service): 100 files and 2,000 files."""
FILES_PER_SERVICE = 5


def build_history(repo: Path, commits: int, env: dict[str, str], services: int, files: int) -> None:
    """A bare repo whose candidate branch has ``commits`` commits, via fast-import."""
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, env=env)
    proc = subprocess.Popen(
        ["git", "--git-dir", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    write = proc.stdin.write
    when = 1_700_000_000
    for n in range(1, commits + 1):
        service = n % services
        message = f"Deploy svc-{service:02d} build {n}\n".encode()
        write(b"commit refs/heads/candidate\n")
        write(f"mark :{n}\ncommitter bench <bench@example.test> {when + n} +0000\n".encode())
        write(b"data %d\n%s" % (len(message), message))
        if n > 1:
            write(f"from :{n - 1}\n".encode())
        touched = range(files) if n <= services else [n % files]
        for f in touched:
            body = (
                f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: svc-{service:02d}-{f}\n"
                f"data:\n  build: '{n}'\n" + "  filler: " + "x" * 400 + "\n"
            ).encode()
            write(f"M 100644 inline svc-{service:02d}/file-{f}.yaml\n".encode())
            write(b"data %d\n%s\n" % (len(body), body))
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("fast-import failed")
    subprocess.run(["git", "--git-dir", str(repo), "repack", "-adq"], check=True, env=env)


def baseline(url: str, work: Path, env: dict[str, str], n: int) -> None:
    clone = work / f"clone-{n}"
    run = lambda *a: subprocess.run(a, check=True, env=env, capture_output=True)  # noqa: E731
    run(
        "git",
        "clone",
        "-q",
        "--depth",
        "1",
        "--single-branch",
        "--branch",
        "candidate",
        url,
        str(clone),
    )
    (clone / "svc-00" / "file-0.yaml").write_text(f"baseline: {n}\n")
    run("git", "-C", str(clone), "commit", "-qam", f"baseline {n}")
    run("git", "-C", str(clone), "push", "-q", "origin", "HEAD:candidate")
    shutil.rmtree(clone)


def stage(bin_dir: Path, url: str, work: Path, env: dict[str, str], n: int) -> None:
    src = work / f"src-{n}"
    src.mkdir()
    for f in range(FILES_PER_SERVICE):
        (src / f"file-{f}.yaml").write_text(f"stage: {n}\nfile: {f}\n")
    args = ["--repo", url, "--from", str(src), "--path", "svc-01"]
    done = subprocess.run(
        [str(bin_dir / "gitops-push-candidate"), *args],
        env={**env, "BUILD_ID": f"bench-{n}"},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"push-candidate failed:\n{done.stderr}")
    shutil.rmtree(src)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def interpreter_cost(bin_dir: Path, env: dict[str, str], rounds: int) -> tuple[float, float]:
    """Median times to start Python, and to start it and import the stage and its work
    (``steps.lib.candidate_push``, which the stage imports after its flags), doing none."""
    python = str(bin_dir / "python")
    bare, stage = [], []
    for _ in range(rounds):
        bare.append(timed(partial(subprocess.run, [python, "-c", "pass"], env=env, check=True)))
        command = [python, "-c", "import steps.push_candidate, steps.lib.candidate_push"]
        stage.append(timed(partial(subprocess.run, command, env=env, check=True)))
    return statistics.median(bare), statistics.median(stage)


def compare(
    label: str, bin_dir: Path, url: str, work: Path, env: dict[str, str], rounds: int
) -> float:
    base_times: list[float] = []
    stage_times: list[float] = []
    stage(bin_dir, url, work, env, -1)  # warm-up: page cache, .pyc files
    for n in range(rounds):
        base_times.append(timed(partial(baseline, url, work, env, n)))
        stage_times.append(timed(partial(stage, bin_dir, url, work, env, n)))
    base, ours = statistics.median(base_times), statistics.median(stage_times)
    print(
        f"{label:6} baseline clone+commit+push median {base * 1000:7.1f} ms | "
        f"push-candidate median {ours * 1000:7.1f} ms | ratio {ours / base:4.2f}x "
        f"(target <= 1.5x)"
    )
    return ours / base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--trees", default=TREES, help="services x files, comma separated")
    parser.add_argument(
        "--dev-venv", action="store_true", help="run this interpreter's install (editable)"
    )
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        if args.dev_venv:
            bin_dir = Path(sys.executable).parent
        else:
            bin_dir = stack.enter_context(plain_install(extras="git"))
        return measure(args, bin_dir)


def measure(args: argparse.Namespace, bin_dir: Path) -> int:
    print(f"push-candidate from {bin_dir}; load average {os.getloadavg()[0]:.1f}")
    ratios: list[float] = []
    for shape in args.trees.split(","):
        services, files = (int(x) for x in shape.split("x"))
        with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
            root = Path(tmp)
            (root / "home").mkdir()
            env = child_env(clean_env(root / "home"))
            repo = root / "srv" / "env.git"
            repo.parent.mkdir()
            started = time.perf_counter()
            build_history(repo, args.commits, env, services, files)
            built = time.perf_counter() - started
            count = subprocess.run(
                ["git", "--git-dir", str(repo), "rev-list", "--count", "candidate"],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout.strip()
            print(
                f"env repo: {count} commits, {services * files} files "
                f"({services} services x {files}), built in {built:.1f} s"
            )
            ratios.append(compare("file", bin_dir, f"file://{repo}", root, env, args.rounds))
            with GitServer(root / "srv") as server:
                url = server.repo_url("env.git")
                ratios.append(compare("http", bin_dir, url, root, env, args.rounds))
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        bare, fixed = interpreter_cost(bin_dir, child_env(clean_env(Path(tmp))), args.rounds)
    print(
        f"of which fixed: python start-up {bare * 1000:.1f} ms, "
        f"+ importing the stage {(fixed - bare) * 1000:.1f} ms"
    )
    worst = max(ratios)
    print(
        f"worst ratio {worst:.2f}x: {'within' if worst <= 1.5 else 'ABOVE'} the 1.5x target "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
