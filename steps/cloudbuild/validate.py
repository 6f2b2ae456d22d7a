"""``gitops-cloudbuild validate CONFIG``: check a config as Cloud Build would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from steps.cli import StepParser
from steps.cloudbuild import config
from steps.cloudbuild.substitutions import parse_pairs
from steps.errors import StepError, UsageError
from steps.output import say, warn

PROG = "gitops-cloudbuild validate"


def parser() -> StepParser:
    p = StepParser(PROG, "Check a cloudbuild.yaml as Cloud Build would before running it.")
    p.add_argument("config", metavar="CONFIG", help="the build config (YAML or JSON)")
    p.add_argument(
        "--substitutions",
        metavar="K=V,...",
        default="",
        help="substitutions as a trigger or gcloud --substitutions would pass them",
    )
    return p


def validate(path: Path, given: dict[str, str] | None = None) -> config.Report:
    """The report for one config file (pure apart from reading it)."""
    return config.check(config.load(path), given or {})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_step_args(argv)
        report = validate(Path(args.config), parse_pairs(args.substitutions))
    except StepError as exc:
        say(f"{PROG}: error: {exc.message}")
        return exc.exit_code
    for message in report.warnings:
        warn(f"{args.config}: {message}")
    for message in report.errors:
        say(f"{args.config}: {message}")
    if report.errors:
        count = len(report.errors)
        say(f"{PROG}: {args.config}: {count} error{'s' if count > 1 else ''}")
        return UsageError.exit_code
    say(f"{PROG}: {args.config}: OK")
    return 0
