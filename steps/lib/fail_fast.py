"""Fail fast: what is wrong with a pod of the new revision, and when it is fatal.

Container states that fail a rollout at once (``CrashLoopBackOff``,
``ImagePullBackOff``, ...), those that fail it only once they have lasted a
grace period (``ErrImagePull``, ``Unschedulable``, a controller's
``FailedCreate``), and repeated OOM kills or non-zero exits. Pure: the watch
loop feeds pods and events in and passes ``now``; which pods count is
``rollout_rules.new_revision_pods``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steps.lib.rollout_rules import Obj, condition, get_path, int_field
from steps.lib.timefmt import parse_rfc3339

# Container states that fail a rollout at once, and those that must persist first.
FATAL_AT_ONCE = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerError",
    "RunContainerError",
}
FATAL_IF_PERSISTING = {"ErrImagePull", "CreateContainerConfigError"}
UNSCHEDULABLE = "Unschedulable"
OOM_KILLED = "OOMKilled"
REPEATED_OOM = "RepeatedOOMKilled"
REPEATED_EXIT = "RepeatedNonZeroExit"
FAILED_CREATE = "FailedCreate"
OOM_RESTARTS = 2
"""An OOM kill on this many restarts is no longer bad luck."""
ERROR_RESTARTS = 3
"""Nor is a non-zero exit on this many restarts."""


@dataclass(frozen=True)
class Problem:
    """Something wrong with one container (or pod, when ``container`` is None)."""

    pod: str
    container: str | None
    reason: str
    message: str
    restarts: int = 0
    persisting: bool = False
    """True: only fatal once it has lasted a grace period."""
    since: str | None = None
    """When the API says it started (RFC 3339), if it says."""

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.pod, self.container, self.reason)


def pod_problems(pod: Obj) -> list[Problem]:
    """Every fail-fast reason visible on one pod, fatal at once or persisting."""
    name = str(get_path(pod, "metadata", "name", default="?"))
    problems: list[Problem] = []
    scheduled = condition(pod, "PodScheduled")
    if (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == UNSCHEDULABLE
    ):
        problems.append(
            Problem(
                name,
                None,
                UNSCHEDULABLE,
                str(scheduled.get("message") or "no node fits the pod"),
                persisting=True,
                since=scheduled.get("lastTransitionTime"),
            )
        )
    statuses = [
        *get_path(pod, "status", "initContainerStatuses", default=[]),
        *get_path(pod, "status", "containerStatuses", default=[]),
    ]
    for status in statuses:
        if isinstance(status, Mapping):
            found = container_problem(name, status)
            if found is not None:
                problems.append(found)
    return problems


def container_problem(pod: str, status: Obj) -> Problem | None:
    container = str(status.get("name", "?"))
    restarts = int_field(status, "restartCount")
    waiting = get_path(status, "state", "waiting", default={})
    reason = str(waiting.get("reason", "")) if isinstance(waiting, Mapping) else ""
    message = str(waiting.get("message", "")) if isinstance(waiting, Mapping) else ""
    last = get_path(status, "lastState", "terminated", default={})
    if reason in FATAL_AT_ONCE:
        detail = "; ".join(part for part in (message, last_exit(last)) if part)
        return Problem(pod, container, reason, detail, restarts)
    if reason in FATAL_IF_PERSISTING:
        return Problem(pod, container, reason, message, restarts, persisting=True)
    if isinstance(last, Mapping) and last:
        if last.get("reason") == OOM_KILLED and restarts >= OOM_RESTARTS:
            return Problem(pod, container, REPEATED_OOM, last_exit(last), restarts)
        exit_code = last.get("exitCode")
        if isinstance(exit_code, int) and exit_code != 0 and restarts >= ERROR_RESTARTS:
            return Problem(pod, container, REPEATED_EXIT, last_exit(last), restarts)
    return None


def last_exit(last: Any) -> str:
    if not isinstance(last, Mapping) or not last:
        return ""
    text = f"last exit: {last.get('reason') or 'terminated'} (code {last.get('exitCode', '?')})"
    if last.get("message"):
        text += f": {last['message']}"
    return text


@dataclass(frozen=True)
class Graces:
    """How long a persisting problem may last before it fails the rollout."""

    persisting: float = 30.0
    unschedulable: float = 120.0

    def for_reason(self, reason: str) -> float:
        return self.unschedulable if reason == UNSCHEDULABLE else self.persisting


def is_fatal(problem: Problem, first_seen: float, now: float, graces: Graces) -> bool:
    """A problem fails the rollout at once, or once it has lasted its grace period."""
    if not problem.persisting:
        return True
    started = first_seen
    since = parse_rfc3339(problem.since)
    if since is not None:
        started = min(started, since)
    return now - started >= graces.for_reason(problem.reason)


class ProblemClock:
    """Remembers when each problem was first seen, forgetting those that went away.

    Pure bookkeeping: the caller passes ``now``.
    """

    def __init__(self) -> None:
        self._first_seen: dict[tuple[str, str | None, str], float] = {}

    def fatal(self, problems: Sequence[Problem], now: float, graces: Graces) -> list[Problem]:
        """Record ``problems`` (all those visible now) and return the fatal ones."""
        keys = {p.key for p in problems}
        for key in list(self._first_seen):
            if key not in keys:
                del self._first_seen[key]
        fatal: list[Problem] = []
        for problem in problems:
            first = self._first_seen.setdefault(problem.key, now)
            if is_fatal(problem, first, now, graces):
                fatal.append(problem)
        return fatal


def failed_create_problems(events: Iterable[Obj], owner_uids: Iterable[str]) -> list[Problem]:
    """``FailedCreate`` warnings on the new revision's controllers (persisting ones fail)."""
    owners = set(owner_uids)
    problems: list[Problem] = []
    for event in events:
        involved = get_path(event, "involvedObject", default={})
        if event.get("reason") != FAILED_CREATE or involved.get("uid") not in owners:
            continue
        problems.append(
            Problem(
                f"{involved.get('kind', '?')}/{involved.get('name', '?')}",
                None,
                FAILED_CREATE,
                str(event.get("message", "")),
                persisting=True,
                since=event.get("firstTimestamp") or event.get("eventTime"),
            )
        )
    return problems
