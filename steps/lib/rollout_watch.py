"""verify-rollout's wait: list then watch each object and the new revision's pods,
feed them to ``steps.lib.rollout_rules``, and report a failure with its pod, events
and logs. The rules decide; this module only feeds them live objects."""

from __future__ import annotations

import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steps.lib import fail_fast
from steps.lib import rollout_rules as rules
from steps.lib.errors import ExternalError
from steps.lib.output import say, warn
from steps.lib.rollout_apply import Target
from steps.lib.timefmt import parse_rfc3339

if TYPE_CHECKING:
    from steps.lib.kube import KubeApi, Resource
    from steps.lib.kube_watch import CollectionWatch, Event

TICK = 0.5
"""Seconds between checks of grace periods and the deadline when nothing happens."""
UNREACHABLE_AT_TIMEOUT = 10.0
"""Seconds without the API server at the deadline that make a timeout exit 3."""
WAITING_FOR_CONTROLLER = (rules.NOT_APPLIED_YET, rules.GENERATION_LAG)
"""Reasons that mean the controller has not acted on the object yet."""
RECENT_EVENTS = 5
WARNINGS_ONLY = (("fieldSelector", "type=Warning"),)
"""The events a wait reads (``kubectl get events --field-selector type=Warning``)."""

# --------------------------------------------------------------------------- wait


@dataclass(frozen=True)
class WaitOptions:
    deadline: float
    graces: fail_fast.Graces = field(default_factory=fail_fast.Graces)
    wait_load_balancer: bool = False
    log_lines: int = 20
    unreachable_grace: float = UNREACHABLE_AT_TIMEOUT


@dataclass
class Failure:
    """Why a rollout failed, in the words of the failure report."""

    object: str
    namespace: str | None
    reason: str
    message: str
    pod: str | None = None
    container: str | None = None
    restarts: int | None = None
    events: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}

    def report(self) -> list[str]:
        where = self.object
        if self.pod:
            where += f", pod {self.pod}"
        if self.container:
            where += f", container {self.container}"
        lines = [f"rollout failed: {where}: {self.reason}: {self.message}".rstrip(": ")]
        if self.restarts:
            lines.append(f"  restarts: {self.restarts}")
        if self.events:
            lines.append("  recent warning events:")
            lines.extend(f"    {event}" for event in self.events)
        if self.logs:
            lines.append(f"  last {len(self.logs)} log lines of {self.container or 'the pod'}:")
            lines.extend(f"    | {line}" for line in self.logs)
        return lines


@dataclass
class WaitOutcome:
    status: str  # rolled-out | failed | timed-out
    targets: list[Target]
    failure: Failure | None = None
    seconds: float = 0.0
    watch_restarts: int = 0

    @property
    def waiting(self) -> list[Target]:
        return [t for t in self.targets if t.verdict is None or not t.verdict.done]


