"""gitops-promote: make production's SUBDIR what it was at one candidate commit.

The flow: flags -> config -> find the commit on --from (deepening a shallow
fetch until it shows up) -> on production's current tip, decide promote,
rollback or unchanged -> commit with trailers -> push, retrying on a new tip.

This module is the flags and what they mean; the work is in
``steps.lib.promoter`` (Git and cluster) and ``steps.lib.promotion`` (the
decisions, pure), imported once the flags are parsed, so that ``--help``
costs little more than starting Python.
"""

from __future__ import annotations

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
from steps.lib.cluster_flags import add_access_options
from steps.lib.errors import UsageError
from steps.lib.push_flags import (
    DEFAULT_COMMITTER,
    DEFAULT_MAX_ATTEMPTS,
    add_committer,
    add_max_attempts,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

    from steps.lib.promotion import Config
    from steps.lib.provenance import Provenance

STEP = "promote"

DESCRIPTION = """\
Make SUBDIR of --to identical to SUBDIR at candidate commit --commit, and
record it as a promotion (or a rollback, when that commit is older than the
one production reflects now).

example:
  gitops-promote --repo https://github.com/o/env --commit $COMMIT_SHA --path web

With --require-live NAME, promote first reads the live record that
`gitops-verify-rollout --record NAME` wrote in the cluster: if a newer
candidate commit is live, the promotion is skipped (exit 0, "superseded"), and
if the commit is not live at all it is refused (exit 1), so production never
records something that is not running.

environment:
  GIT_TOKEN, GIT_USERNAME      HTTPS token (user defaults to x-access-token)
  GIT_SSH_KEY, GIT_KNOWN_HOSTS SSH private key and known_hosts lines
  COMMIT_SHA, BUILD_ID         Cloud Build built-ins (--commit defaults to COMMIT_SHA)
"""


def build_parser() -> StepParser:
    parser = StepParser("gitops-promote", DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_option("--repo", required=True, metavar="URL", help="env repo URL or local path")
    parser.add_option(
        "--commit", metavar="SHA", help="candidate commit to promote (default: $COMMIT_SHA)"
    )
    parser.add_option(
        "--from",
        dest="source_branch",
        metavar="BRANCH",
        help="branch the commit is on (default: candidate)",
    )
    parser.add_option(
        "--to", dest="target_branch", metavar="BRANCH", help="branch to write (default: production)"
    )
    parser.add_option("--path", metavar="SUBDIR", help="subdirectory to promote (default: root)")
    add_max_attempts(parser)
    add_committer(parser)
    parser.add_option(
        "--require-live",
        metavar="NAME",
        help="promote only if the live record NAME (verify-rollout --record) names this commit",
    )
    parser.add_option(
        "--namespace",
        metavar="NS",
        help="namespace of the live record (default: the kubeconfig context's)",
    )
    parser.add_option(
        "--require-promoted",
        action="store_true",
        help="--from is an earlier environment: the commit must be a promotion recorded there",
    )
    parser.add_option(
        "--min-soak",
        metavar="DURATION",
        help="with --require-promoted: time it must have been live on --from (e.g. 1h)",
    )
    parser.add_option(
        "--check-only",
        action="store_true",
        help="only check --require-promoted and --min-soak (before applying); write nothing",
    )
    add_access_options(parser)
    add_common_options(parser)
    return parser


def config_from_args(args: Namespace, provenance: Provenance) -> Config:
    from steps.lib.git_inputs import parse_identity, parse_repo, validate_branch, validate_subpath
    from steps.lib.kube_access import access_from_args
    from steps.lib.live_record import check_record_name
    from steps.lib.promotion import SHA, Config

    commit = args.commit or provenance.commit_sha
    if not commit:
        raise UsageError("--commit is required (or set GITOPS_COMMIT or COMMIT_SHA)")
    if not SHA.match(commit):
        raise UsageError(f"--commit {commit!r}: expected a commit SHA (7 to 64 hex digits)")
    source = validate_branch(args.source_branch or "candidate", "--from")
    target = validate_branch(args.target_branch or "production", "--to")
    if source == target:
        raise UsageError("--from and --to must be different branches")
    min_soak = parse_duration(args.min_soak, "--min-soak") if args.min_soak else 0.0
    if min_soak and not args.require_promoted:
        raise UsageError("--min-soak needs --require-promoted (soaking is on an environment)")
    if args.check_only and not args.require_promoted:
        raise UsageError("--check-only checks --require-promoted; give it")
    if args.check_only and args.require_live:
        raise UsageError("--check-only runs before the rollout: --require-live goes with promote")
    max_attempts = DEFAULT_MAX_ATTEMPTS if args.max_attempts is None else args.max_attempts
    if max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    return Config(
        location=parse_repo(args.repo),
        commit=commit.lower(),
        source_branch=source,
        target_branch=target,
        subdir=validate_subpath(args.path),
        max_attempts=max_attempts,
        committer=parse_identity(
            args.committer or DEFAULT_COMMITTER, "--committer", allow_root=False
        ),
        provenance=provenance,
        require_live=check_record_name(args.require_live, "--require-live")
        if args.require_live
        else None,
        namespace=args.namespace,
        access=access_from_args(args) if args.require_live else None,
        require_promoted=bool(args.require_promoted),
        min_soak=min_soak,
        check_only=bool(args.check_only),
    )


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    from steps.lib.promoter import promote  # the work: only after the flags
    from steps.lib.provenance import Provenance

    settle_imports(argv)
    return promote(config_from_args(args, Provenance.from_env()))


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
