"""Shared Git plumbing for push-candidate and promote.

- Validation of what users pass in: repository URLs, branch names, paths and
  identities (pure, apart from asking ``git check-ref-format``).
- Credentials: a token travels only in the environment of the ``git``
  processes (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``
  setting an ``http.<origin>.extraHeader``); an SSH key goes to a private file
  outside the workspace that is removed afterwards.
- Pure decisions over trees (three-way merge of one subdirectory, changes,
  trailers, backoff) kept apart from the ``Workspace`` that runs ``git``.
- ``push_with_retry``: fetch the tip, let the caller compute a commit on it,
  push; when the push is rejected, do it all again on the new tip.

GitPython is imported lazily (inside ``Workspace``) so that importing a stage
or running ``--help`` stays cheap.
"""

from __future__ import annotations

import base64
import os
import random
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from steps.errors import ExternalError, UsageError
from steps.output import redact, register_secret, say

if TYPE_CHECKING:
    import git

DEFAULT_COMMITTER = "gitops-steps bot <gitops-bot@gitops-steps.invalid>"
DEFAULT_USERNAME = "x-access-token"
DEFAULT_MAX_ATTEMPTS = 10
NETWORK_TIMEOUT = 300.0
"""Seconds after which one ``git`` network command is killed."""

ZERO_SHA = "0" * 40

# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(?!//)")
_IDENTITY = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>\s]*)>\s*$")


@dataclass(frozen=True)
class RepoLocation:
    """A validated ``--repo``: what kind of transport and the URL git is given."""

    kind: str  # https, http, ssh, git, file or local
    url: str
    origin: str | None = None  # scheme://host[:port]/ for http(s), to scope headers

    def __str__(self) -> str:
        return self.url


def parse_repo(text: str, flag: str = "--repo") -> RepoLocation:
    """Validate a repository URL or local path (no credentials, no odd transports)."""
    if not text:
        raise UsageError(f"{flag} is empty")
    if text.startswith("-"):
        raise UsageError(f"{flag} {text!r}: must not start with '-'")
    if "::" in text.split("/", 1)[0]:
        raise UsageError(f"{flag}: transport helpers (like 'ext::') are not allowed")
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise UsageError(f"{flag}: contains control characters")
    if "://" in text and _CONTROL.search(text):
        raise UsageError(f"{flag}: URL contains whitespace")
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http", "ssh", "git", "file"):
            raise UsageError(f"{flag}: unsupported URL scheme {scheme!r}")
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise UsageError(f"{flag}: file:// URLs must name a local path")
            return RepoLocation("file", text)
        if not parts.hostname:
            raise UsageError(f"{flag}: URL has no host")
        if parts.password is not None:
            raise UsageError(
                f"{flag}: do not put credentials in the URL; set GIT_TOKEN (and GIT_USERNAME)"
            )
        if scheme in ("https", "http") and parts.username is not None:
            raise UsageError(f"{flag}: do not put a user name in the URL; set GIT_USERNAME")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"{flag}: bad port in URL") from None
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{port}" if port else host
        origin = f"{scheme}://{netloc}/" if scheme in ("https", "http") else None
        return RepoLocation(scheme, text, origin)
    if _SCP_LIKE.match(text) and not Path(text).exists():
        return RepoLocation("ssh", text)
    path = Path(text).expanduser()
    if not path.exists():
        raise UsageError(f"{flag} {text!r}: no such local repository")
    return RepoLocation("local", str(path.resolve()))


def validate_branch(name: str | None, flag: str) -> str:
    """A branch name git accepts and that cannot be read as an option."""
    if not name:
        raise UsageError(f"{flag} is empty")
    if name.startswith("-"):
        raise UsageError(f"{flag} {name!r}: a branch name must not start with '-'")
    if name.startswith("refs/") or name == "HEAD" or _CONTROL.search(name):
        raise UsageError(f"{flag} {name!r}: not a valid branch name")
    check = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{name}"],
        capture_output=True,
        check=False,
    )
    if check.returncode != 0:
        raise UsageError(f"{flag} {name!r}: not a valid branch name (git check-ref-format)")
    return name


