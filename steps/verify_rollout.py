"""gitops-verify-rollout: apply manifests to a cluster and know whether the rollout worked.

The flow: flags -> cluster access -> manifests read and checked -> plan
(order, namespaces, scope) -> lock -> server-side dry run of everything ->
server-side apply in dependency order -> watch until every object is rolled
out, one of the new revision's pods fails, or the timeout -> record, prune,
or roll back -> result.

The rules that decide are in ``steps.lib.rollout_rules`` (pure); this module only
feeds them live objects from watches.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from steps.lib import fail_fast
from steps.lib.cli import (
    StepParser,
    StepRun,
    add_common_options,
    parse_duration,
    run_step,
    settle_imports,
    version_text,
)
from steps.lib.cluster_flags import LEASE_DURATION, add_access_options
from steps.lib.errors import CheckFailed, ExternalError, ManifestError, StepError, UsageError
from steps.lib.live_record import (
    InventoryItem,
    LiveRecord,
    check_record_name,
    configmap_name,
    images_in,
    inventory_labels,
)
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
from steps.lib.rollout_plan import CRD_GROUP_KIND, Manifest, Phase, Planned, load_manifests, plan
from steps.lib.rollout_watch import (
    UNREACHABLE_AT_TIMEOUT,
    Waiter,
    WaitOptions,
    WaitOutcome,
    object_rows,
    summary_table,
)

if TYPE_CHECKING:
    from steps.lib.kube import KubeApi
    from steps.lib.kube_access import Access
    from steps.lib.lease import LeaseLock

STEP = "verify-rollout"
DEFAULT_TIMEOUT = "10m"
ROLLBACK_SHARE = 1 / 3
"""Share of ``--timeout`` kept for ``--rollback-on-failure`` unless ``--rollback-timeout``."""

DESCRIPTION = """\
Apply manifests to a cluster with server-side apply, then wait (by watching)
until every object is rolled out; fail fast when the new revision's pods fail.

examples:
  gitops-verify-rollout --manifests out/ --cluster projects/p/locations/europe-west1/clusters/prod
  gitops-verify-rollout --manifests out/ --kubeconfig kube.yaml --context sandbox \\
      --lock prod --record prod --commit $COMMIT_SHA --prune --rollback-on-failure production/

