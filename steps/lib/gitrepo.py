"""The workspace: a bare, shallow repository in a private temporary directory,
talking to one remote, and every ``git`` the git stages run in it.

Every ``git`` runs as our own subprocess (``Workspace.run``); no Git library
is imported, so that a stage starts in the time Python does (see
docs/ARCHITECTURE.md, "Git through the git binary alone"). Trees are built
with ``read-tree``/``update-index``/``write-tree`` and committed with
``commit-tree``: no checkout. The environment (hardening, credentials) comes
from ``git_env``; failures are read by ``git_failures``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from steps.lib.errors import UsageError
from steps.lib.git_failures import PushOutcome, classify_failure, classify_push, raise_for_failure
from steps.lib.git_inputs import Identity, RepoLocation
from steps.lib.git_trees import State, join_path
from steps.lib.output import redact

NETWORK_TIMEOUT = 300.0
"""Seconds after which one ``git`` network command is killed."""

ZERO_SHA = "0" * 40


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a child we are abandoning: politely (git cleans up its own), then not."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class GitResult:
    status: int
    stdout: str
    stderr: str
    raw_stdout: bytes = b""


def parse_cat_file_batch(output: bytes) -> dict[str, bytes]:
    """``git cat-file --batch`` output -> object id: contents (missing ones left out)."""
    contents: dict[str, bytes] = {}
    at = 0
    while at < len(output):
        end = output.index(b"\n", at)
        header = output[at:end].split()
        at = end + 1
        if len(header) < 3:  # "<name> missing"
            continue
        size = int(header[2])
        contents[header[0].decode()] = output[at : at + size]
        at += size + 1  # the object, then a newline
    return contents


_AUTHOR_LINE = re.compile(rb"^author (?P<name>[^<>]*?) ?<(?P<email>[^<>]*)> ", re.MULTILINE)


class Workspace:
    """A bare repository outside the workspace, talking to one remote.

    Nothing secret is written into it: the URL in commands carries no
    credentials and the credential settings live in ``env`` only.
    """

    def __init__(self, location: RepoLocation, env: Mapping[str, str]) -> None:
        self.location = location
        self.env = dict(env)
        self.directory = Path(tempfile.mkdtemp(prefix="gitops-repo-"))
        self._index_dir = Path(tempfile.mkdtemp(prefix="gitops-index-"))
        self._commits: dict[str, bytes] = {}
        self._init_bare()

    def _init_bare(self) -> None:
        """What ``git init --bare`` leaves that git needs, without running it.

        One process less per run; no template (hooks, description, info/).
        """
        for name in ("objects/info", "objects/pack", "refs/heads", "refs/tags"):
            (self.directory / name).mkdir(parents=True)
        (self.directory / "HEAD").write_text("ref: refs/heads/main\n")
        (self.directory / "config").write_text(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
        )

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.rmtree(self._index_dir, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running git ---------------------------------------------------------

    def run(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> GitResult:
        """Run ``git args`` in the repository; never raises on a non-zero exit.

        Our own ``subprocess`` call rather than GitPython's: when we are
        interrupted (SIGTERM, Ctrl-C) the child is stopped at once, and no
        watchdog thread keeps the process alive.
        """
        data = input.encode() if isinstance(input, str) else input
        full_env = {**os.environ, **self.env, **(env or {})}
        with subprocess.Popen(
            ["git", *args],
            cwd=self.directory,
            env=full_env,
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            # A daemon timer, not communicate(timeout=): that polls with sleeps.
            expired: list[bool] = []

            def expire() -> None:
                expired.append(True)
                proc.kill()

            watchdog = threading.Timer(timeout, expire) if timeout else None
            if watchdog:
                watchdog.daemon = True
                watchdog.start()
            try:
                out, err = proc.communicate(data)
            except BaseException:
                _stop(proc)
                raise
            finally:
                if watchdog:
                    watchdog.cancel()
        if expired:
            err += f"\nerror: git {args[0]} killed after {timeout:g} seconds".encode()
        decode = partial(bytes.decode, encoding="utf-8", errors="replace")
        return GitResult(proc.returncode, decode(out), decode(err), out)

    def check(self, *args: str, input: str | bytes | None = None, **kw: Any) -> str:
        """Run a local ``git`` command that must succeed (else it is a bug)."""
        result = self.run(*args, input=input, **kw)
        if result.status != 0:
            raise RuntimeError(f"git {args[0]} failed: {redact(result.stderr.strip())}")
        return result.stdout

    # -- talking to the remote -------------------------------------------------

    def remote_ref(self, branch: str) -> str:
        """The remote's ref that ``branch`` names (subclasses map other refs)."""
        return f"refs/heads/{branch}"

    def fetch_branch(
        self, branch: str, *, depth: int | None = 1, deepen: int | None = None
    ) -> str | None:
        """Fetch ``branch`` (shallow); its tip, or None when it does not exist."""
        ref = f"refs/remotes/origin/{branch}"
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc"]
        if deepen is not None:
            args.append(f"--deepen={deepen}")
        elif depth is not None:
            args.append(f"--depth={depth}")
        args += [self.location.url, f"+{self.remote_ref(branch)}:{ref}"]
        result = self.run(*args, timeout=NETWORK_TIMEOUT)
        if result.status != 0:
            if "couldn't find remote ref" in result.stderr:
                return None
            raise_for_failure(classify_failure(result.stderr), self.location, "fetch")
        return self.check("rev-parse", "--verify", f"{ref}^{{commit}}").strip()

    def is_shallow(self) -> bool:
        return self.check("rev-parse", "--is-shallow-repository").strip() == "true"

    def push(self, commit: str, branch: str) -> PushOutcome:
        ref = self.remote_ref(branch)
        result = self.run(
            "push",
            "--porcelain",
            self.location.url,
            f"{commit}:{ref}",
            timeout=NETWORK_TIMEOUT,
        )
        return classify_push(result.status, result.stdout, result.stderr, ref)

    # -- local object work -------------------------------------------------------

    def shallow_commits(self) -> set[str]:
        """The commits at the shallow boundary (their parents are not here)."""
        path = self.directory / "shallow"
        return set(path.read_text().split()) if path.exists() else set()

    def history(self, tip: str, subdir: str = "") -> list[tuple[str, str]]:
        """(sha, message) of the fetched commits from ``tip`` touching ``subdir``."""
        return self._log(tip, subdir)

    def _log(self, revisions: str, subdir: str) -> list[tuple[str, str]]:
        args = ["log", "--format=%H%x00%B%x1e", revisions]
        if subdir:
            args += ["--", subdir]
        entries: list[tuple[str, str]] = []
        for record in self.check(*args).split("\x1e"):
            sha, sep, message = record.strip("\n").partition("\0")
            if sep:
                entries.append((sha, message))
        return entries

    def deepen_until(
        self, branch: str, tip: str, sha: str, depth: int, limit: int | None
    ) -> str | None:
        """Deepen the fetched ``branch`` until ``sha`` is in its history (or give up)."""
        while True:
            full = self.resolve_commit(sha)
            if full and self.is_ancestor(full, tip):
                return full
            if not self.is_shallow() or (limit is not None and depth >= limit):
                return None
            self.fetch_branch(branch, deepen=depth)
            depth *= 2

    def commits_between(
        self, branch: str, old: str, new: str, subdir: str = ""
    ) -> list[tuple[str, str]] | None:
        """(sha, message) of commits in ``old..new`` touching ``subdir``; None if unrelated."""
        if self.deepen_until(branch, new, old, 8, limit=1024) is None:
            return None
        return self._log(f"{old}..{new}", subdir)

    def commit_times(self, commits: Iterable[str]) -> dict[str, int]:
        """Committer times (epoch seconds) of local commits."""
        shas = sorted(set(commits))
        if not shas:
            return {}
        out = self.check("log", "--no-walk=unsorted", "--format=%H %ct", *shas, "--")
        pairs = (line.split() for line in out.splitlines() if line.strip())
        return {sha: int(when) for sha, when in pairs}

    def resolve_commit(self, sha: str) -> str | None:
        result = self.run("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        return result.stdout.strip() if result.status == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer).status == 0

    def check_directory(self, commit: str, subdir: str) -> None:
        """Refuse a ``subdir`` that is, or lies below, a file at ``commit``."""
        if not subdir:
            return
        parts = subdir.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        listing = "".join(f"{commit}:{p}\n" for p in prefixes)
        answers = self.check("cat-file", "--batch-check=%(objecttype)", input=listing)
        for prefix, answer in zip(prefixes, answers.splitlines(), strict=True):
            kind = answer.strip()
            if kind.endswith("missing"):
                return
            if kind != "tree":
                what = "" if prefix == subdir else f"{prefix} "
                raise UsageError(
                    f"--path {subdir}: {what}is a file, not a directory, at {commit[:12]}"
                )

    def read_state(self, commit: str | None, subdir: str) -> State:
        """The files under ``subdir`` at ``commit`` (empty for no commit)."""
        if commit is None:
            return {}
        if "/" in subdir:  # a file named ``subdir`` itself shows in ls-tree below
            self.check_directory(commit, subdir)
        args = ["ls-tree", "-r", "-z", "--full-tree", commit]
        if subdir:
            args += ["--", subdir]
        state: State = {}
        prefix = subdir + "/" if subdir else ""
        for record in self.check(*args).split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, _kind, sha = meta.split()
            if path == subdir:
                raise UsageError(f"--path {subdir}: is a file, not a directory, at {commit[:12]}")
            if prefix and not path.startswith(prefix):
                continue
            state[path[len(prefix) :]] = (mode, sha)
        return state

    def hash_directory(self, directory: Path) -> State:
        """Store every file under ``directory`` as a blob (skipping ``.git``).

        Symbolic links, to files or to directories, are stored as links. Any
        other spelling of ``.git`` (``.GIT``, ``.Git``) is refused: Git will
        not store it, and silently dropping it would commit something else.
        """
        files: list[tuple[str, Path, str]] = []
        links: list[tuple[str, str]] = []
        directory = directory.resolve()
        for root, dirs, names in os.walk(directory):
            for name in [*dirs, *names]:
                if name.lower() == ".git" and name != ".git":
                    raise UsageError(
                        f"{Path(root) / name}: a path named {name!r} cannot be stored in Git"
                    )
            linked = [d for d in dirs if (Path(root) / d).is_symlink()]
            dirs[:] = sorted(d for d in dirs if d != ".git" and d not in linked)
            for name in sorted([*names, *linked]):
                if name == ".git":
                    continue
                full = Path(root) / name
                rel = full.relative_to(directory).as_posix()
                if "\n" in rel or "\r" in rel:
                    raise UsageError(f"{full}: file names with line breaks are not supported")
                if full.is_symlink():
                    links.append((rel, os.readlink(full)))
                elif full.is_file():
                    executable = os.access(full, os.X_OK)
                    files.append((rel, full, "100755" if executable else "100644"))
        state: State = {}
        if files:
            listing = "".join(f"{path}\n" for _, path, _ in files)
            shas = self.check("hash-object", "-w", "--stdin-paths", input=listing).split()
            for (rel, _, mode), sha in zip(files, shas, strict=True):
                state[rel] = (mode, sha)
        for rel, target in links:
            sha = self.check("hash-object", "-w", "--stdin", input=target.encode()).strip()
            state[rel] = ("120000", sha)
        return state

    def write_tree(self, parent: str | None, subdir: str, old: State, new: State) -> str:
        """The tree of ``parent`` with ``subdir``'s files ``old`` replaced by ``new``."""
        index = self._index_dir / "index"
        index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        if parent is None:
            self.check("read-tree", "--empty", env=env)
        else:
            self.check("read-tree", parent, env=env)
        zero = "0" * len(parent) if parent else ZERO_SHA
        records = [f"0 {zero}\t{join_path(subdir, p)}\0" for p in old if p not in new]
        records += [
            f"{mode} {sha}\t{join_path(subdir, p)}\0"
            for p, (mode, sha) in new.items()
            if old.get(p) != (mode, sha)
        ]
        if records:
            done = self.run("update-index", "-z", "--index-info", input="".join(records), env=env)
            if done.status != 0:
                problem = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
                raise UsageError(f"--path {subdir or '/'}: cannot write files there ({problem})")
        return self.check("write-tree", env=env).strip()

    def commit_tree(
        self,
        tree: str,
        parent: str | None,
        message: str,
        author: Identity,
        committer: Identity,
    ) -> str:
        env = {**author.as_env("AUTHOR"), **committer.as_env("COMMITTER")}
        args = ["commit-tree", tree]
        if parent:
            args += ["-p", parent]
        return self.check(*args, "-F", "-", input=message, env=env).strip()

    def _commit_object(self, commit: str) -> bytes:
        """A commit's raw object (headers, blank line, message), read once."""
        cached = self._commits.get(commit)
        if cached is None:
            result = self.run("cat-file", "commit", commit)
            if result.status != 0:
                raise RuntimeError(f"git cat-file failed: {redact(result.stderr.strip())}")
            cached = self._commits[commit] = result.raw_stdout
        return cached

    def message_of(self, commit: str) -> str:
        raw = self._commit_object(commit)
        return raw.partition(b"\n\n")[2].decode("utf-8", "replace")

    def author_of(self, commit: str) -> Identity:
        headers = self._commit_object(commit).partition(b"\n\n")[0]
        match = _AUTHOR_LINE.search(headers)
        if match is None:
            raise RuntimeError(f"commit {commit}: no author line")
        return Identity(
            match.group("name").decode("utf-8", "replace"),
            match.group("email").decode("utf-8", "replace"),
        )

    def read_blobs(self, shas: Sequence[str], limit: int = 1 << 20) -> dict[str, bytes]:
        """Contents of the given blobs (those up to ``limit`` bytes), one ``git``."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        # Sizes first, so that an oversized blob is never read into memory.
        listing = "".join(f"{sha}\n" for sha in wanted)
        sizes = self.check("cat-file", "--batch-check=%(objectname) %(objectsize)", input=listing)
        small = [
            sha
            for sha, line in zip(wanted, sizes.splitlines(), strict=True)
            if not line.endswith("missing") and int(line.split()[1]) <= limit
        ]
        if not small:
            return {}
        result = self.run("cat-file", "--batch", input="".join(f"{sha}\n" for sha in small))
        if result.status != 0:
            raise RuntimeError(f"git cat-file failed: {redact(result.stderr.strip())}")
        return parse_cat_file_batch(result.raw_stdout)

    def checkout_subdir(self, commit: str | None, subdir: str, target: Path) -> None:
        """Write ``subdir`` at ``commit`` into ``target`` (an empty directory)."""
        if commit is None:
            return
        index = self._index_dir / "checkout-index"
        index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        self.check("read-tree", commit, env=env)
        paths = [join_path(subdir, p) for p in self.read_state(commit, subdir)]
        if paths:
            listing = "".join(f"{p}\0" for p in paths)
            args = ["--work-tree", str(target), "checkout-index", "--force", "-z", "--stdin"]
            self.check(*args, input=listing, env=env)
