"""Outcome notes: what verify-rollout concluded about a candidate commit.

Each verdict is one JSON line in the Git note of the candidate commit under
``refs/notes/gitops``::

    {"build_id": "b-42", "outcome": "failed", "reason": "ProgressDeadline", "time": "..."}

A note holds every verdict recorded for that commit (a re-run of the env
build appends a line), so ``git notes --ref=gitops show SHA`` reads as a log
and ``gitops-history`` takes the latest line. Outcomes are ``rolled-out``,
``failed`` and ``superseded``.

``record_outcome`` writes a note the way the git stages write branches: fetch
the notes tip (depth 1) into a private bare repository, add our line to
whatever note is there now, push, and when the push is rejected because
someone else pushed notes meanwhile, fetch the new tip and do it again
(``steps.lib.git_retry.push_with_retry``, same credentials and backoff).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from steps.lib.errors import StepError, UsageError
from steps.lib.git_env import git_credentials
from steps.lib.git_inputs import Identity, parse_identity, parse_repo
from steps.lib.git_retry import Attempt, push_with_retry
from steps.lib.gitrepo import Workspace
from steps.lib.output import say, warn
from steps.lib.push_flags import DEFAULT_COMMITTER, DEFAULT_MAX_ATTEMPTS

NOTES_REF = "refs/notes/gitops"
NOTES_BRANCH = "gitops-notes"
"""The name push_with_retry knows the notes ref by; fetched into refs/remotes/origin/."""
OUTCOMES = ("rolled-out", "failed", "superseded")
MAX_REASON = 500
MAX_NOTE = 64 * 1024
"""Bytes a note may hold: the oldest verdicts go first; readers skip bigger notes."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


@dataclass(frozen=True)
class OutcomeNote:
    """One verdict on one candidate commit."""

    outcome: str
    time: str  # ISO 8601, UTC, seconds
    reason: str | None = None
    build_id: str | None = None

    def as_line(self) -> str:
        data = {
            "build_id": self.build_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "time": self.time,
        }
        return json.dumps({k: v for k, v in data.items() if v}, sort_keys=True)


# --------------------------------------------------------------------------- pure


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_note(text: str) -> list[OutcomeNote]:
    """The verdicts in a note, in the order written; lines that are not ours are skipped."""
    notes: list[OutcomeNote] = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("outcome") not in OUTCOMES:
            continue
        reason, build_id = data.get("reason"), data.get("build_id")
        notes.append(
            OutcomeNote(
                outcome=str(data["outcome"]),
                time=_printable(data.get("time")) or "",
                reason=_printable(reason)[:MAX_REASON] or None,
                build_id=_printable(build_id)[:200] or None,
            )
        )
    return notes


def _printable(value: object) -> str:
    """A note's field as one line of text (control characters become spaces)."""
    if value is None or value == "":
        return ""
    return " ".join(_CONTROL.sub(" ", str(value)).split())


def latest_verdict(notes: Sequence[OutcomeNote]) -> OutcomeNote | None:
    """The verdict recorded last (by time; the later line wins a tie)."""
    latest: OutcomeNote | None = None
    for note in notes:
        if latest is None or note.time >= latest.time:
            latest = note
    return latest


def merge_note(existing: str, note: OutcomeNote, limit: int = MAX_NOTE) -> str:
    """``existing`` with ``note``'s line added once (blank lines dropped).

    The result stays under ``limit`` bytes: the oldest lines are dropped.
    """
    lines = [line for line in existing.splitlines() if line.strip()]
    line = note.as_line()
    if line not in lines:
        lines.append(line)
    while len(lines) > 1 and len(("\n".join(lines) + "\n").encode()) > limit:
        lines.pop(0)
    return "\n".join(lines) + "\n"


