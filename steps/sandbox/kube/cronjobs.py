"""The CronJob controller and the cron schedules it reads.

Each pass finds the latest scheduled time not yet run (after
``status.lastScheduleTime``, or the CronJob's creation), creates the Job
``NAME-<minutes since the epoch>`` for it unless ``concurrencyPolicy`` or
``startingDeadlineSeconds`` says not to, and keeps ``status.active`` and the
history limits, as ``pkg/controller/cronjob`` does. Schedules are standard
five-field cron (``*/5``, ranges, lists, month and day names, ``@hourly``...),
in ``spec.timeZone`` when given (UTC otherwise).
"""

from __future__ import annotations

import calendar
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from steps.sandbox.kube.api import CONTROLLER
from steps.sandbox.kube.controller_base import owned_by, owner_ref
from steps.sandbox.kube.store import clone

if TYPE_CHECKING:
    from steps.sandbox.kube.controller_base import ControllerHost

__all__ = ["Schedule", "sync_cronjobs"]

SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec"
NAMES = {
    3: {m: i + 1 for i, m in enumerate(MONTHS.split())},
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MAX_LOOKBACK = 7 * 24 * 60  # minutes searched for a missed schedule


class Schedule:
    """A parsed five-field cron schedule; ``ValueError`` names what is wrong."""

    def __init__(self, text: str) -> None:
        spec = MACROS.get(text.strip(), text.strip())
        fields = spec.split()
        if len(fields) != 5:
            raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {text}")
        self.sets = [_field(f, i) for i, f in enumerate(fields)]
        self.any_dom, self.any_dow = fields[2] in ("*", "?"), fields[4] in ("*", "?")

    def matches(self, at: datetime) -> bool:
        minute, hour, dom, month, dow = self.sets
        if at.minute not in minute or at.hour not in hour or at.month not in month:
            return False
        day_ok, week_ok = at.day in dom, (at.isoweekday() % 7) in dow
        if self.any_dom or self.any_dow:
            return day_ok and week_ok
        return day_ok or week_ok  # both restricted: either, as cron has it

    def latest(self, after: float, until: float, zone: Any = UTC) -> float | None:
        """The latest scheduled time in (after, until], as epoch seconds."""
        at = datetime.fromtimestamp(until - until % 60, zone)
        floor = max(after, until - MAX_LOOKBACK * 60)
        while at.timestamp() > floor:
            if self.matches(at):
                return at.timestamp()
            at -= timedelta(minutes=1)
        return None


def _field(text: str, index: int) -> set[int]:
    low, high = RANGES[index]
    out: set[int] = set()
    for part in text.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step of range should be a positive number: {part}")
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, index), _value(last, index)
        else:
            start = _value(base, index)
            end = high if step_text else start
        if index == 4 and end == 7:
            end = 6
            out.add(0)
        if not low <= start <= high or not low <= end <= high or start > end:
            raise ValueError(f"end of range ({end}) above maximum ({high}): {part}")
        out.update(range(start, end + 1, step))
    return out


def _value(text: str, index: int) -> int:
    names = NAMES.get(index, {})
    if text in names:
        return names[text]
    if not text.isdigit():
        raise ValueError(f"failed to parse int from {text}")
    value = int(text)
    return 0 if index == 4 and value == 7 else value


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return float(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")))


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _finished(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _ref(job: dict[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    return {
        "kind": "Job",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "apiVersion": "batch/v1",
        "resourceVersion": meta.get("resourceVersion", ""),
    }


def sync_cronjobs(c: ControllerHost, now: float | None = None) -> None:
    rt = c.rt("batch", "cronjobs")
    for cj in [clone(x) for x in c.cluster.store.items(rt.key)]:
        if not cj["metadata"].get("deletionTimestamp"):
            _sync(c, rt, cj, time.time() if now is None else now)


def _sync(c: ControllerHost, rt: Any, cj: dict[str, Any], now: float) -> None:
    spec, meta = cj.get("spec") or {}, cj["metadata"]
    ns = meta["namespace"]
    jobs_rt = c.rt("batch", "jobs")
    jobs = [j for j in c.cluster.store.items(jobs_rt.key, ns) if owned_by(j, cj)]
    status = clone(cj.get("status") or {})
    active = [j for j in jobs if _finished(j) is None]
    for job in jobs:
        if _finished(job) == "Complete":
            done = (job.get("status") or {}).get("completionTime")
            if done and (status.get("lastSuccessfulTime") or "") < done:
                status["lastSuccessfulTime"] = done
    try:
        schedule = Schedule(spec.get("schedule", ""))
        zone: Any = ZoneInfo(spec["timeZone"]) if spec.get("timeZone") else UTC
    except (ValueError, ZoneInfoNotFoundError, KeyError):
        schedule = None
    if schedule is not None and not spec.get("suspend"):
        earliest = _epoch(status.get("lastScheduleTime")) or _epoch(meta.get("creationTimestamp"))
        due = schedule.latest(earliest or now, now, zone)
        deadline = spec.get("startingDeadlineSeconds")
        if due is not None and (deadline is None or now - due <= int(deadline)):
            policy = spec.get("concurrencyPolicy", "Allow")
            if policy == "Forbid" and active:
                due = None  # skipped: a run is still going; try again at the next time
            elif policy == "Replace":
                for job in active:
                    _delete(c, jobs_rt, job)
                active = []
            if due is not None:
                job = _job_for(cj, due, owner_ref(cj))
                created = c.cluster.controller_create(jobs_rt, job)
                if created is not None:
                    active.append(created)
                    c.events.record(
                        cj,
                        "Normal",
                        "SuccessfulCreate",
                        f"Created job {job['metadata']['name']}",
                        "cronjob-controller",
                    )
                status["lastScheduleTime"] = _stamp(due)
    _keep_history(c, jobs_rt, cj, jobs)
    status["active"] = [_ref(j) for j in active] or None
    if status.get("active") is None:
        status.pop("active", None)
    if status != (cj.get("status") or {}):
        cj["status"] = status
        c.cluster.write(rt, cj, subresource="status", manager=CONTROLLER)


def _job_for(cj: dict[str, Any], due: float, owner: dict[str, Any]) -> dict[str, Any]:
    template = clone((cj.get("spec") or {}).get("jobTemplate") or {})
    meta = template.get("metadata") or {}
    annotations = {**(meta.get("annotations") or {}), SCHEDULED: _stamp(due)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{cj['metadata']['name']}-{int(due // 60)}",
            "namespace": cj["metadata"]["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": template.get("spec") or {},
    }


def _keep_history(
    c: ControllerHost, jobs_rt: Any, cj: dict[str, Any], jobs: list[dict[str, Any]]
) -> None:
    spec = cj.get("spec") or {}
    limits = {
        "Complete": int(spec.get("successfulJobsHistoryLimit", 3)),
        "Failed": int(spec.get("failedJobsHistoryLimit", 1)),
    }
    for outcome, limit in limits.items():
        finished = sorted(
            (j for j in jobs if _finished(j) == outcome),
            key=lambda j: j["metadata"].get("creationTimestamp", ""),
        )
        for job in finished[: max(0, len(finished) - limit)]:
            _delete(c, jobs_rt, job)


def _delete(c: ControllerHost, jobs_rt: Any, job: dict[str, Any]) -> None:
    from steps.sandbox.kube.apierrors import ApiError

    meta = job["metadata"]
    with contextlib.suppress(ApiError):  # already gone
        c.cluster.delete(jobs_rt, meta["namespace"], meta["name"], propagation="Background")