exit codes: 0 rolled out; 1 failed or timed out; 2 bad manifests or flags;
3 cluster unreachable after retries.
"""


# --------------------------------------------------------------------------- one rollout


@dataclass(frozen=True)
class Config:
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
    graces: fail_fast.Graces
    wait_load_balancer: bool
    log_lines: int
    notes: str | None = None
    rollback_timeout: float | None = None


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
    options = WaitOptions(
        deadline=deadline,
        graces=config.graces,
        wait_load_balancer=config.wait_load_balancer,
        log_lines=config.log_lines,
        unreachable_grace=min(UNREACHABLE_AT_TIMEOUT, config.timeout / 2),
    )
    targets: list[Target] = []
    if deferred:
        # CRDs and Namespaces first, so that what depends on them can be checked.
        first = apply_objects(api, early, progress)
        crds = [t for t in first if (t.ref.group, t.ref.kind) == CRD_GROUP_KIND]
        if crds:
            outcome = Waiter(api, crds, options).run()
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
    return planned, Waiter(api, targets, options).run()


def inventory(planned: Sequence[Planned]) -> tuple[InventoryItem, ...]:
    return tuple(
        InventoryItem(p.manifest.api_version, p.manifest.kind, p.namespace, p.manifest.name)
        for p in planned
    )


# --------------------------------------------------------------------------- command line


def build_parser() -> StepParser:
    parser = StepParser(prog="gitops-verify-rollout", description=DESCRIPTION)
    parser.add_option(
        "--manifests", required=True, metavar="DIR", help="directory (or file) of YAML manifests"
    )
    parser.add_option(
        "--namespace", metavar="NS", help="namespace for objects without one (default: context's)"
    )
    parser.add_option(
        "--timeout",
        default=None,
        metavar="DURATION",
        help=f"overall time for the rollout to complete (default {DEFAULT_TIMEOUT})",
    )
    add_access_options(parser)
    _add_lock_options(parser, LEASE_DURATION)
    parser.add_option(
        "--record", metavar="NAME", help="after success, write ConfigMap gitops-steps-NAME"
    )
    parser.add_option(
        "--commit", metavar="SHA", help="candidate commit for --record (default: $COMMIT_SHA)"
    )
    parser.add_option(
        "--prune",
        action="store_true",
        help="delete objects applied earlier under --record but no longer in the manifests",
    )
    _add_rollout_options(parser)
    parser.add_option(
        "--notes",
        metavar="URL",
        help="env repo in which to record the outcome as a Git note on --commit "
        "(refs/notes/gitops, read by gitops-history)",
    )
    add_common_options(parser)
    parser.add_argument("--version", action="version", version=version_text())
    return parser


def _add_lock_options(parser: StepParser, lease_duration: int) -> None:
    """--lock and how long to hold it and to wait for it."""
    parser.add_option("--lock", metavar="NAME", help="hold the Lease NAME while applying/waiting")
    parser.add_option(
        "--lock-namespace", metavar="NS", help="namespace of the Lease (default: --namespace)"
    )
    parser.add_option(
        "--lock-duration",
        type=int,
        metavar="SECONDS",
        help=f"how long a holder that stops renewing keeps the lock (default {lease_duration})",
    )
    parser.add_option(
        "--lock-timeout",
        metavar="DURATION",
        help="how long to wait for the lock (default: --timeout)",
    )


def _add_rollout_options(parser: StepParser) -> None:
    """What the rollout may apply, how failure is judged, and the rollback."""
    parser.add_option(
        "--rollback-on-failure",
        metavar="DIR",
        help="on failure, re-apply these manifests and wait for them (still exit 1)",
    )
    parser.add_option(
        "--rollback-timeout",
        metavar="DURATION",
        help="part of --timeout kept for the rollback: the rollout's wait ends this much "
        "earlier (default: a third of --timeout)",
    )
    parser.add_option(
        "--allow-cluster-scoped",
        action="store_true",
        help="allow cluster-scoped kinds other than Namespace and CustomResourceDefinition",
    )
    parser.add_option(
        "--wait-load-balancer",
        action="store_true",
        help="wait for LoadBalancer Services to get an address",
    )
    parser.add_option(
        "--failure-grace",
        metavar="DURATION",
        help="how long ErrImagePull, CreateContainerConfigError, FailedCreate may "
        "persist before failing (default 30s)",
    )
    parser.add_option(
        "--unschedulable-grace",
        metavar="DURATION",
        help="how long a new pod may stay Unschedulable (default 2m)",
    )
    parser.add_option(
        "--log-lines",
        type=int,
        metavar="N",
        help="log lines of a failed container in the report (default 20)",
    )


def config_from_args(args: Any) -> Config:
    record = check_record_name(args.record) if args.record else None
    commit = args.commit or os.environ.get("COMMIT_SHA") or None
    if record and not commit:
        raise UsageError("--record needs --commit SHA (or GITOPS_COMMIT / COMMIT_SHA)")
    if args.notes and not commit:
        raise UsageError("--notes needs --commit SHA (or GITOPS_COMMIT / COMMIT_SHA)")
    if args.prune and not record:
        raise UsageError("--prune needs --record NAME (the inventory it prunes from)")
    if args.lock:
        check_record_name(args.lock, "--lock")
    timeout = parse_duration(args.timeout or DEFAULT_TIMEOUT, "--timeout")
    if timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: must be positive")
    rollback = Path(args.rollback_on_failure) if args.rollback_on_failure else None
    if rollback is not None and not rollback.exists():
        raise UsageError(f"--rollback-on-failure {rollback}: no such file or directory")
    rollback_timeout = (
        parse_duration(args.rollback_timeout, "--rollback-timeout")
        if args.rollback_timeout
        else None
    )
    if rollback_timeout is not None:
        if rollback is None:
            raise UsageError("--rollback-timeout only goes with --rollback-on-failure")
        if not 0 < rollback_timeout < timeout:
            raise UsageError(
                f"--rollback-timeout {args.rollback_timeout}: must be more than 0 and "
                f"less than --timeout ({format_seconds(timeout)}), which it is part of"
            )
    graces = fail_fast.Graces(
        persisting=parse_duration(args.failure_grace or "30s", "--failure-grace"),
        unschedulable=parse_duration(args.unschedulable_grace or "2m", "--unschedulable-grace"),
    )
    return Config(
        manifests=Path(args.manifests),
        namespace=args.namespace,
        timeout=timeout,
        lock=args.lock,
        lock_namespace=args.lock_namespace,
        lock_duration=args.lock_duration or 30,
        lock_timeout=parse_duration(args.lock_timeout, "--lock-timeout")
        if args.lock_timeout
        else None,
        record=record,
        commit=commit,
        prune=bool(args.prune),
        rollback_dir=rollback,
        allow_cluster_scoped=bool(args.allow_cluster_scoped),
        graces=graces,
        wait_load_balancer=bool(args.wait_load_balancer),
        log_lines=20 if args.log_lines is None else max(args.log_lines, 0),
        notes=args.notes,
        rollback_timeout=rollback_timeout,
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
    """Re-apply the last good manifests and wait for them until ``deadline`` (still exit 1)."""
    left = max(deadline - time.monotonic(), 0.0)
    say(f"rolling back: applying {config.rollback_dir} ({format_seconds(left)} left)")
    try:
        _, outcome = apply_and_wait(api, manifests, config, labels=labels, deadline=deadline)
    except (ManifestError, UsageError, ExternalError) as exc:
        say(f"rollback failed: {exc.message}")
        return {"status": "error", "error": exc.message}
    described = report_outcome(outcome, left)
    say(f"rollback {'complete' if outcome.status == 'rolled-out' else outcome.status}")
    return described


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


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    from steps.lib.kube_access import access_from_args

    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    config = config_from_args(args)
    access = access_from_args(args)
    manifests = load_manifests(config.manifests)
    rollback_manifests = (
        load_manifests(config.rollback_dir, "--rollback-on-failure")
        if config.rollback_dir is not None
        else None
    )
    result = rollout(config, access, manifests, rollback_manifests)
    if config.notes and config.commit:
        note_outcome(config.notes, config.commit, result)
    return result


def note_outcome(repo: str, commit: str, result: Mapping[str, Any]) -> None:
    """Record the verdict as a Git note; a failure to do so is only a warning."""
    from steps.lib.deploy_notes import record_outcome, verdict_of_rollout

    outcome, reason = verdict_of_rollout(result)
    try:
        record_outcome(repo, commit, outcome, reason, os.environ.get("BUILD_ID") or None)
    except StepError as exc:
        warn(f"--notes: could not record the outcome: {exc.message}")


def rollout(
    config: Config,
    access: Access,
    manifests: Sequence[Manifest],
    rollback_manifests: Sequence[Manifest] | None,
) -> dict[str, Any]:
    """Connect, lock, apply, wait, record; the result (exit_code 1 on failure)."""
    from steps.lib.kube_access import connect
    from steps.lib.live_record import read_live_record

    say(f"cluster: {access.describe()}")
    api = connect(access)
    namespace = config.namespace or api.default_namespace
    labels = inventory_labels(config.record) if config.record else {}
    result: dict[str, Any] = {"cluster": access.describe(), "namespace": namespace}
    started = time.monotonic()
    lock: LeaseLock | None = None
    with sigterm_as_interrupt():
        try:
            if config.lock:
                lock, waited = take_lock(api, config, namespace)
                result["lock"] = {"name": config.lock, "waited_seconds": round(waited, 3)}
            previous = (
                read_live_record(api, namespace, config.record)
                if config.record and config.prune
                else None
            )
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
    from steps.lib.live_record import write_live_record

    result: dict[str, Any] = {}
    if config.prune and config.record:
        result["pruned"] = prune(api, config.record, planned, previous)
    if config.record and config.commit:
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


def main(argv: Sequence[str] | None = None) -> int:
    settle_imports(argv)
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
