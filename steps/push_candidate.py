"""gitops-push-candidate: record a deployment attempt on the env repo's candidate branch.

The flow: flags -> config -> fetch the branch tip (shallow) -> decide the new
subdirectory (mirror of --from, or --image edits) with a three-way merge
against what others pushed meanwhile -> commit -> push, retrying on a new tip.

This module is the flags and what they mean; the work is in
``steps.lib.candidate_push``, imported once the flags are parsed, so that
``--help`` costs little more than starting Python.
"""

from __future__ import annotations

from collections.abc import Sequence

from steps.lib.cli import StepParser, StepRun, add_common_options, run_step, version_text
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

    from steps.lib.candidate_push import Config
    from steps.lib.provenance import Provenance

STEP = "push-candidate"

DESCRIPTION = """\
Make SUBDIR of the candidate branch mirror DIR (or pin --image in it), commit
with provenance trailers and push, re-applying the change when others pushed
first.

examples:
  gitops-push-candidate --repo https://github.com/o/env --from out/manifests --path web
  gitops-push-candidate --repo git@github.com:o/env.git --path web \\
      --image us-docker.pkg.dev/p/r/web@sha256:...

environment:
  GIT_TOKEN, GIT_USERNAME      HTTPS token (user defaults to x-access-token)
  GIT_SSH_KEY, GIT_KNOWN_HOSTS SSH private key and known_hosts lines
  REPO_NAME, COMMIT_SHA, BUILD_ID  Cloud Build provenance for the trailers
"""


def build_parser() -> StepParser:
    parser = StepParser("gitops-push-candidate", DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_option("--repo", required=True, metavar="URL", help="env repo URL or local path")
    parser.add_option("--branch", metavar="BRANCH", help="branch to write (default: candidate)")
    parser.add_option(
        "--from", dest="source", metavar="DIR", help="directory that SUBDIR should mirror"
    )
    parser.add_option(
        "--image",
        nargs="+",
        action="append",
        metavar="REF",
        help="instead of --from: pin these images in SUBDIR in place (update-manifest forms)",
    )
    parser.add_option("--path", metavar="SUBDIR", help="subdirectory to write (default: root)")
    parser.add_option(
        "--base-branch",
        metavar="BRANCH",
        help="create a missing branch from this one if it exists (default: production; "
        "'' for none)",
    )
    parser.add_option(
        "--message", metavar="TEXT", help="commit subject (and body after a blank line)"
    )
    add_max_attempts(parser)
    parser.add_option("--author", metavar="'NAME <EMAIL>'", help="commit author")
    add_committer(parser)
    parser.add_option(
        "--allow-empty", action="store_true", help="commit even when nothing changes (redeploy)"
    )
    parser.add_option(
        "--allow-unmatched",
        action="store_true",
        help="with --image: accept images that match nothing in SUBDIR",
    )
    add_common_options(parser)
    return parser


def config_from_args(args: Namespace, provenance: Provenance) -> Config:
    from pathlib import Path

    from steps.lib.candidate_push import Config
    from steps.lib.git_inputs import parse_identity, parse_repo, validate_branch, validate_subpath

    location = parse_repo(args.repo)
    branch = validate_branch(args.branch or "candidate", "--branch")
    base_name = "production" if args.base_branch is None else args.base_branch
    base = validate_branch(base_name, "--base-branch") if base_name else None
    if base == branch:
        base = None
    images = tuple(spec for group in args.image or [] for spec in group)
    if bool(args.source) == bool(images):
        raise UsageError("give exactly one of --from DIR or --image REF...")
    source: Path | None = None
    if args.source:
        source = Path(args.source).resolve()
        if not source.is_dir():
            raise UsageError(f"--from {args.source}: not a directory")
    max_attempts = DEFAULT_MAX_ATTEMPTS if args.max_attempts is None else args.max_attempts
    if max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    committer = parse_identity(args.committer or DEFAULT_COMMITTER, "--committer", allow_root=False)
    author = parse_identity(args.author, "--author") if args.author else None
    return Config(
        location=location,
        branch=branch,
        base_branch=base,
        source=source,
        images=images,
        subdir=validate_subpath(args.path),
        message=args.message,
        max_attempts=max_attempts,
        author=author,
        committer=committer,
        allow_empty=bool(args.allow_empty),
        allow_unmatched=bool(args.allow_unmatched),
        provenance=provenance,
    )


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    from steps.lib.candidate_push import push_candidate  # the work: only after the flags
    from steps.lib.provenance import Provenance

    config = config_from_args(args, Provenance.from_env())
    return push_candidate(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
