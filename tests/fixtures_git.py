"""Fixtures for the loopback Git server (see steps/sandbox/gitserver.py).

Real git, real repositories in temporary directories. The helpers below are
imported by name by the Git tests; only the fixtures are star-exported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from steps.sandbox.gitserver import GitServer

__all__ = ["bare_repo", "git_auth_server", "git_env", "git_server"]

GIT_USER = "gitops-test"
GIT_PASSWORD = "tok-3f9c2a7e5b1d4c68a0e9"
TEST_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
}
PROVENANCE_VARS = ("BUILD_ID", "COMMIT_SHA", "REPO_NAME", "SHORT_SHA", "BRANCH_NAME", "PROJECT_ID")


def isolated_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without the user's git config, credentials or provenance."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "GITOPS_", "BUILDER_")) and k not in PROVENANCE_VARS
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
    )
    env.update(extra or {})
    return env


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git as a test author; return stdout (raise on failure)."""
    full_env = {**os.environ, **TEST_IDENTITY, **(env or {})}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def init_bare(path: Path) -> Path:
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    return path


def seed(
    repo: str | Path,
    branch: str,
    files: Mapping[str, str],
    work: Path,
    message: str = "seed",
    remove: Sequence[str] = (),
) -> str:
    """Commit ``files`` (path -> text) on ``branch`` of ``repo`` as someone else would."""
    work.mkdir(parents=True, exist_ok=True)
    clone = work / f"seed-{len(list(work.iterdir()))}"
    git("init", "--quiet", str(clone))
    git("remote", "add", "origin", str(repo), cwd=clone)
    exists = git("ls-remote", "--heads", "origin", branch, cwd=clone).strip()
    if exists:
        git("fetch", "--quiet", "origin", branch, cwd=clone)
        git("checkout", "--quiet", "-B", branch, "FETCH_HEAD", cwd=clone)
    else:
        git("checkout", "--quiet", "--orphan", branch, cwd=clone)
    for name, text in files.items():
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for name in remove:
        git("rm", "--quiet", "-r", name, cwd=clone)
    git("add", "--all", cwd=clone)
    git("commit", "--quiet", "--allow-empty", "-m", message, cwd=clone)
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


def write_tree(directory: Path, files: Mapping[str, str]) -> Path:
    """Create ``directory`` holding exactly ``files``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return directory


def show(repo: Path, ref: str, path: str) -> str:
    return git("--git-dir", str(repo), "show", f"{ref}:{path}")


def files_at(repo: Path, ref: str) -> dict[str, str]:
    names = git("--git-dir", str(repo), "ls-tree", "-r", "--name-only", ref).split()
    return {name: show(repo, ref, name) for name in names}


def log(repo: Path, ref: str, fmt: str = "%H") -> list[str]:
    out = git("--git-dir", str(repo), "log", f"--format={fmt}%x1e", ref)
    return [entry.strip("\n") for entry in out.split("\x1e") if entry.strip()]


def run_cli(
    module: str, args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a stage as its own process (``python -m steps.<module>``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Isolate git from the user's config and clear provenance/credentials."""
    home = tmp_path / "home"
    home.mkdir()
    env = isolated_env(home)
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """An empty local bare repository."""
    return init_bare(tmp_path / "env.git")


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    """A smart-HTTP Git server on 127.0.0.1 serving ``env.git`` (no auth)."""
    with GitServer(tmp_path / "srv") as server:
        server.init_bare("env.git")
        yield server


@pytest.fixture
def git_auth_server(tmp_path: Path) -> Iterator[GitServer]:
    """Like ``git_server`` but requiring basic auth GIT_USER / GIT_PASSWORD."""
    with GitServer(tmp_path / "srv-auth", user=GIT_USER, password=GIT_PASSWORD) as server:
        server.init_bare("env.git")
        yield server
