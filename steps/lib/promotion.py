"""promote's decisions, pure: what a promotion commit says, promote or rollback,
what is live, and whether a chain lets a commit go on (``chain_refusal``).

``steps/promote.py`` reads the flags into a ``Config``; ``steps.lib.promoter``
does the Git and cluster work and asks these functions what to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steps.lib.git_messages import format_message, tool_trailers, trailer_values

if TYPE_CHECKING:
    from steps.lib.git_inputs import Identity, RepoLocation
    from steps.lib.kube_access import Access
    from steps.lib.provenance import Provenance

STEP = "promote"
"""The stage's name: in its messages and its commits' ``Gitops-Step`` trailer."""
CARRIED_TRAILERS = ("Source-Repo", "Source-Commit", "Image")
SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
"""A commit SHA as --commit and the trailers give it (abbreviated or full)."""


@dataclass(frozen=True)
class Config:
    location: RepoLocation
    commit: str
    source_branch: str
    target_branch: str
    subdir: str
    max_attempts: int
    committer: Identity
    provenance: Provenance
    require_live: str | None = None
    namespace: str | None = None
    access: Access | None = None
    require_promoted: bool = False
    min_soak: float = 0.0
    check_only: bool = False


def same_commit(a: str, b: str) -> bool:
    """Two SHAs name the same commit when one is a prefix of the other."""
    a, b = a.lower(), b.lower()
    return a.startswith(b) or b.startswith(a)


def live_verdict(commit: str, live: str | None, live_is_newer: bool) -> str:
    """``live`` (promote), ``superseded`` (skip, exit 0) or ``not-live`` (exit 1)."""
    if live is None:
        return "not-live"
    if same_commit(commit, live):
        return "live"
    return "superseded" if live_is_newer else "not-live"


def promoted_from(message: str) -> str | None:
    """The candidate SHA in a message's last ``Promoted-From: branch@sha`` trailer."""
    values = trailer_values(tool_trailers(message), "Promoted-From")
    if not values:
        return None
    sha = values[-1].rpartition("@")[2].strip()
    return sha.lower() if SHA.match(sha) else None


def release_of(message: str) -> str | None:
    """The candidate commit a promotion carries on down the chain (``Release``)."""
    values = trailer_values(tool_trailers(message), "Release")
    if values and SHA.match(values[-1].strip()):
        return values[-1].strip().lower()
    return promoted_from(message)


def promotion_kind(commit: str, live: str | None, live_is_descendant: bool) -> str:
    """``rollback`` when ``commit`` is an older candidate than the live one."""
    if live and live != commit and live_is_descendant:
        return "rollback"
    return "promote"


def promote_message(
    config: Config,
    commit: str,
    candidate_message: str,
    kind: str,
    live: str | None,
    changes: Sequence[Any],
) -> str:
    subject_of_candidate = candidate_message.strip().splitlines()[0] if candidate_message else ""
    verb = "Rollback to" if kind == "rollback" else "Promote"
    subject = f"{verb} {commit[:12]}: {subject_of_candidate}"
    where = config.subdir or "/"
    body = [f"{config.target_branch}:{where} := {config.source_branch}@{commit}:{where}"]
    if kind == "rollback" and live:
        body.append(f"Rolls back {config.source_branch}@{live}.")
    body += [f"  {c.kind} {c.path}" for c in changes[:30]]
    if len(changes) > 30:
        body.append(f"  ... and {len(changes) - 30} more")
    trailers = [
        ("Promoted-From", f"{config.source_branch}@{commit}"),
        ("Release", release_of(candidate_message) or commit),
    ]
    if kind == "rollback" and live:
        trailers.append(("Rollback-From", live))
    trailers.append(("Build-Id", config.provenance.build_id or ""))
    carried = tool_trailers(candidate_message)
    for key in CARRIED_TRAILERS:
        trailers += [(key, value) for value in trailer_values(carried, key)]
    return format_message(subject, "\n".join(body), trailers, STEP)


@dataclass(frozen=True)
class Upstream:
    """The commit on the earlier environment's branch, and what came after it there."""

    environment: str
    commit: str
    message: str
    promoted_at: int
    next_commit: str | None = None
    next_message: str = ""
    next_at: int | None = None


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def span(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
        or "0s"
    )


def chain_refusal(upstream: Upstream, target: str, min_soak: float, now: float) -> str | None:
    """Why ``upstream.commit`` may not go on to ``target`` yet; None when it may.

    Healthy on the earlier environment means: gitops-promote recorded it
    there (which, in the env build, happens only after verify-rollout saw it
    roll out and --require-live saw it live), and for ``min_soak`` after that
    nothing replaced it there, a rollback least of all. The times are the
    promotion commits' committer times on that environment's branch.
    """
    env, short = upstream.environment, upstream.commit[:12]
    if promoted_from(upstream.message) is None:
        return (
            f"{short} on {env} is not a promotion recorded by gitops-promote: promote a "
            f"candidate to {env} first (run {env}'s env build for it); not promoting to {target}"
        )
    if trailer_values(tool_trailers(upstream.message), "Rollback-From"):
        return (
            f"{short} is a rollback on {env}; a rollback stays in its environment (re-run "
            f"{target}'s env build for the {env} commit you want there); not promoting to {target}"
        )
    if upstream.next_commit is not None and upstream.next_at is not None:
        lived = upstream.next_at - upstream.promoted_at
        replaced_by = upstream.next_commit[:12]
        if trailer_values(tool_trailers(upstream.next_message), "Rollback-From"):
            return (
                f"{short} was rolled back on {env} at {utc(upstream.next_at)} ({replaced_by}); "
                f"not promoting to {target}"
            )
        if lived < min_soak:
            return (
                f"{short} was live on {env} for only {span(lived)} (from "
                f"{utc(upstream.promoted_at)}, replaced by {replaced_by} at "
                f"{utc(upstream.next_at)}); {target} needs {span(min_soak)} of soak; "
                f"not promoting"
            )
        return None
    soaked = now - upstream.promoted_at
    if soaked < min_soak:
        allowed = upstream.promoted_at + min_soak
        return (
            f"{short} has been live on {env} for {span(soaked)} (since "
            f"{utc(upstream.promoted_at)}); {target} needs {span(min_soak)} of soak: allowed "
            f"from {utc(allowed)} (in {span(allowed - now)}); not promoting yet"
        )
    return None