def make_note(
    outcome: str, reason: str | None, build_id: str | None, now: datetime | None = None
) -> OutcomeNote:
    """Validate a verdict and stamp it with the time (UTC)."""
    if outcome not in OUTCOMES:
        raise UsageError(f"outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
    text = _printable(reason)
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    return OutcomeNote(
        outcome=outcome,
        time=iso_utc(now or datetime.now(UTC)),
        reason=text or None,
        build_id=_printable(build_id) or None,
    )


def verdict_of_rollout(result: Mapping[str, Any]) -> tuple[str, str | None]:
    """(outcome, reason) for a verify-rollout result: what its ``--notes`` records."""
    status = result.get("status")
    if status == "rolled-out":
        return "rolled-out", None
    if status == "superseded":
        return "superseded", f"Superseded: {result.get('live') or 'a newer commit'} went live first"
    failure = result.get("failure")
    if isinstance(failure, Mapping):
        parts = [failure.get("reason"), failure.get("object"), failure.get("message")]
        return "failed", ": ".join(str(p) for p in parts if p) or "Failed"
    if status == "timed-out":
        waiting = [str(w) for w in result.get("waiting") or []]
        shown = ", ".join(waiting[:5]) + (
            f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
        )
        return "failed", f"TimedOut: still waiting for {shown or 'the rollout'}"
    return "failed", f"Unknown: verify-rollout ended with status {status!r}"


# --------------------------------------------------------------------------- I/O


def note_rollout(repo: str, commit: str, result: Mapping[str, Any]) -> None:
    """verify-rollout --notes: the verdict as a note; a failure to record it only warns."""
    outcome, reason = verdict_of_rollout(result)
    try:
        record_outcome(repo, commit, outcome, reason, os.environ.get("BUILD_ID") or None)
    except StepError as exc:
        warn(f"--notes: could not record the outcome: {exc.message}")


class NotesWorkspace(Workspace):
    """A Workspace whose pseudo-branch ``gitops-notes`` is the remote's notes ref.

    ``push_with_retry`` fetches and pushes "branches"; mapping one name to
    ``refs/notes/gitops`` lets notes reuse it unchanged, retries and the
    "did my lost push land after all" check included.
    """

    def remote_ref(self, branch: str) -> str:
        return NOTES_REF if branch == NOTES_BRANCH else super().remote_ref(branch)

    def note_of(self, commit: str) -> str:
        shown = self.run("notes", f"--ref={NOTES_REF}", "show", commit)
        return shown.stdout if shown.status == 0 else ""

    def __enter__(self) -> NotesWorkspace:
        return self


def record_outcome(
    repo: str,
    commit: str,
    outcome: str,
    reason: str | None = None,
    build_id: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    committer: str = DEFAULT_COMMITTER,
) -> str:
    """Add a verdict to candidate ``commit``'s note in ``repo`` and push it.

    ``outcome`` is ``rolled-out``, ``failed`` or ``superseded``; ``reason`` a
    short text (a reason code first, e.g. ``ProgressDeadline: web 1/3``).
    Credentials as for the git stages (``GIT_TOKEN``, ``GIT_SSH_KEY``, ...
    from ``environ``). Returns ``pushed``, or ``unchanged`` when the same
    line was already there. Raises ``UsageError`` (bad input, credentials)
    or ``ExternalError`` (the server, after retries).
    """
    sha = commit.strip().lower()
    if not _FULL_SHA.match(sha):
        raise UsageError(f"commit {commit!r}: expected a full commit SHA")
    note = make_note(outcome, reason, build_id, now)
    location = parse_repo(repo)
    identity: Identity = parse_identity(committer, "committer", allow_root=False)
    identity_env = {**identity.as_env("AUTHOR"), **identity.as_env("COMMITTER")}
    say(f"notes: {sha[:12]} {note.outcome} -> {location.url} {NOTES_REF}")
    with git_credentials(location, environ) as env, NotesWorkspace(location, env) as ws:

        def prepare(attempt: int) -> Attempt:
            tip = ws.fetch_branch(NOTES_BRANCH)
            if tip is None:
                ws.run("update-ref", "-d", NOTES_REF)
            else:
                ws.check("update-ref", NOTES_REF, tip)
            existing = ws.note_of(sha)
            merged = merge_note(existing, note)
            if merged == existing:
                return Attempt(None, tip)
            ws.check(
                "notes",
                f"--ref={NOTES_REF}",
                "add",
                "-f",
                "-F",
                "-",
                sha,
                input=merged,
                env=identity_env,
            )
            return Attempt(ws.check("rev-parse", NOTES_REF).strip(), tip)

        report = push_with_retry(ws, NOTES_BRANCH, prepare, max_attempts=max_attempts)
    say(f"notes: {report.status} after {report.attempts} attempt(s)")
    return report.status
