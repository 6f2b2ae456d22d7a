"""Retrying the git stages' network work.

``push_with_retry``: fetch the tip, let the caller compute a commit on it,
push; when the push is rejected, do it all again on the new tip. Losing the
race to another writer is bounded by time, failures by count, and after a
push that got no answer the next attempt first asks whether our commit
landed after all. ``with_retries``: the same backoff for a single fetch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from steps.lib.errors import ExternalError
from steps.lib.git_failures import TransientGitError, raise_for_failure
from steps.lib.gitrepo import Workspace
from steps.lib.output import redact, say
from steps.lib.push_flags import CONTENTION_BUDGET
from steps.lib.retry import CONTENTION, FAILURE, backoff_delay

T = TypeVar("T")


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
