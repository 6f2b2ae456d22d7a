"""What users pass the git stages, validated: repository URLs and local paths
(no credentials, no transport helpers), branch names, paths inside the
repository and ``Name <email>`` identities. Pure, apart from asking
``git check-ref-format`` about an unusual branch name.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from steps.lib.errors import UsageError

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
