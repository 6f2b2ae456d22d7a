"""gitops-test: run the app's tests in an isolated environment and report them.

The flow: flags -> config -> which requirements (files, or the app's
pyproject.toml) -> a fresh virtual environment -> pip install (a failure names
the package and pip's reason) -> pytest, or ``--command`` -> JUnit XML ->
summary, counts and a verdict.

This module is the flags and what they mean. The work is in
``steps.lib.app_test_run`` (the processes) and ``steps.lib.app_test_report``
(everything that decides: pip's error, the JUnit report, unittest's output,
the verdict; pure functions over text), imported once the flags are parsed,
so that ``--help`` costs little more than starting Python.
"""

from __future__ import annotations

from collections.abc import Sequence

from steps.lib.cli import StepParser, StepRun, add_common_options, run_step, version_text
from steps.lib.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from steps.lib.app_test_run import Config

STEP = "test"
DEFAULT_JUNIT = "test-results/junit.xml"
DEFAULT_SLOWEST = 5

DESCRIPTION = """\
Install the app's requirements into a fresh virtual environment, run its tests
(pytest, or --command), write JUnit XML and summarise the results.

examples:
  gitops-test                                   # requirements.txt or pyproject.toml, then pytest
  gitops-test --workdir app --requirements app/requirements.txt -- -x -k smoke
  gitops-test --command 'python test_app.py -v' # unittest (its -v output is read)

requirements: the --requirements files; else WORKDIR/requirements.txt; else the
[project] dependencies (and --extra groups) of WORKDIR/pyproject.toml. pytest is
added from this step's own environment when the requirements do not bring it.

--command runs in WORKDIR with the environment's bin first on PATH and
GITOPS_JUNIT_XML set: a runner that writes JUnit XML there is read; otherwise
unittest's output is read; a command that reports no test fails unless
--allow-no-tests.

exit codes: 0 tests passed; 1 a test failed, or no test ran (without
--allow-no-tests); 2 bad flags or requirements that cannot be installed.
"""


def build_parser() -> StepParser:
    parser = StepParser(prog="gitops-test", description=DESCRIPTION)
    parser.add_option("--workdir", metavar="DIR", help="the app's directory (default: .)")
    parser.add_option(
        "--requirements",
        action="append",
        nargs="+",
        metavar="FILE",
        help="requirements files to install (repeatable; default: WORKDIR/requirements.txt)",
    )
    parser.add_option(
        "--extra",
        action="append",
        nargs="+",
        metavar="NAME",
        help="with pyproject.toml: also install these optional dependencies",
    )
    parser.add_option(
        "--junit-xml", metavar="PATH", help=f"JUnit XML report (default: {DEFAULT_JUNIT})"
    )
    parser.add_option(
        "--command", metavar="CMD", help="run this instead of pytest (split like a shell)"
    )
    parser.add_option(
        "--allow-no-tests", action="store_true", help="succeed when no test was collected"
    )
    parser.add_option(
        "--pip-cache-dir",
        metavar="DIR",
        help="pip's cache (a Cloud Build volume keeps it between steps; default: pip's)",
    )
    parser.add_option(
        "--venv",
        metavar="DIR",
        help="create (or reuse) the environment here and keep it (default: temporary)",
    )
    parser.add_option(
        "--python", metavar="PATH", help="interpreter for the environment (default: this one)"
    )
    parser.add_option(
        "--slowest",
        type=int,
        metavar="N",
        help=f"list the N slowest tests (default: {DEFAULT_SLOWEST}; 0: none)",
    )
    add_common_options(parser)
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument(
        "pytest_args", nargs="*", metavar="PYTEST_ARGS", help="arguments for pytest, after --"
    )
    return parser


def _flatten(groups: Sequence[Sequence[str]] | None) -> list[str]:
    return [item for group in groups or () for item in group]


def make_config(argv: Sequence[str] | None, step_run: StepRun) -> Config:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    import shlex  # after the flags: --help stays light
    import sys
    from pathlib import Path

    from steps.lib.app_test_run import Config, pyproject_requirements

    workdir = Path(args.workdir or ".")
    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir}: not a directory")
    command = tuple(shlex.split(args.command)) if args.command else None
    if args.command is not None and not command:
        raise UsageError("--command is empty")
    if command and args.pytest_args:
        raise UsageError("pytest arguments after -- do not go with --command")
    files = tuple(Path(name) for name in _flatten(args.requirements))
    for path in files:
        if not path.is_file():
            raise UsageError(f"--requirements {path}: no such file")
    extras = _flatten(args.extra)
    requirements: list[str] = []
    source: str | None = None
    if files:
        source = " ".join(map(str, files))
        if extras:
            raise UsageError("--extra only goes with pyproject.toml (no --requirements)")
    elif (workdir / "requirements.txt").is_file():
        files = (workdir / "requirements.txt",)
        source = str(files[0])
        if extras:
            raise UsageError("--extra only goes with pyproject.toml, not requirements.txt")
    elif (workdir / "pyproject.toml").is_file():
        requirements = pyproject_requirements(workdir / "pyproject.toml", extras)
        source = str(workdir / "pyproject.toml")
    elif extras:
        raise UsageError(f"--extra: {workdir} has no pyproject.toml")
    slowest = DEFAULT_SLOWEST if args.slowest is None else args.slowest
    if slowest < 0:
        raise UsageError("--slowest must be 0 or more")
    return Config(
        workdir=workdir,
        requirement_files=files,
        requirements=tuple(requirements),
        requirements_source=source,
        junit_xml=Path(args.junit_xml or DEFAULT_JUNIT),
        command=command,
        pytest_args=tuple(args.pytest_args),
        allow_no_tests=bool(args.allow_no_tests),
        pip_cache_dir=Path(args.pip_cache_dir) if args.pip_cache_dir else None,
        venv=Path(args.venv) if args.venv else None,
        python=args.python or sys.executable,
        slowest=slowest,
    )


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    config = make_config(argv, step_run)
    from steps.lib.app_test_run import run_tests  # the work: only after the flags

    return run_tests(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
