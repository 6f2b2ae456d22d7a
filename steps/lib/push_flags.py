"""The flags of the stages that push to the env repo (push-candidate, promote).

Light on purpose: a stage's ``--help`` imports this and not the Git plumbing.
The defaults are defined here, once, and the Git plumbing that pushes
(``git_retry``, ``deploy_notes``) imports them from here.
"""

from __future__ import annotations

from steps.lib.cli import StepParser

DEFAULT_COMMITTER = "gitops-steps bot <gitops-bot@gitops-steps.invalid>"
DEFAULT_MAX_ATTEMPTS = 10
"""Failed attempts (network, server) before a git stage gives up."""
CONTENTION_BUDGET = 300.0
"""Seconds after its first attempt during which a writer that keeps losing the
race for a branch (others pushing first) still starts a new attempt."""


def add_max_attempts(parser: StepParser) -> None:
    parser.add_option(
        "--max-attempts",
        type=int,
        metavar="N",
        help="failed push attempts (network, server) before giving up; pushes that lose "
        f"the race to other writers are retried for up to {CONTENTION_BUDGET:g} s "
        f"(default: {DEFAULT_MAX_ATTEMPTS})",
    )


def add_committer(parser: StepParser) -> None:
    parser.add_option(
        "--committer",
        metavar="'NAME <EMAIL>'",
        help=f"bot identity committing, never root (default: {DEFAULT_COMMITTER})",
    )
