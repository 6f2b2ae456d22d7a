"""gitops-verify-rollout: apply manifests to a cluster and know whether the rollout worked.

The flow: flags -> cluster access -> manifests read and checked -> plan
(order, namespaces, scope) -> lock -> server-side dry run of everything ->
server-side apply in dependency order -> watch until every object is rolled
out, one of the new revision's pods fails, or the timeout -> record, prune,
or roll back -> result.

This module reads the flags; ``steps.lib.rollout`` is the rollout itself. The
rules that decide are in ``steps.lib.rollout_rules`` (pure); ``rollout_watch``
only feeds them live objects from watches.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence

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
from steps.lib.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from steps.lib.rollout import Config


STEP = "verify-rollout"
DEFAULT_TIMEOUT = "10m"

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
    parser.add_option(
        "--from-branch",
        metavar="BRANCH",
        help="with --notes, --record and --lock: the branch --commit is on; a build that a "
        "newer live commit of it overtook applies nothing (superseded; see steps/lib/overtaken.py)",
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


def checked_name(name: str, flag: str) -> str:
    """A --record or --lock name that can name a ConfigMap or Lease (live_record's rule)."""
    from steps.lib.live_record import check_record_name

    return check_record_name(name, flag)


def config_from_args(args: Any) -> Config:
    from pathlib import Path

    from steps.lib.overtaken import from_branch
    from steps.lib.rollout import Config, format_seconds

    record = checked_name(args.record, "--record") if args.record else None
    commit = args.commit or os.environ.get("COMMIT_SHA") or None
    if record and not commit:
        raise UsageError("--record needs --commit SHA (or GITOPS_COMMIT / COMMIT_SHA)")
    if args.notes and not commit:
        raise UsageError("--notes needs --commit SHA (or GITOPS_COMMIT / COMMIT_SHA)")
    if args.prune and not record:
        raise UsageError("--prune needs --record NAME (the inventory it prunes from)")
    if args.lock:
        checked_name(args.lock, "--lock")
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
        failure_grace=parse_duration(args.failure_grace or "30s", "--failure-grace"),
        unschedulable_grace=parse_duration(
            args.unschedulable_grace or "2m", "--unschedulable-grace"
        ),
        wait_load_balancer=bool(args.wait_load_balancer),
        log_lines=20 if args.log_lines is None else max(args.log_lines, 0),
        notes=args.notes,
        rollback_timeout=rollback_timeout,
        from_branch=from_branch(args, record),
    )


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    # The work, only once the flags are parsed: --help stays light.
    from steps.lib.kube_access import access_from_args
    from steps.lib.rollout import rollout
    from steps.lib.rollout_plan import load_manifests

    settle_imports(argv)

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
        from steps.lib.deploy_notes import note_rollout

        note_rollout(config.notes, config.commit, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # No cyclic garbage collection until the apply is sent: start-up makes
        # objects that live to the end, and collecting them cost 3-4 ms before
        # every apply. The wait turns it back on (steps.lib.rollout.wait_for).
        gc.disable()
    code = run_step(STEP, lambda step_run: run(argv, step_run))
    if argv is None:
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """Exit as soon as the verdict is out, when run as a command.

    By then the lock is released and the result written; what is left is the
    interpreter's teardown (watch threads, every module's objects), which
    cost 5-6 ms on an idle machine and more under load after every rollout.
    """
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
