"""One rollout of verify-rollout: lock, dry run, apply in order, wait, then record
and prune, or roll back; the result. The stage module reads flags into a ``Config``.

What the rollout needs only once every object is applied (the wait and the rules
it feeds, the live record, the Lease) is imported when first used, after the
apply is sent: the rollout's clock starts at the apply, and the cluster's
controllers work while those modules load.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from steps.lib import overtaken
from steps.lib.errors import CheckFailed, ExternalError, ManifestError, StepError, UsageError
from steps.lib.output import say, warn
from steps.lib.rollout_apply import (
    ApplyProgress,
    Target,
    apply_objects,
    missing_namespaces,
    prune,
    scopes_for,
    server_dry_run,
)
from steps.lib.rollout_plan import CRD_GROUP_KIND, Manifest, Phase, Planned, plan

if TYPE_CHECKING:
    from steps.lib.kube import KubeApi
    from steps.lib.kube_access import Access
    from steps.lib.lease import LeaseLock
    from steps.lib.live_record import InventoryItem, LiveRecord
    from steps.lib.rollout_watch import WaitOptions, WaitOutcome

ROLLBACK_SHARE = 1 / 3
"""Share of ``--timeout`` kept for ``--rollback-on-failure`` unless ``--rollback-timeout``."""


# --------------------------------------------------------------------------- one rollout


class Config(NamedTuple):
    manifests: Path
    namespace: str | None
    timeout: float
    lock: str | None
    lock_namespace: str | None
    lock_duration: int
    lock_timeout: float | None
    record: str | None
    commit: str | None
    prune: bool
    rollback_dir: Path | None
    allow_cluster_scoped: bool
    failure_grace: float
    unschedulable_grace: float
    wait_load_balancer: bool
    log_lines: int
    notes: str | None = None
    rollback_timeout: float | None = None
    from_branch: str | None = None


def apply_and_wait(
    api: KubeApi,
    manifests: Sequence[Manifest],
    config: Config,
    *,
    labels: Mapping[str, str],
    deadline: float,
    progress: ApplyProgress | None = None,
) -> tuple[list[Planned], WaitOutcome]:
    """Dry-run, apply in order (CRDs established first), wait. The rollout itself.

    ``progress`` learns each object as it is applied, so that a caller seeing
    an error can tell a refusal before any change from a half-applied cluster.
    """
    progress = progress if progress is not None else ApplyProgress()
    namespace = config.namespace or api.default_namespace
    planned = plan(
        manifests,
        scopes_for(api, manifests),
        namespace=namespace,
        namespace_given=config.namespace is not None,
        allow_cluster_scoped=config.allow_cluster_scoped,
        labels=labels,
    )
    absent = missing_namespaces(api, planned)
    early = [p for p in planned if p.phase <= Phase.NAMESPACES]
    deferred = [
        p for p in planned if p.phase > Phase.NAMESPACES and (not p.served or p.namespace in absent)
    ]
    now_checkable = [p for p in planned if p not in deferred]
    say(f"dry run: {len(now_checkable)} object(s) on the server")
    server_dry_run(api, now_checkable)
    targets: list[Target] = []
    if deferred:
        # CRDs and Namespaces first, so that what depends on them can be checked.
        first = apply_objects(api, early, progress)
        crds = [t for t in first if (t.ref.group, t.ref.kind) == CRD_GROUP_KIND]
        if crds:
            outcome = wait_for(api, crds, wait_options(config, deadline))
            if outcome.status != "rolled-out":
                return planned, outcome
            api.forget_discovery()
        targets.extend(first)
        say(f"dry run: {len(deferred)} object(s) that needed new CRDs or namespaces")
        try:
            server_dry_run(api, deferred)
        except ManifestError as exc:
            raise ManifestError(
                exc.path, exc.line, exc.problem + " (CRDs and Namespaces were already applied)"
            ) from None
        targets.extend(
            apply_objects(api, [p for p in planned if p.phase > Phase.NAMESPACES], progress)
        )
    else:
        targets.extend(apply_objects(api, planned, progress))
    progress.waiting = True
    say(f"waiting for {len(targets)} object(s)")
    return planned, wait_for(api, targets, wait_options(config, deadline))


def wait_options(config: Config, deadline: float) -> WaitOptions:
    """How the wait judges, from the flags (the wait's modules load here, after the apply)."""
    from steps.lib.fail_fast import Graces
    from steps.lib.rollout_watch import UNREACHABLE_AT_TIMEOUT, WaitOptions

    return WaitOptions(
        deadline=deadline,
        graces=Graces(persisting=config.failure_grace, unschedulable=config.unschedulable_grace),
        wait_load_balancer=config.wait_load_balancer,
        log_lines=config.log_lines,
        unreachable_grace=min(UNREACHABLE_AT_TIMEOUT, config.timeout / 2),
    )


def wait_for(api: KubeApi, targets: Sequence[Target], options: WaitOptions) -> WaitOutcome:
    from steps.lib.rollout_watch import Waiter

    gc.enable()  # off from start-up to the apply when run as a command (verify_rollout.main)
    return Waiter(api, targets, options).run()


def inventory(planned: Sequence[Planned]) -> tuple[InventoryItem, ...]:
    from steps.lib.live_record import InventoryItem

    return tuple(
        InventoryItem(p.manifest.api_version, p.manifest.kind, p.namespace, p.manifest.name)
        for p in planned
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled build) unwinds like Ctrl-C, so the lock is released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def take_lock(api: KubeApi, config: Config, namespace: str) -> tuple[LeaseLock, float]:
    from steps.lib.lease import LeaseLock, LockTimeout

    assert config.lock is not None
    lock_namespace = config.lock_namespace or namespace
    lock = LeaseLock(api, lock_namespace, config.lock, duration=config.lock_duration)
    wait = config.lock_timeout if config.lock_timeout is not None else config.timeout

    def waiting(holder: str, left: float) -> None:
        gc.enable()  # a wait for another build may be long: collect as usual meanwhile
        say(
            f"lock {config.lock}: held by {holder} (expires in {left:.0f}s unless renewed); waiting"
        )

    try:
        waited = lock.acquire(time.monotonic() + wait, waiting)
    except LockTimeout as exc:
        raise CheckFailed(
            f"--lock {config.lock}: still held by {exc.holder} after {format_seconds(wait)}"
        ) from None
    say(f"lock {config.lock}: acquired in namespace {lock_namespace} as {lock.identity}")
    return lock, waited


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def report_outcome(outcome: WaitOutcome, timeout: float) -> dict[str, Any]:
    """Say how the wait ended and describe it for the result."""
    from steps.lib.rollout_watch import object_rows, summary_table

    for line in summary_table(outcome.targets):
        say(line)
    described: dict[str, Any] = {
        "status": outcome.status,
        "seconds": round(outcome.seconds, 3),
        "objects": object_rows(outcome.targets),
    }
    if outcome.watch_restarts:
        described["watch_restarts"] = outcome.watch_restarts
    if outcome.failure is not None:
        for line in outcome.failure.report():
            say(line)
        described["failure"] = outcome.failure.as_dict()
    elif outcome.status == "timed-out":
        waiting = [
            f"{t.ref} ({t.verdict.message if t.verdict else 'no status'})" for t in outcome.waiting
        ]
        say(f"timed out after {format_seconds(timeout)}; still waiting for: {', '.join(waiting)}")
        described["waiting"] = [str(t.ref) for t in outcome.waiting]
    return described


def rollback_budget(config: Config) -> float:
    """Seconds of ``--timeout`` kept back for the rollback (0 without one).

    One deadline for the whole stage: the rollout's wait ends this much before
    it, and the rollback has whatever is left (at least this much).
    """
    if config.rollback_dir is None:
        return 0.0
    if config.rollback_timeout is not None:
        return config.rollback_timeout
    return config.timeout * ROLLBACK_SHARE


def roll_back(
    api: KubeApi,
    manifests: Sequence[Manifest],
    config: Config,
    labels: Mapping[str, str],
    deadline: float,
) -> dict[str, Any]:
    """Re-apply the last good manifests and wait for them until ``deadline`` (still exit 1).

    The result says what was left of the one deadline when the rollback began
    (``budget_seconds``): the rollback has that, never a deadline of its own.
    """
    left = max(deadline - time.monotonic(), 0.0)
    budget = {"budget_seconds": round(left, 3)}
    say(f"rolling back: applying {config.rollback_dir} ({format_seconds(left)} left)")
    try:
        _, outcome = apply_and_wait(api, manifests, config, labels=labels, deadline=deadline)
    except (ManifestError, UsageError, ExternalError) as exc:
        say(f"rollback failed: {exc.message}")
        return {"status": "error", "error": exc.message, **budget}
    described = report_outcome(outcome, left)
    say(f"rollback {'complete' if outcome.status == 'rolled-out' else outcome.status}")
    return {**described, **budget}


def lock_still_held(api: KubeApi, lock: LeaseLock) -> bool:
    """Ask the Lease itself: the renewer looks only every third of its duration."""
    from steps.lib.kube import ApiError, describe_error

    if lock.lost.is_set():
        return False
    try:
        lease = api.get(lock.path)
    except ApiError as exc:  # cannot tell: then we cannot vouch for what is live either
        warn(f"lock {lock.name}: cannot read its Lease: {describe_error(exc)}")
        return False
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return bool(holder == lock.identity)


def half_applied(exc: StepError, progress: ApplyProgress, result: dict[str, Any]) -> dict[str, Any]:
    """The apply stopped after changing the cluster: say what it changed (pure but for say)."""
    applied = [ref.qualified() for ref in progress.applied]
    say(f"error: {exc.message}")
    say(f"the apply stopped half-way; already applied: {', '.join(applied)}")
    result.update(
        {
            "status": "apply-failed",
            "exit_code": exc.exit_code,
            "error": exc.message,
            "applied": applied,
            "failure": {"reason": "ApplyFailed", "message": exc.message},
        }
    )
    return result


def rollout(
    config: Config,
    access: Access,
    manifests: Sequence[Manifest],
    rollback_manifests: Sequence[Manifest] | None,
) -> dict[str, Any]:
    """Connect, lock, apply, wait, record; the result (exit_code 1 on failure)."""
    from steps.lib.kube_access import connect

    say(f"cluster: {access.describe()}")
    api = connect(access)
    namespace = config.namespace or api.default_namespace
    labels = record_labels(config.record)
    result: dict[str, Any] = {"cluster": access.describe(), "namespace": namespace}
    started = time.monotonic()
    lock: LeaseLock | None = None
    with sigterm_as_interrupt():
        try:
            if config.lock:
                at_start = overtaken.live_record_if(config.from_branch, api, namespace, config)
                lock, waited = take_lock(api, config, namespace)
                result["lock"] = {"name": config.lock, "waited_seconds": round(waited, 3)}
                if stop := overtaken.superseded_result(api, namespace, config, at_start):
                    return {**result, **stop}
            previous = previous_record(api, namespace, config) if config.prune else None
            deadline = time.monotonic() + config.timeout
            reserved = rollback_budget(config) if rollback_manifests is not None else 0.0
            progress = ApplyProgress()
            try:
                planned, outcome = apply_and_wait(
                    api,
                    manifests,
                    config,
                    labels=labels,
                    deadline=deadline - reserved,
                    progress=progress,
                )
            except (ManifestError, ExternalError) as exc:
                if not progress.half_applied:
                    raise  # nothing changed yet, or the wait's own error: as it is
                half_applied(exc, progress, result)
                if rollback_manifests is not None and not _lock_lost(api, lock, config):
                    result["rollback"] = roll_back(
                        api, rollback_manifests, config, labels, deadline
                    )
                return result
            result.update(report_outcome(outcome, config.timeout - reserved))
            if _lock_lost(api, lock, config):
                # Another build holds the environment now: what is live is its to say.
                result.update(
                    {
                        "status": "lock-lost",
                        "exit_code": 1,
                        "failure": {
                            "reason": "LockLost",
                            "message": f"lock {config.lock} was taken by another holder "
                            "during the rollout; not recorded, not pruned, not rolled back",
                        },
                    }
                )
                return result
            if outcome.status == "rolled-out":
                result.update(_prune_and_record(api, config, namespace, planned, previous))
                say(
                    f"rolled out {len(outcome.targets)} object(s) in "
                    f"{time.monotonic() - started:.1f}s"
                )
                return result
            result["exit_code"] = 1
            if rollback_manifests is not None:
                result["rollback"] = roll_back(api, rollback_manifests, config, labels, deadline)
            return result
        finally:
            if lock is not None:
                lock.release()
                say(f"lock {config.lock}: released")


def _prune_and_record(
    api: KubeApi,
    config: Config,
    namespace: str,
    planned: Sequence[Planned],
    previous: LiveRecord | None,
) -> dict[str, Any]:
    """After a rollout: prune what the last record applied and this one does not
    (``--prune``), then record this commit as live (``--record``)."""
    if not config.record:
        return {}  # nothing to load: this runs between the verdict and the exit
    from datetime import UTC, datetime

    from steps.lib.live_record import LiveRecord, configmap_name, images_in, write_live_record

    result: dict[str, Any] = {}
    if config.prune:
        result["pruned"] = prune(api, config.record, planned, previous)
    if config.commit:
        record = LiveRecord(
            name=config.record,
            namespace=namespace,
            commit=config.commit,
            build_id=os.environ.get("BUILD_ID") or None,
            time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            images=images_in([p.obj for p in planned]),
            inventory=inventory(planned),
        )
        write_live_record(api, record)
        say(f"recorded {config.commit} as live in {configmap_name(config.record)}")
        result["record"] = record.as_dict()
    return result


def _lock_lost(api: KubeApi, lock: LeaseLock | None, config: Config) -> bool:
    if lock is None or lock_still_held(api, lock):
        return False
    warn(f"lock {config.lock} was taken by another holder during the rollout")
    return True


def record_labels(record: str | None) -> dict[str, str]:
    """The inventory labels every applied object carries under ``--record``."""
    if not record:
        return {}
    from steps.lib.live_record import inventory_labels

    return inventory_labels(record)


def previous_record(api: KubeApi, namespace: str, config: Config) -> LiveRecord | None:
    """What the last successful rollout recorded (``--prune`` deletes what it no longer has)."""
    from steps.lib.live_record import read_live_record

    return read_live_record(api, namespace, config.record) if config.record else None
