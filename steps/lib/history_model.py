"""gitops-history's model, from Git alone (pure): commits on the env repo's branches
read as candidates and deployments, each attempt's outcome, and the figures
(lead time, change failure rate, time to restore) derived from them."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steps.lib.deploy_notes import OutcomeNote, latest_verdict, parse_note
from steps.lib.git_messages import tool_trailers, trailer_values

if TYPE_CHECKING:
    pass


OUTCOMES = ("promoted", "failed", "superseded", "not-promoted", "pending")
DAY = 86400.0


# --------------------------------------------------------------------------- pure: commits


@dataclass(frozen=True)
class LogEntry:
    sha: str
    time: int
    note: str
    message: str


def parse_log(text: str, notes: Mapping[str, str] | None = None) -> list[LogEntry]:
    """``git log -z --format=%H%x1f%ct%x1f%B`` output, newest first, with their notes.

    The message is the last field, so whatever it holds cannot shift the
    others; notes (anyone can write one) are read apart, by commit.
    """
    entries: list[LogEntry] = []
    for record in text.split("\0"):
        fields = record.lstrip("\n").split("\x1f", 2)
        if len(fields) == 3:
            sha = fields[0]
            entries.append(LogEntry(sha, int(fields[1]), (notes or {}).get(sha, ""), fields[2]))
    return entries


_CHANGED_IN = re.compile(r"^Changed in (?P<path>\S+):$", re.MULTILINE)
_MIRRORED = re.compile(r"^\S+:(?P<path>\S+) := \S+@[0-9a-f]+:\S+$", re.MULTILINE)


def written_path(message: str) -> str | None:
    """The SUBDIR a push-candidate or promote commit says it wrote ("" for the root)."""
    match = _CHANGED_IN.search(message) or _MIRRORED.search(message)
    if not match:
        return None
    path = match.group("path")
    return "" if path == "/" else path


def touches(entry: LogEntry, subdir: str, boundary: set[str]) -> bool:
    """Keep a logged commit for ``subdir``? Only shallow-boundary commits are in doubt.

    ``git log -- SUBDIR`` treats a commit whose parents were not fetched as a
    root (it "adds" every path); for those the message decides when it can.
    """
    if not subdir or entry.sha not in boundary:
        return True
    path = written_path(entry.message)
    return path is None or path == subdir


@dataclass(frozen=True)
class Candidate:
    """One commit on the candidate branch: one deployment attempt."""

    sha: str
    time: int
    subject: str
    source_repo: str | None
    source_commit: str | None
    build_id: str | None
    images: tuple[str, ...]
    verdicts: tuple[OutcomeNote, ...]


@dataclass(frozen=True)
class Deployment:
    """One commit on the production branch."""

    sha: str
    time: int
    subject: str
    promoted_from: str | None
    rollback_from: str | None
    build_id: str | None
    source_commit: str | None
    images: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.sha,
            "time": iso(self.time),
            "subject": self.subject,
            "promoted_from": self.promoted_from,
            "rollback_from": self.rollback_from,
            "build_id": self.build_id,
        }


def last_value(trailers: Sequence[tuple[str, str]], key: str) -> str | None:
    values = trailer_values(trailers, key)
    return values[-1] if values else None


def _subject(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else ""


def candidate_of(entry: LogEntry) -> Candidate | None:
    """The attempt a candidate commit records (None for a promote commit found there)."""
    trailers = tool_trailers(entry.message)
    if trailer_values(trailers, "Promoted-From"):
        return None
    return Candidate(
        sha=entry.sha,
        time=entry.time,
        subject=_subject(entry.message),
        source_repo=last_value(trailers, "Source-Repo"),
        source_commit=last_value(trailers, "Source-Commit"),
        build_id=last_value(trailers, "Build-Id"),
        images=tuple(trailer_values(trailers, "Image")),
        verdicts=tuple(parse_note(entry.note)),
    )


def deployment_of(entry: LogEntry) -> Deployment:
    trailers = tool_trailers(entry.message)
    promoted = last_value(trailers, "Promoted-From")
    rollback = last_value(trailers, "Rollback-From")
    return Deployment(
        sha=entry.sha,
        time=entry.time,
        subject=_subject(entry.message),
        promoted_from=promoted.rpartition("@")[2].lower() if promoted else None,
        rollback_from=rollback.lower() if rollback else None,
        build_id=last_value(trailers, "Build-Id"),
        source_commit=last_value(trailers, "Source-Commit"),
        images=tuple(trailer_values(trailers, "Image")),
    )


def short_image(reference: str) -> str:
    """``us-docker.pkg.dev/p/r/web@sha256:abc...`` -> ``web@sha256:abcdef123456``."""
    repository, at, digest = reference.partition("@")
    name = repository.rsplit("/", 1)[-1]
    if not at:
        return name
    algorithm, _, hexdigits = digest.partition(":")
    return f"{name}@{algorithm}:{hexdigits[:12]}"


# --------------------------------------------------------------------------- pure: outcomes


@dataclass(frozen=True)
class Verdict:
    outcome: str
    reason: str  # a code users can grep
    message: str


def classify_attempt(promoted: bool, latest: OutcomeNote | None, newest: bool) -> Verdict:
    """What became of one attempt (kstatus style: the first guard that holds)."""
    if promoted:
        return Verdict("promoted", "Promoted", "recorded on production")
    if latest is not None and latest.outcome == "failed":
        return Verdict("failed", "RolloutFailed", latest.reason or "verify-rollout: failed")
    if latest is not None and latest.outcome == "superseded":
        return Verdict("superseded", "Superseded", latest.reason or "a newer attempt went first")
    if newest:
        if latest is not None:
            return Verdict("pending", "RolledOutNotPromoted", "rolled out; promote has not run")
        return Verdict("pending", "AwaitingVerdict", "no verdict yet")
    return Verdict("not-promoted", "NeverPromoted", "newer attempts exist; no verdict recorded")


@dataclass
class AttemptRow:
    """One attempt with what became of it."""

    candidate: Candidate
    verdict: Verdict
    promoted_at: int | None = None
    production_commit: str | None = None
    rollback_target: bool = False
    rolled_back: bool = False
    lead_start: int = 0
    lead_from: str = "candidate"
    links: dict[str, str] = field(default_factory=dict)

    @property
    def time(self) -> int:
        return self.candidate.time

    @property
    def outcome(self) -> str:
        return self.verdict.outcome

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        latest = latest_verdict(c.verdicts)
        data: dict[str, Any] = {
            "commit": c.sha,
            "time": iso(c.time),
            "subject": c.subject,
            "source_repo": c.source_repo,
            "source_commit": c.source_commit,
            "build_id": c.build_id,
            "images": [short_image(i) for i in c.images],
            "outcome": self.outcome,
            "reason": self.verdict.reason,
            "detail": self.verdict.message,
            "verdict_build_id": latest.build_id if latest else None,
            # The first env build's verdict: with the candidate's time, its duration.
            "first_verdict_time": min((v.time for v in c.verdicts if v.time), default=None),
            "promoted_at": iso(self.promoted_at) if self.promoted_at is not None else None,
            "production_commit": self.production_commit,
            "candidate_to_production_s": (
                self.promoted_at - c.time if self.promoted_at is not None else None
            ),
            "lead_time_s": (
                self.promoted_at - self.lead_start if self.promoted_at is not None else None
            ),
            "rollback_target": self.rollback_target,
            "rolled_back": self.rolled_back,
        }
        data.update(self.links)
        return data


def build_rows(
    candidates: Sequence[Candidate],
    deployments: Sequence[Deployment],
    source_times: Mapping[str, int] | None = None,
) -> list[AttemptRow]:
    """Attempts (newest first) joined with production's history."""
    first_promotion: dict[str, Deployment] = {}
    targets: set[str] = set()
    moved_away: set[str] = set()
    for deployment in sorted(deployments, key=lambda d: d.time):
        if deployment.promoted_from:
            first_promotion.setdefault(deployment.promoted_from, deployment)
            if deployment.rollback_from:
                targets.add(deployment.promoted_from)
        if deployment.rollback_from:
            moved_away.add(deployment.rollback_from)
    times = source_times or {}
    rows: list[AttemptRow] = []
    ordered = sorted(candidates, key=lambda c: c.time, reverse=True)
    for index, candidate in enumerate(ordered):
        promotion = first_promotion.get(candidate.sha)
        verdict = classify_attempt(
            promotion is not None, latest_verdict(candidate.verdicts), newest=index == 0
        )
        source_time = times.get(candidate.source_commit or "")
        rows.append(
            AttemptRow(
                candidate=candidate,
                verdict=verdict,
                promoted_at=promotion.time if promotion else None,
                production_commit=promotion.sha if promotion else None,
                rollback_target=candidate.sha in targets,
                rolled_back=candidate.sha in moved_away,
                lead_start=candidate.time if source_time is None else source_time,
                lead_from="candidate" if source_time is None else "source",
            )
        )
    return rows