def validate_subpath(path: str | None, flag: str = "--path") -> str:
    """A relative path inside the repository, normalised; ``""`` is the root."""
    if path is None:
        return ""
    text = path.strip()
    if "\\" in text or _CONTROL.search(text.replace(" ", "")):
        raise UsageError(f"{flag} {path!r}: use '/' and no control characters")
    if text.startswith("/"):
        raise UsageError(f"{flag} {path!r}: must be relative to the repository root")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"{flag} {path!r}: must not contain '..'")
    if any(p == ".git" or p.startswith("-") for p in parts):
        raise UsageError(f"{flag} {path!r}: must not contain '.git' or start a part with '-'")
    return "/".join(parts)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def as_env(self, role: str) -> dict[str, str]:
        """``GIT_<ROLE>_NAME``/``GIT_<ROLE>_EMAIL`` for role AUTHOR or COMMITTER."""
        return {f"GIT_{role}_NAME": self.name, f"GIT_{role}_EMAIL": self.email}


def parse_identity(text: str, flag: str, *, allow_root: bool = True) -> Identity:
    """``"Name <email>"`` -> Identity; the bot identity may not be root."""
    match = _IDENTITY.match(text)
    if not match or not match.group("name") or not match.group("email"):
        raise UsageError(f"{flag} {text!r}: expected 'Name <email>'")
    identity = Identity(match.group("name"), match.group("email"))
    if not allow_root and (
        identity.name.lower() == "root" or identity.email.lower().startswith("root@")
    ):
        raise UsageError(f"{flag} {text!r}: the bot identity must not be root")
    return identity


# --------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------


def config_env(settings: Sequence[tuple[str, str]], environ: Mapping[str, str]) -> dict[str, str]:
    """Git config passed through the environment, appended to any already there."""
    try:
        start = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
    except ValueError:
        start = 0
    env: dict[str, str] = {}
    for offset, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{start + offset}"] = key
        env[f"GIT_CONFIG_VALUE_{start + offset}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(settings))
    return env


BASE_SETTINGS: tuple[tuple[str, str], ...] = (
    ("protocol.ext.allow", "never"),
    ("core.hooksPath", os.devnull),
    ("http.lowSpeedLimit", "1000"),
    ("http.lowSpeedTime", "60"),
    ("gc.auto", "0"),
    ("advice.detachedHead", "false"),
)


@contextmanager
def git_credentials(
    location: RepoLocation, environ: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """The environment the ``git`` processes need to reach ``location``.

    ``GIT_TOKEN`` (user ``GIT_USERNAME``) becomes an ``Authorization`` header
    scoped to the repository's origin; ``GIT_SSH_KEY`` (and
    ``GIT_KNOWN_HOSTS``) become files in a private temporary directory removed
    on exit. Otherwise git uses whatever credential helper is configured.
    """
    env_in = os.environ if environ is None else environ
    settings = list(BASE_SETTINGS)
    env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}
    token = env_in.get("GIT_TOKEN") or None
    ssh_key = env_in.get("GIT_SSH_KEY") or None
    key_dir: str | None = None
    try:
        if token and location.kind in ("https", "http"):
            register_secret(token)
            user = env_in.get("GIT_USERNAME") or DEFAULT_USERNAME
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            register_secret(basic)
            settings.append(
                (f"http.{location.origin}.extraHeader", f"Authorization: Basic {basic}")
            )
        elif token:
            register_secret(token)
        if ssh_key and location.kind == "ssh":
            register_secret(ssh_key)
            key_dir = tempfile.mkdtemp(prefix="gitops-ssh-")
            os.chmod(key_dir, stat.S_IRWXU)
            key_file = Path(key_dir) / "key"
            _write_private(key_file, ssh_key if ssh_key.endswith("\n") else ssh_key + "\n")
            command = [
                "ssh",
                "-i",
                str(key_file),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
            ]
            known_hosts = env_in.get("GIT_KNOWN_HOSTS")
            if known_hosts:
                hosts_file = Path(key_dir) / "known_hosts"
                _write_private(hosts_file, known_hosts + "\n")
                command += ["-o", f"UserKnownHostsFile={hosts_file}"]
                command += ["-o", "StrictHostKeyChecking=yes"]
            else:
                say("warning: GIT_KNOWN_HOSTS is not set; trusting the host key on first use")
                command += ["-o", "StrictHostKeyChecking=accept-new"]
            env["GIT_SSH_COMMAND"] = shlex.join(command)
            env["GIT_SSH_VARIANT"] = "ssh"
        env.update(config_env(settings, env_in))
        yield env
    finally:
        if key_dir:
            shutil.rmtree(key_dir, ignore_errors=True)


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)


