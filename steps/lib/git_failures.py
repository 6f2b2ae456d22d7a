"""What went wrong when ``git`` talked to a remote, and the error it becomes.

``git push --porcelain`` output and git's stderr are read into a
``PushOutcome`` (ok, moved, denied, auth, network, missing, redirect), with
the server's own words first; ``raise_for_failure`` turns a failed fetch or
push into exit 2 (credentials, a missing repository, a redirect: asked again
without credentials to name where it leads), exit 3, or a
``TransientGitError`` worth retrying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from steps.lib.errors import ExternalError, UsageError
from steps.lib.git_inputs import RepoLocation, parse_repo
from steps.lib.output import redact


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


class TransientGitError(ExternalError):
    """A network operation failed in a way worth retrying; one that escapes every
    retry is still an outside failure (exit 3), never a bug."""


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
