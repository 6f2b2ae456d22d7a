"""The flags of the stages that push to the env repo (push-candidate, promote).

Light on purpose: a stage's ``--help`` imports this and not the Git plumbing.
The defaults are those of ``steps.lib.git_inputs`` and ``git_retry``, which push;
``tests/test_packaging.py`` checks that both say the same.
"""

from __future__ import annotations

from steps.lib.cli import StepParser

DEFAULT_COMMITTER = "gitops-steps bot <gitops-bot@gitops-steps.invalid>"
DEFAULT_MAX_ATTEMPTS = 10
CONTENTION_BUDGET = 300.0


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