class Waiter:
    """Watch the targets (and their pods) until all are Current, one fails, or time is up."""

    def __init__(self, api: KubeApi, targets: Sequence[Target], options: WaitOptions) -> None:
        self.api = api
        self.targets = list(targets)
        self.options = options
        self.started_wall = time.time()
        self.events: queue.Queue[Event] = queue.Queue()
        self.cache: dict[str, dict[tuple[str | None, str], dict[str, Any]]] = {}
        self.synced: set[str] = set()
        self.clocks = {target.ref: fail_fast.ProblemClock() for target in self.targets}
        """When each target's pod problems were first seen (for the grace periods)."""
        self.watches: dict[str, CollectionWatch] = {}
        self.target_paths: set[str] = set()

    # -- collections

    def _collection(self, resource: Resource, namespace: str | None) -> str:
        return resource.path(namespace if resource.namespaced else None)

    def _watch(self, path: str, selectors: Sequence[tuple[str, str]] = ()) -> None:
        from steps.lib.kube_watch import CollectionWatch

        if path not in self.watches:
            self.cache.setdefault(path, {})
            self.watches[path] = CollectionWatch(
                self.api, path, path, self.events, selectors=selectors
            ).start()

    def _pod_paths(self, namespace: str | None) -> tuple[str, str, str]:
        ns = namespace or "default"
        return (
            f"/api/v1/namespaces/{ns}/pods",
            f"/apis/apps/v1/namespaces/{ns}/replicasets",
            f"/api/v1/namespaces/{ns}/events",
        )

    def _start_watches(self, pending: Sequence[Target]) -> None:
        for target in pending:
            path = self._collection(target.resource, target.ref.namespace)
            self.target_paths.add(path)
            self._watch(path)
            owner = rules.POD_OWNERS.get((target.ref.group, target.ref.kind))
            if owner is not None:
                pods, replicasets, events = self._pod_paths(target.ref.namespace)
                self._watch(pods)
                # Only warnings fail a rollout or go in its report: the server
                # leaves out the dozens of Normal events every rollout makes.
                self._watch(events, WARNINGS_ONLY)
                if owner.via_replicasets:
                    self._watch(replicasets)

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop()

    # -- the loop

    def run(self) -> WaitOutcome:
        started = time.monotonic()
        try:
            outcome = self._loop()
        finally:
            self.stop()
        outcome.seconds = time.monotonic() - started
        outcome.watch_restarts = sum(w.restarts for w in self.watches.values())
        return outcome

    def _loop(self) -> WaitOutcome:
        failure = self._evaluate()
        pending = [t for t in self.targets if not (t.verdict and t.verdict.done)]
        if failure is None and pending:
            self._start_watches(pending)
        while True:
            if failure is not None:
                return WaitOutcome("failed", self.targets, failure)
            if all(t.verdict is not None and t.verdict.done for t in self.targets):
                return WaitOutcome("rolled-out", self.targets)
            left = self.options.deadline - time.monotonic()
            if left <= 0:
                self._check_reachable()
                return WaitOutcome("timed-out", self.targets)
            try:
                self._handle(self.events.get(timeout=min(TICK, left)))
                while True:
                    self._handle(self.events.get_nowait())
            except queue.Empty:
                pass
            failure = self._evaluate()

    def _check_reachable(self) -> None:
        """Time ran out while the API server was away: that is exit 3, not a verdict."""
        lost = max((w.unreachable_for() for w in self.watches.values()), default=0.0)
        if lost > self.options.unreachable_grace:
            raise ExternalError(
                f"Kubernetes API {self.api.host}: unreachable for the last {lost:.0f}s "
                "of the rollout; its outcome is unknown"
            )

    def _handle(self, event: Event) -> None:
        if event.type == "BUG" and event.error is not None:
            # Not the cluster's fault: a traceback (exit 70), no verdict, no rollback.
            raise event.error
        if event.type == "FATAL":
            error = event.error
            status = getattr(error, "status", 0)
            if event.key not in self.target_paths and status in (401, 403, 404):
                # Pods, ReplicaSets or Events we may not read: judge by status alone.
                warn(f"cannot watch {event.key} (HTTP {status}): no fail-fast from it")
                self.synced.add(event.key)
                return
            detail = str(error) if error is not None else "unreachable"
            raise ExternalError(f"Kubernetes API {self.api.host}: watching {event.key}: {detail}")
        store = self.cache.setdefault(event.key, {})
        if event.type == "SYNC":
            store.clear()
            for item in event.items:
                store[_key(item)] = item
            self.synced.add(event.key)
        elif event.type == "DELETED":
            store.pop(_key(event.obj), None)
        elif event.type in ("ADDED", "MODIFIED"):
            store[_key(event.obj)] = event.obj

    def _live(self, target: Target) -> dict[str, Any] | None:
        path = self._collection(target.resource, target.ref.namespace)
        if path not in self.synced:
            return target.live
        return self.cache.get(path, {}).get((target.ref.namespace, target.ref.name))

    def _evaluate(self) -> Failure | None:
        now = time.monotonic()
        for target in self.targets:
            live = self._live(target)
            if live is None:
                verdict = rules.in_progress("NotFound", "not found (deleted?)")
            else:
                target.live = live
                verdict = rules.status_of(
                    live,
                    applied_generation=target.applied_generation,
                    wait_load_balancer=self.options.wait_load_balancer,
                )
            if verdict != target.verdict:
                target.verdict = verdict
                say(f"{target.ref}: {verdict.message}")
            if verdict.status is rules.Status.FAILED:
                return self._object_failure(target, verdict)
            if verdict.done or live is None or verdict.reason in WAITING_FOR_CONTROLLER:
                continue  # until the controller has seen our change, its pods are not ours
            if (target.ref.group, target.ref.kind) in rules.POD_OWNERS:
                failure = self._pod_failure(target, live, now)
                if failure is not None:
                    return failure
        return None

    def _pods_of(self, target: Target, live: Mapping[str, Any]) -> tuple[list[Any], list[str]]:
        """The new revision's pods, and the uids of their controllers (for FailedCreate)."""
        pods_path, rs_path, _ = self._pod_paths(target.ref.namespace)
        pods = list(self.cache.get(pods_path, {}).values())
        replicasets = list(self.cache.get(rs_path, {}).values())
        return rules.new_revision_pods(live, pods, replicasets), rules.pod_controllers(
            live, replicasets
        )

    def _pod_failure(self, target: Target, live: Mapping[str, Any], now: float) -> Failure | None:
        new_pods, owners = self._pods_of(target, live)
        problems = [problem for pod in new_pods for problem in fail_fast.pod_problems(pod)]
        problems += fail_fast.failed_create_problems(self._recent_events(), owners)
        fatal = self.clocks[target.ref].fatal(problems, now, self.options.graces)
        if not fatal:
            return None
        problem = fatal[0]
        pod = next(
            (p for p in new_pods if rules.get_path(p, "metadata", "name") == problem.pod), None
        )
        return self._report(target, problem, pod)

    def _recent_events(self) -> list[dict[str, Any]]:
        """Warning events in the watched namespaces since this wait began."""
        found: list[dict[str, Any]] = []
        for path, store in self.cache.items():
            if not path.endswith("/events"):
                continue
            for event in store.values():
                if event.get("type") != "Warning":
                    continue
                when = _event_time(event)
                if when is not None and when < self.started_wall - 1:
                    continue
                found.append(event)
        return found

    # -- failure reports

    def _object_failure(self, target: Target, verdict: rules.Verdict) -> Failure:
        names = {target.ref.name}
        failure = Failure(str(target.ref), target.ref.namespace, verdict.reason, verdict.message)
        failure.events = self._events_about(names)
        return failure

    def _report(self, target: Target, problem: fail_fast.Problem, pod: Any) -> Failure:
        failure = Failure(
            str(target.ref),
            target.ref.namespace,
            problem.reason,
            problem.message,
            pod=problem.pod if pod is not None else None,
            container=problem.container,
            restarts=problem.restarts if problem.container else None,
        )
        names = {target.ref.name, problem.pod}
        if pod is not None:
            for ref in rules.get_path(pod, "metadata", "ownerReferences", default=[]):
                names.add(str(ref.get("name")))
        failure.events = self._events_about(names)
        if pod is not None and problem.container and self.options.log_lines > 0:
            failure.logs = self._logs(target.ref.namespace, problem)
        return failure

    def _events_about(self, names: set[str]) -> list[str]:
        relevant = [
            e for e in self._recent_events() if rules.get_path(e, "involvedObject", "name") in names
        ]
        relevant.sort(key=lambda e: _event_time(e) or 0.0)
        lines = []
        for event in relevant[-RECENT_EVENTS:]:
            involved = event.get("involvedObject") or {}
            count = event.get("count") or rules.get_path(event, "series", "count") or 1
            times = f" (x{count})" if isinstance(count, int) and count > 1 else ""
            lines.append(
                f"{involved.get('kind', '?')}/{involved.get('name', '?')}: "
                f"{event.get('reason', '')}: {str(event.get('message', '')).strip()}{times}"
            )
        return lines

    def _logs(self, namespace: str | None, problem: fail_fast.Problem) -> list[str]:
        from steps.lib.kube import ApiError

        path = f"/api/v1/namespaces/{namespace or 'default'}/pods/{problem.pod}/log"
        query = [("container", str(problem.container)), ("tailLines", str(self.options.log_lines))]
        attempts = [[*query, ("previous", "true")], query] if problem.restarts else [query]
        for attempt in attempts:
            try:
                text = self.api.text(path, attempt)
            except (ApiError, ExternalError) as exc:
                last = str(exc)
                continue
            lines = text.rstrip("\n").splitlines()[-self.options.log_lines :]
            if lines:
                return lines
            last = "empty"
        return [f"(no log: {last})"]


def _key(obj: Mapping[str, Any]) -> tuple[str | None, str]:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return (str(namespace) if namespace else None, str(meta.get("name", "")))


def _event_time(event: Mapping[str, Any]) -> float | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        found = parse_rfc3339(event.get(key))
        if found is not None:
            return found
    return parse_rfc3339(rules.get_path(event, "metadata", "creationTimestamp"))


def summary_table(targets: Sequence[Target]) -> list[str]:
    rows = [("OBJECT", "NAMESPACE", "STATUS", "DETAIL")]
    for target in targets:
        verdict = target.verdict
        rows.append(
            (
                str(target.ref),
                target.ref.namespace or "-",
                verdict.status.value if verdict else "Unknown",
                verdict.message if verdict else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
        for row in rows
    ]


def object_rows(targets: Sequence[Target]) -> list[dict[str, Any]]:
    return [
        {
            "object": str(t.ref),
            "namespace": t.ref.namespace,
            "status": t.verdict.status.value if t.verdict else "Unknown",
            "reason": t.verdict.reason if t.verdict else None,
            "message": t.verdict.message if t.verdict else None,
        }
        for t in targets
    ]
