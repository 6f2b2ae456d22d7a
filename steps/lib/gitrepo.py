"""Shared Git plumbing for push-candidate and promote.

- Validation of what users pass in: repository URLs, branch names, paths and
  identities (pure, apart from asking ``git check-ref-format``).
- Credentials: a token travels only in the environment of the ``git``
  processes (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``
  setting an ``http.<origin>.extraHeader``) and only to that origin: git
  sends extra headers to wherever a redirect leads, so redirects are not
  followed (``http.followRedirects=false``) and one is reported as exit 2.
  An SSH key goes to a private file outside the workspace; it and the private
  repositories are removed on exit, SIGTERM included.
- Hardening: every ``git`` we run, in our repositories or in one we were
  handed (``--from``, ``--source-repo``), runs with settings that disable
  hooks, fsmonitor, signature programs and external transports.
- Pure decisions over trees (three-way merge of one subdirectory, changes,
  trailers, backoff) kept apart from the ``Workspace`` that runs ``git``.
- ``push_with_retry``: fetch the tip, let the caller compute a commit on it,
  push; when the push is rejected, do it all again on the new tip.

Every ``git`` runs as our own subprocess (``Workspace.run``); no Git library
is imported, so that a stage starts in the time Python does (see
docs/ARCHITECTURE.md, "Git through the git binary alone").
"""

from __future__ import annotations

import base64
import os
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

from steps.lib.errors import ExternalError, UsageError
from steps.lib.output import redact, register_secret, say
from steps.lib.retry import CONTENTION, FAILURE, backoff_delay

T = TypeVar("T")

DEFAULT_COMMITTER = "gitops-steps bot <gitops-bot@gitops-steps.invalid>"
DEFAULT_USERNAME = "x-access-token"
DEFAULT_MAX_ATTEMPTS = 10
"""Failed attempts (network, server) before a git stage gives up."""
CONTENTION_BUDGET = 300.0
"""Seconds after its first attempt during which a writer that keeps losing the
race for a branch (others pushing first) still starts a new attempt."""
NETWORK_TIMEOUT = 300.0
"""Seconds after which one ``git`` network command is killed."""

ZERO_SHA = "0" * 40

# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(?!//)")
_PLAIN_BRANCH = re.compile(r"[A-Za-z0-9_-]+")
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
    if _PLAIN_BRANCH.fullmatch(name):
        return name  # one component of letters, digits, '_' and '-': always valid
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
    if any(p.lower() == ".git" or p.startswith("-") for p in parts):
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


HARDENED_SETTINGS: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("core.pager", "cat"),
    ("protocol.allow", "never"),
    *((f"protocol.{name}.allow", "always") for name in ("file", "git", "ssh", "http", "https")),
    ("protocol.ext.allow", "never"),
)
"""Settings for every ``git`` we run, above any repository's own config: a
repository we were handed (``--from``) must not make us run its programs."""

BASE_SETTINGS: tuple[tuple[str, str], ...] = (
    *HARDENED_SETTINGS,
    ("http.followRedirects", "false"),
    ("http.lowSpeedLimit", "1000"),
    ("http.lowSpeedTime", "60"),
    ("gc.auto", "0"),
    ("advice.detachedHead", "false"),
)


def hardened_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``git`` on a directory we did not create."""
    env_in = os.environ if environ is None else environ
    return {**env_in, **config_env(HARDENED_SETTINGS, env_in), "GIT_TERMINAL_PROMPT": "0"}


class Terminated(SystemExit):
    """SIGTERM arrived: unwind (removing private files) and exit 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


@contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM unwinds like Ctrl-C does, so ``finally`` blocks run.

    It does nothing outside the main thread (only it takes signals) or when
    the caller already handles SIGTERM (verify-rollout unwinds on it too).
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def git_credentials(
    location: RepoLocation, environ: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """The environment the ``git`` processes need to reach ``location``.

    ``GIT_TOKEN`` (user ``GIT_USERNAME``) becomes an ``Authorization`` header
    scoped to the repository's origin; ``GIT_SSH_KEY`` (and
    ``GIT_KNOWN_HOSTS``) become files in a private temporary directory removed
    on exit (SIGTERM included). Otherwise git uses whatever credential helper
    is configured.
    """
    with cleanup_on_sigterm(), _git_credentials(location, environ) as env:
        yield env


@contextmanager
def _git_credentials(
    location: RepoLocation, environ: Mapping[str, str] | None
) -> Iterator[dict[str, str]]:
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


TOOL_TRAILER = "Gitops-Step"
"""Heads the trailer block of every commit the git stages write."""


def tool_trailers(message: str) -> list[tuple[str, str]]:
    """The trailers of a message, if (and only if) one of our stages wrote them.

    Our stages always end a message with a trailer block that starts with
    ``Gitops-Step:``; a user's ``--message`` goes above it, so it can never
    be the last paragraph, and trailer-like lines in it are never read.
    """
    trailers = parse_trailers(message)
    if not trailers or trailers[0][0] != TOOL_TRAILER:
        return []
    return trailers


def trailer_values(trailers: Sequence[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in trailers if k.lower() == key.lower()]


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def format_message(
    subject: str, body: str, trailers: Sequence[tuple[str, str]], step: str | None = None
) -> str:
    """Subject, blank line, body, blank line, trailers: what git tools parse.

    With ``step``, the trailer block starts with ``Gitops-Step: <step>`` and
    is always there, so that text from the user (subject, body) can never
    pose as our trailers. Control characters are dropped everywhere.
    """
    subject_line = " ".join(_UNPRINTABLE.sub(" ", subject).split()) or "Update"
    parts = [subject_line]
    text = _UNPRINTABLE.sub("", body).strip()
    if text:
        parts.append(text)
    pairs = [(TOOL_TRAILER, step)] if step else []
    pairs += [(key, value) for key, value in trailers if key != TOOL_TRAILER]
    lines = [
        f"{key}: {' '.join(_UNPRINTABLE.sub(' ', value).split())}"
        for key, value in pairs
        if value and value.strip()
    ]
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class PushOutcome:
    """How one ``git push --porcelain`` ended."""

    kind: str  # ok, moved (retry on the new tip), denied, auth, network, missing, redirect
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


_REDIRECT = re.compile(r"returned error: 3\d\d|HTTP 3\d\d", re.IGNORECASE)
_GENERIC = re.compile(
    r"^(fatal: Could not read from remote repository\.?|"
    r"Please make sure you have the correct access rights|and the repository exists\.?|"
    r"error: failed to push some refs.*|warning: .*)$",
    re.IGNORECASE,
)


def failure_reason(stderr: str) -> str:
    """The line of git's stderr that says why: the server's own words first.

    ``remote:`` lines (a pre-receive hook's message) come first; then the
    last line that is not one of git's generic epilogues ("Could not read from
    remote repository", ...), which would hide ssh's real reason.
    """
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    remote = [line for line in lines if line.startswith("remote:") and line[7:].strip()]
    specific = [line for line in lines if not _GENERIC.match(line) and line not in remote]
    reason = specific[-1] if specific else (lines[-1] if lines else "git failed")
    if remote:
        return "; ".join([*remote[-5:], reason])
    return reason


def classify_failure(stderr: str) -> PushOutcome:
    """What a failed fetch or push's stderr says went wrong."""
    text = stderr.strip()
    reason = failure_reason(text)
    if _REDIRECT.search(text):
        return PushOutcome("redirect", reason)
    if _AUTH_FAILURE.search(text):
        return PushOutcome("auth", reason)
    if _NOT_FOUND.search(text):
        return PushOutcome("missing", reason)
    return PushOutcome("network", reason)


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
        remote = [line.strip() for line in stderr.splitlines() if line.startswith("remote:")]
        said = [line for line in remote if line[7:].strip()]
        return PushOutcome("denied", "; ".join([*said[-5:], summary]))
    if status == 0:
        return PushOutcome("ok", "")
    if _CONTENTION.search(stderr):
        return PushOutcome("moved", stderr.strip().splitlines()[-1])
    return classify_failure(stderr)


# --------------------------------------------------------------------------
# The workspace: a bare, shallow repository in a private temporary directory
# --------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a child we are abandoning: politely (git cleans up its own), then not."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class TransientGitError(ExternalError):
    """A network operation failed in a way worth retrying; one that escapes every
    retry is still an outside failure (exit 3), never a bug."""


FETCH_ATTEMPTS = 3


def with_retries(action: Callable[[], T], what: str, step: str) -> T:
    """Run a network ``action`` outside ``push_with_retry``'s loop: retry transient
    failures with the one backoff policy, then ExternalError."""
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            return action()
        except TransientGitError as exc:
            say(f"{step}: {exc}")
            if attempt == FETCH_ATTEMPTS:
                raise ExternalError(f"{what}: gave up after {attempt} attempts ({exc})") from None
            time.sleep(backoff_delay(attempt))
    raise AssertionError("unreachable")


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


def redirect_target(location: RepoLocation, timeout: float = 10.0) -> str | None:
    """Where the server redirects ``location`` to (asked without credentials)."""
    import urllib.error  # only after a refused redirect: http.client costs ~20 ms
    import urllib.request

    class NoFollow(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    url = location.url.rstrip("/") + "/info/refs?service=git-upload-pack"
    opener = urllib.request.build_opener(NoFollow)
    try:
        with opener.open(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        target = exc.headers.get("Location") if 300 <= exc.code < 400 else None
        return str(target).removesuffix("/info/refs?service=git-upload-pack") if target else None
    except (OSError, ValueError):
        return None


def redirect_error(location: RepoLocation, action: str) -> UsageError:
    """A redirect is refused: git would send our Authorization header along."""
    target = redirect_target(location)
    if target is None:
        where = "elsewhere"
    else:
        where = redact(target)
        try:
            moved = parse_repo(target, "redirect").origin if "://" in target else location.origin
        except UsageError:
            moved = None
        if moved == location.origin:
            return UsageError(
                f"{action} {location.url}: the server redirects to {where}; "
                "redirects are not followed, use that URL as --repo"
            )
    return UsageError(
        f"{action} {location.url}: the server redirects to {where}, another origin; "
        f"refusing to follow it (credentials go only to {location.origin or location.url})"
    )


def raise_for_failure(outcome: PushOutcome, location: RepoLocation, action: str) -> None:
    """Turn a failed fetch or push into the right error (or a retry)."""
    detail = redact(outcome.detail)
    if outcome.kind == "redirect":
        raise redirect_error(location, action)
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

    commit: str | None  # None: nothing to push (unchanged, or ``outcome``)
    parent: str | None
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # with no commit: why not (default "unchanged")


@dataclass
class PushReport:
    status: str  # pushed, unchanged, or the outcome prepare gave
    attempts: int
    attempt: Attempt
    landed: str | None = None  # an earlier attempt's commit found on the branch


CLOCK_SKEW = 86400
"""Seconds a writer's clock may be behind ours when looking for a lost push."""


def push_with_retry(
    workspace: Workspace,
    branch: str,
    prepare: Callable[[int], Attempt],
    *,
    max_attempts: int,
    contention_budget: float = CONTENTION_BUDGET,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PushReport:
    """Prepare a commit on the current tip and push it, until it lands.

    ``prepare(attempt)`` fetches what it needs, decides and builds the commit
    (raising ``CheckFailed`` on a real conflict). A rejected push or a
    network failure leads to a jittered backoff and a fresh ``prepare`` on
    the new tip. ``max_attempts`` bounds the attempts that *failed* (network,
    server); an attempt that lost the race to another writer is not a
    failure (someone made progress), so those are bounded by time instead:
    no new attempt starts ``contention_budget`` seconds after the first. When
    a push failed without an answer, the next attempt first asks whether that
    commit landed after all (before judging anything on the new tip, which
    may hold others' work on top of ours), so a change never lands twice and
    a landed change is never reported as a conflict.
    """
    rng = rng or random.Random()
    uncertain: dict[str, Attempt] = {}
    last_problem = "no attempt made"
    started = clock()
    failures = lost = attempt = 0
    while True:
        attempt += 1
        lost_race = False
        try:
            landed = find_landed(workspace, branch, list(uncertain)) if uncertain else None
            if landed:
                say(f"push: an earlier attempt's commit {landed[:12]} had landed after all")
                return PushReport("pushed", attempt, uncertain[landed], landed=landed)
            prepared = prepare(attempt)
            if prepared.commit is None:
                return PushReport(prepared.outcome or "unchanged", attempt, prepared)
            failed = f", {failures}/{max_attempts} failed" if failures else ""
            say(f"push: {prepared.commit[:12]} -> {branch} (attempt {attempt}{failed})")
            outcome = workspace.push(prepared.commit, branch)
            if outcome.kind == "ok":
                return PushReport("pushed", attempt, prepared)
            if outcome.kind == "network":
                uncertain[prepared.commit] = prepared
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
        if lost_race:
            lost += 1
            delay = backoff_delay(lost, rng, CONTENTION)
            if clock() + delay - started > contention_budget:
                raise ExternalError(
                    f"gave up on {branch} of {workspace.location.url} after {attempt} attempts: "
                    f"other writers kept moving it for {contention_budget:g} s "
                    f"({redact(last_problem)})"
                )
        else:
            failures += 1
            if failures >= max_attempts:
                raise ExternalError(
                    f"gave up on {branch} of {workspace.location.url} after {attempt} attempts: "
                    f"{redact(last_problem)}"
                )
            delay = backoff_delay(failures, rng, FAILURE)
        sleep(delay)


def find_landed(workspace: Workspace, branch: str, commits: Sequence[str]) -> str | None:
    """Which of our ``commits`` is on the remote ``branch``, however deep.

    A commit is ours by its exact id (tree, parent, message with the build's
    trailers, times). Fetch the tip, then deepen until one of them is an
    ancestor, or the history is complete, or everything at the shallow
    boundary is older than our oldest commit (less ``CLOCK_SKEW``): whatever
    landed on top of ours was written after it.
    """
    tip = workspace.fetch_branch(branch)
    if tip is None:
        return None
    oldest = min(workspace.commit_times(commits).values()) - CLOCK_SKEW
    depth = 8
    while True:
        for commit in commits:
            if commit == tip or workspace.is_ancestor(commit, tip):
                return commit
        boundary = workspace.shallow_commits()
        if not boundary or all(t < oldest for t in workspace.commit_times(boundary).values()):
            return None
        workspace.fetch_branch(branch, deepen=depth)
        depth *= 2