# --------------------------------------------------------------------------
# Pure decisions over trees and messages
# --------------------------------------------------------------------------

Entry = tuple[str, str]
"""(mode, object id) of one path in a tree."""
State = dict[str, Entry]
"""A subdirectory's files: path relative to it -> entry."""


@dataclass(frozen=True)
class Change:
    """One path changed by a commit: A(dded), M(odified) or D(eleted)."""

    kind: str
    path: str

    def as_dict(self) -> dict[str, str]:
        return {"change": self.kind, "path": self.path}


def merge_subtree(base: State, ours: State, theirs: State) -> tuple[State, list[str]]:
    """Apply our change (base -> ours) on top of theirs, path by path.

    A path we did not change keeps their version (so a concurrent writer's
    adds and deletes survive); a path they did not change gets ours; a path
    both changed the same way is fine; a path both changed differently is a
    conflict. When theirs is base this is exactly ``ours`` (a mirror).
    """
    merged: State = {}
    conflicts: list[str] = []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o in (b, t):
            result = t
        elif t == b:
            result = o
        else:
            conflicts.append(path)
            result = t
        if result is not None:
            merged[path] = result
    return merged, conflicts


def diff_states(old: State, new: State) -> list[Change]:
    """The changes that turn ``old`` into ``new``, sorted by path."""
    changes: list[Change] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        kind = "A" if before is None else "D" if after is None else "M"
        changes.append(Change(kind, path))
    return changes


def join_path(subdir: str, path: str) -> str:
    return f"{subdir}/{path}" if subdir else path


_TRAILER = re.compile(r"^(?P<key>[A-Za-z0-9][A-Za-z0-9-]*):\s*(?P<value>.*\S)\s*$")


def parse_trailers(message: str) -> list[tuple[str, str]]:
    """The ``Key: value`` lines of a message's last paragraph (if all are such)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    trailers: list[tuple[str, str]] = []
    for line in paragraphs[-1].splitlines():
        match = _TRAILER.match(line)
        if not match:
            return []
        trailers.append((match.group("key"), match.group("value")))
    return trailers


def trailer_values(trailers: Sequence[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in trailers if k.lower() == key.lower()]


def format_message(subject: str, body: str, trailers: Sequence[tuple[str, str]]) -> str:
    """Subject, blank line, body, blank line, trailers: what git tools parse."""
    subject_line = " ".join(subject.split()) or "Update"
    parts = [subject_line]
    if body.strip():
        parts.append(body.strip())
    lines = [f"{key}: {' '.join(value.split())}" for key, value in trailers if value]
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


CONTENTION_BACKOFF = (0.1, 3.0)
"""(base, cap) seconds after losing a race: someone else made progress."""
FAILURE_BACKOFF = (0.5, 8.0)
"""(base, cap) seconds after a network failure: give the server time."""


def backoff_delay(attempt: int, rng: random.Random, base: float = 0.2, cap: float = 5.0) -> float:
    """Jittered exponential backoff before attempt ``attempt + 1``."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return rng.uniform(ceiling / 4, ceiling)


@dataclass(frozen=True)
class PushOutcome:
    """How one ``git push --porcelain`` ended."""

    kind: str  # ok, moved (retry on the new tip), denied, auth, network, missing
    detail: str = ""

    @property
    def retryable(self) -> bool:
        return self.kind in ("moved", "network")