# --------------------------------------------------------------------------- pure: figures


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    """The ceil(fraction * n)-th smallest value (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def incidents(
    rows: Sequence[AttemptRow], deployments: Sequence[Deployment]
) -> list[tuple[int, int | None]]:
    """(start, end or None while open): failed attempts until the next production change."""
    events: list[tuple[int, int]] = [(d.time, 0) for d in deployments if d.promoted_from]
    events += [(r.time, 1) for r in rows if r.outcome == "failed"]
    found: list[tuple[int, int | None]] = []
    start: int | None = None
    for moment, kind in sorted(events):
        if kind == 1 and start is None:
            start = moment
        elif kind == 0 and start is not None:
            found.append((start, moment))
            start = None
    if start is not None:
        found.append((start, None))
    return found


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(
    rows: Sequence[AttemptRow],
    deployments: Sequence[Deployment],
    since: int | None,
    until: int,
) -> dict[str, Any]:
    """The headline figures for [since, until] (see the module docstring)."""
    starts = [r.time for r in rows] + [d.time for d in deployments if d.promoted_from]
    start = since if since is not None else min(starts, default=until)

    def in_period(moment: int) -> bool:
        return start <= moment <= until

    attempts = [r for r in rows if in_period(r.time)]
    counts = Counter(r.outcome for r in attempts)
    outcomes = {name: counts.get(name, 0) for name in OUTCOMES}
    shipped = [d for d in deployments if d.promoted_from and in_period(d.time)]
    rollbacks = sum(1 for d in shipped if d.rollback_from)
    days = (until - start) / DAY
    leads = [
        float(r.promoted_at - r.lead_start)
        for r in rows
        if r.promoted_at is not None and in_period(r.promoted_at)
    ]
    lead_from = sorted(
        {r.lead_from for r in rows if r.promoted_at is not None and in_period(r.promoted_at)}
    )
    decided = len(attempts) - outcomes["pending"]
    bad_promotions = sum(1 for r in attempts if r.outcome == "promoted" and r.rolled_back)
    verdicts = outcomes["promoted"] + outcomes["failed"]
    found = [(s, e) for s, e in incidents(rows, deployments) if in_period(s)]
    restored = [float(e - s) for s, e in found if e is not None]
    current = next(
        (d for d in sorted(deployments, key=lambda d: d.time, reverse=True) if d.promoted_from),
        None,
    )
    return {
        "period": {"since": iso(start), "until": iso(until), "days": round(days, 4)},
        "attempts": len(attempts),
        "outcomes": outcomes,
        "deployments": len(shipped),
        "rollbacks": rollbacks,
        "deployments_per_day": round(len(shipped) / max(days, 1.0), 4) if days > 0 else None,
        "success_rate": _ratio(outcomes["promoted"], decided),
        "lead_time_median_s": median(leads),
        "lead_time_p90_s": nearest_rank(leads, 0.9),
        "lead_time_count": len(leads),
        "lead_time_from": "+".join(lead_from) or None,
        "change_failure_rate": _ratio(outcomes["failed"] + bad_promotions, verdicts),
        "changes_failed": outcomes["failed"] + bad_promotions,
        "time_to_restore_median_s": median(restored),
        "incidents": len(found),
        "open_incidents": sum(1 for _, e in found if e is None),
        "production": (
            {
                "candidate": current.promoted_from,
                "commit": current.sha,
                "since": iso(current.time),
                "source_commit": current.source_commit,
                "images": [short_image(i) for i in current.images],
                "build_id": current.build_id,
                "rollback": current.rollback_from is not None,
            }
            if current
            else None
        ),
    }
