"""``gitops-cloudbuild validate CONFIG``: check a config as Cloud Build would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from steps.cloudbuild import config
from steps.cloudbuild.substitutions import parse_pairs
from steps.lib.cli import StepParser
from steps.lib.errors import StepError, UsageError
from steps.lib.output import say, warn

PROG = "gitops-cloudbuild validate"
STARTED_BY_HELP = (
    "how the build is started: 'trigger' (default; always ALLOW_LOOSE with "
    "dynamicSubstitutions, every built-in set) or 'submit' (gcloud builds submit: "
    "the config's own substitutionOption, only REPO_NAME, BRANCH_NAME, TAG_NAME, "
    "REVISION_ID, COMMIT_SHA, SHORT_SHA may be passed)"
)


def add_started_by(p: StepParser) -> None:
    p.add_argument(
        "--started-by", choices=config.STARTED_BY, default=config.TRIGGER, help=STARTED_BY_HELP
    )


def parser() -> StepParser:
    p = StepParser(PROG, "Check a cloudbuild.yaml as Cloud Build would before running it.")
    p.add_argument("config", metavar="CONFIG", help="the build config (YAML or JSON)")
    p.add_argument(
        "--substitutions",
        metavar="K=V,...",
        default="",
        help="substitutions as a trigger or gcloud --substitutions would pass them",
    )
    add_started_by(p)
    return p


def validate(
    path: Path, given: dict[str, str] | None = None, started_by: str = config.TRIGGER
) -> config.Report:
    """The report for one config file (pure apart from reading it)."""
    return config.check(config.load(path), given or {}, started_by=started_by)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_step_args(argv)
        report = validate(Path(args.config), parse_pairs(args.substitutions), args.started_by)
    except StepError as exc:
        say(f"{PROG}: error: {exc.message}")
        return exc.exit_code
    for message in report.warnings:
        warn(f"{args.config}: {message}")
    for message in report.errors:
        say(f"{args.config}: {message}")
    how = (
        "as a trigger starts it"
        if args.started_by == config.TRIGGER
        else "for gcloud builds submit"
    )
    if report.errors:
        count = len(report.errors)
        say(f"{PROG}: {args.config}: {count} error{'s' if count > 1 else ''} ({how})")
        return UsageError.exit_code
    say(f"{PROG}: {args.config}: OK ({how})")
    return 0
