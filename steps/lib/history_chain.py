"""gitops-history ``--chain``, pure: each environment's commits mapped back to the
releases (candidate commits) they carry, and one row per release saying how
far it went, environment by environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from steps.lib.deploy_notes import OutcomeNote, parse_note
from steps.lib.git_messages import tool_trailers
from steps.lib.history_model import (
    AttemptRow,
    Candidate,
    Deployment,
    LogEntry,
    build_rows,
    deployment_of,
    iso,
    last_value,
    short_image,
)


def release_of_entry(entry: LogEntry) -> str | None:
    """The candidate commit an environment's commit carries (promote's ``Release``)."""
    value = last_value(tool_trailers(entry.message), "Release")
    return value.strip().lower() if value else None


def environment_rows(
    candidates: Sequence[Candidate],
    chain: Sequence[tuple[str, Sequence[LogEntry]]],
    notes: Mapping[str, str],
) -> list[tuple[str, list[AttemptRow], list[Deployment], set[str]]]:
    """Per environment: the attempts as it saw them, its deployments, the releases it got.

    Each environment's commits are mapped back to candidate commits (their
    ``Release`` trailer, else through the environment before: ``Promoted-From:
    staging@S`` and S's own release). The first environment's verdicts are the
    notes on candidate commits (its builds run for them); a later one's, the
    notes on the earlier environment's commits (its builds run for those).
    A release that never reached the environment before is left out of it.
    """
    out: list[tuple[str, list[AttemptRow], list[Deployment], set[str]]] = []
    previous: dict[str, str] | None = None  # earlier environment's commit -> release
    by_sha = {c.sha: c for c in candidates}
    for env, entries in chain:
        mapping: dict[str, str] = {}
        deployments: list[Deployment] = []
        for entry in entries:
            raw = deployment_of(entry)
            release = release_of_entry(entry) or (
                raw.promoted_from
                if previous is None
                else previous.get(raw.promoted_from or "", raw.promoted_from)
            )
            rollback = raw.rollback_from
            if rollback and previous is not None:
                rollback = previous.get(rollback, rollback)
            mapping[entry.sha] = release or ""
            deployments.append(replace(raw, promoted_from=release, rollback_from=rollback))
        if previous is None:
            seen = list(candidates)
        else:
            verdicts: dict[str, list[OutcomeNote]] = {}
            for commit, release in previous.items():
                verdicts.setdefault(release, []).extend(parse_note(notes.get(commit, "")))
            seen = [
                replace(by_sha[release], verdicts=tuple(verdicts.get(release, ())))
                for release in dict.fromkeys(previous.values())
                if release in by_sha
            ]
        rows = build_rows(seen, deployments)
        out.append((env, rows, deployments, {c.sha for c in seen}))
        previous = {sha: release for sha, release in mapping.items() if release}
    return out


def chain_attempts(
    candidates: Sequence[Candidate],
    per_env: Sequence[tuple[str, list[AttemptRow], list[Deployment], set[str]]],
) -> list[dict[str, Any]]:
    """One row per release (newest first): how far it went, environment by environment."""
    rows: list[dict[str, Any]] = []
    for candidate in sorted(candidates, key=lambda c: c.time, reverse=True):
        environments: dict[str, Any] = {}
        for env, env_rows, _, reached in per_env:
            row = next((r for r in env_rows if r.candidate.sha == candidate.sha), None)
            if candidate.sha not in reached or row is None:
                environments[env] = {"outcome": "not-reached"}
                continue
            environments[env] = {
                "outcome": row.outcome,
                "reason": row.verdict.reason,
                "promoted_at": iso(row.promoted_at) if row.promoted_at is not None else None,
                "commit": row.production_commit,
                "rolled_back": row.rolled_back,
                "rollback_target": row.rollback_target,
            }
        rows.append(
            {
                "commit": candidate.sha,
                "time": iso(candidate.time),
                "subject": candidate.subject,
                "source_commit": candidate.source_commit,
                "images": [short_image(i) for i in candidate.images],
                "environments": environments,
            }
        )
    return rows