_AUTH_FAILURE = re.compile(
    r"Authentication failed|could not read (Username|Password)|"
    r"returned error: 40[13]|HTTP 40[13]|Permission denied \(publickey|terminal prompts disabled",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(
    r"repository '.*' not found|does not appear to be a git repository|"
    r"returned error: 404|HTTP 404|not a git repository",
    re.IGNORECASE,
)
_CONTENTION = re.compile(
    r"fetch first|non-fast-forward|stale info|failed to update ref|cannot lock ref|"
    r"incorrect old value|failed to lock|reference already exists|is at .* but expected",
    re.IGNORECASE,
)


def classify_failure(stderr: str) -> PushOutcome:
    """What a failed fetch or push's stderr says went wrong."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "git failed"
    if _AUTH_FAILURE.search(text):
        return PushOutcome("auth", last)
    if _NOT_FOUND.search(text):
        return PushOutcome("missing", last)
    return PushOutcome("network", last)


def classify_push(status: int, stdout: str, stderr: str, ref: str) -> PushOutcome:
    """Read ``git push --porcelain`` output for ``ref``."""
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or not fields[1].endswith(f":{ref}"):
            continue
        flag, summary = fields[0], fields[2]
        if flag in (" ", "+", "*", "="):
            return PushOutcome("ok", summary)
        if _CONTENTION.search(summary) or "[rejected]" in summary:
            return PushOutcome("moved", summary)
        return PushOutcome("denied", summary)
    if status == 0:
        return PushOutcome("ok", "")
    if _CONTENTION.search(stderr):
        return PushOutcome("moved", stderr.strip().splitlines()[-1])
    return classify_failure(stderr)


# --------------------------------------------------------------------------
# The workspace: a bare, shallow repository in a private temporary directory
# --------------------------------------------------------------------------


class TransientGitError(Exception):
    """A network operation failed in a way worth retrying."""


@dataclass
class GitResult:
    status: int
    stdout: str
    stderr: str


class Workspace:
    """A bare repository outside the workspace, talking to one remote.

    Nothing secret is written into it: the URL in commands carries no
    credentials and the credential settings live in ``env`` only.
    """

    def __init__(self, location: RepoLocation, env: Mapping[str, str]) -> None:
        import git as gitpython

        self.location = location
        self.env = dict(env)
        self.directory = Path(tempfile.mkdtemp(prefix="gitops-repo-"))
        self.repo: git.Repo = gitpython.Repo.init(self.directory, bare=True)
        self.repo.git.update_environment(**self.env)
        self._index_dir = Path(tempfile.mkdtemp(prefix="gitops-index-"))

    def close(self) -> None:
        self.repo.close()
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
        """Run ``git args`` in the repository; never raises on a non-zero exit."""
        with ExitStack() as stack:
            stdin: Any = None
            if input is not None:
                stdin = stack.enter_context(tempfile.TemporaryFile())
                stdin.write(input.encode() if isinstance(input, str) else input)
                stdin.seek(0)
            status, stdout, stderr = self.repo.git.execute(
                ["git", *args],
                istream=stdin,
                env=dict(env or {}),
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=timeout,
                strip_newline_in_stdout=False,
            )
        return GitResult(int(status or 0), str(stdout), str(stderr))

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
        path = Path(self.repo.git_dir) / "shallow"
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

    def resolve_commit(self, sha: str) -> str | None:
        result = self.run("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        return result.stdout.strip() if result.status == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer).status == 0

    def read_state(self, commit: str | None, subdir: str) -> State:
        """The files under ``subdir`` at ``commit`` (empty for no commit)."""
        if commit is None:
            return {}
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
        """Store every file under ``directory`` as a blob (skipping ``.git``)."""
        files: list[tuple[str, Path, str]] = []
        links: list[tuple[str, str]] = []
        directory = directory.resolve()
        for root, dirs, names in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for name in sorted(names):
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

    def message_of(self, commit: str) -> str:
        return str(self.repo.commit(commit).message)

    def author_of(self, commit: str) -> Identity:
        author = self.repo.commit(commit).author
        return Identity(str(author.name), str(author.email))

    def read_blobs(self, shas: Sequence[str], limit: int = 1 << 20) -> dict[str, bytes]:
        """Contents of the given blobs (those up to ``limit`` bytes)."""
        contents: dict[str, bytes] = {}
        for sha in dict.fromkeys(shas):
            stream = self.repo.odb.stream(bytes.fromhex(sha))
            if stream.size <= limit:
                contents[sha] = stream.read()
        return contents

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


def raise_for_failure(outcome: PushOutcome, location: RepoLocation, action: str) -> None:
    """Turn a failed fetch or push into the right error (or a retry)."""
    detail = redact(outcome.detail)
    if outcome.kind == "auth":
        # Credentials are configuration: retrying the build will not fix them.
        raise UsageError(
            f"{action} {location.url}: authentication failed ({detail}); "
            "check GIT_TOKEN/GIT_USERNAME, GIT_SSH_KEY or the credential helper"
        )
    if outcome.kind == "missing":
        raise UsageError(f"--repo {location.url}: no such repository ({detail})")
    if outcome.kind == "denied":
        raise ExternalError(f"{action} {location.url}: the server refused the push ({detail})")
    raise TransientGitError(f"{action} {location.url}: {detail}")


# --------------------------------------------------------------------------
# Push with retry
# --------------------------------------------------------------------------


@dataclass
class Attempt:
    """What the caller's ``prepare`` decided on one tip."""

    commit: str | None  # None: nothing to push (unchanged)
    parent: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PushReport:
    status: str  # pushed or unchanged
    attempts: int
    attempt: Attempt
    landed: str | None = None  # an earlier attempt's commit found on the branch


def push_with_retry(
    workspace: Workspace,
    branch: str,
    prepare: Callable[[int], Attempt],
    *,
    max_attempts: int,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PushReport:
    """Prepare a commit on the current tip and push it, until it lands.

    ``prepare(attempt)`` fetches what it needs, decides and builds the commit
    (raising ``CheckFailed`` on a real conflict). A rejected push or a
    network failure leads to a jittered backoff and a fresh ``prepare`` on
    the new tip; after ``max_attempts`` it is an ``ExternalError``. When a
    push failed without an answer, a later attempt first checks whether that
    commit landed after all, so a change never lands twice.
    """
    rng = rng or random.Random()
    uncertain: list[str] = []
    last_problem = "no attempt made"
    for attempt in range(1, max_attempts + 1):
        lost_race = False
        try:
            prepared = prepare(attempt)
            landed = _landed(workspace, branch, uncertain) if uncertain else None
            if landed:
                say(f"push: an earlier attempt's commit {landed[:12]} had landed after all")
                return PushReport("pushed", attempt, prepared, landed=landed)
            if prepared.commit is None:
                return PushReport("unchanged", attempt, prepared)
            say(f"push: {prepared.commit[:12]} -> {branch} (attempt {attempt}/{max_attempts})")
            outcome = workspace.push(prepared.commit, branch)
            if outcome.kind == "ok":
                return PushReport("pushed", attempt, prepared)
            if outcome.kind == "network":
                uncertain.append(prepared.commit)
            if not outcome.retryable:
                raise_for_failure(outcome, workspace.location, "push")
            last_problem = redact(outcome.detail) or outcome.kind
            if outcome.kind == "moved":
                lost_race = True
                say("push: rejected, the branch moved; will fetch the new tip and re-apply")
            else:
                say(f"push: failed ({redact(outcome.detail)}); will fetch the tip and try again")
        except TransientGitError as exc:
            last_problem = str(exc)
            say(f"push: {redact(last_problem)}")
        if attempt < max_attempts:
            base, cap = CONTENTION_BACKOFF if lost_race else FAILURE_BACKOFF
            sleep(backoff_delay(attempt, rng, base, cap))
    raise ExternalError(
        f"gave up on {branch} of {workspace.location.url} after {max_attempts} attempts: "
        f"{redact(last_problem)}"
    )


def _landed(workspace: Workspace, branch: str, commits: Sequence[str]) -> str | None:
    """Which of ``commits`` is on the remote ``branch`` (looking back a little)."""
    tip = workspace.resolve_commit(f"refs/remotes/origin/{branch}")
    if tip is None:
        return None
    if tip in commits:
        return tip
    with suppress(TransientGitError):
        workspace.fetch_branch(branch, deepen=50)
    tip = workspace.resolve_commit(f"refs/remotes/origin/{branch}") or tip
    for commit in commits:
        if commit == tip or workspace.is_ancestor(commit, tip):
            return commit
    return None
