"""gitops-test: run the app's tests in an isolated environment and report them.

The flow: flags -> config -> which requirements (files, or the app's
pyproject.toml) -> a fresh virtual environment -> pip install (a failure names
the package and pip's reason) -> pytest, or ``--command`` -> JUnit XML ->
summary, counts and a verdict.

Everything that decides (pip's error, the JUnit report, unittest's output, the
verdict) is a pure function over text; the processes run elsewhere.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.lib.cli import StepParser, StepRun, add_common_options, run_step, version_text
from steps.lib.errors import UsageError
from steps.lib.output import say, warn

STEP = "test"
DEFAULT_JUNIT = "test-results/junit.xml"
DEFAULT_SLOWEST = 5
FAILURE_LINES = 6
PYTEST_DISTRIBUTION = "pytest"

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


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Case:
    """One test's outcome: ``passed``, ``failed``, ``error`` or ``skipped``."""

    id: str
    outcome: str
    seconds: float | None = None
    message: str = ""
    details: str = ""

    def first_lines(self, count: int = FAILURE_LINES) -> list[str]:
        """The message, then pytest's ``E`` lines (or the details' first lines)."""
        details = [line.rstrip() for line in self.details.splitlines() if line.strip()]
        marked = [line[1:].strip() for line in details if line.startswith("E ")]
        lines: list[str] = []
        for line in [*self.message.splitlines(), *(marked or details)]:
            if line.strip() and line.rstrip() not in lines:
                lines.append(line.rstrip())
        return lines[:count]


@dataclass(frozen=True)
class Counts:
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, cases: Sequence[Case]) -> Counts:
        outcomes = [case.outcome for case in cases]
        return cls(
            tests=len(cases),
            passed=outcomes.count("passed"),
            failed=outcomes.count("failed"),
            errors=outcomes.count("error"),
            skipped=outcomes.count("skipped"),
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "tests": self.tests,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class Report:
    """What a test run reported: its cases, and counts (usually of the cases)."""

    cases: tuple[Case, ...] = ()
    counts: Counts = field(default_factory=Counts)

    @classmethod
    def of(cls, cases: Iterable[Case]) -> Report:
        listed = tuple(cases)
        return cls(listed, Counts.of(listed))

    @property
    def failures(self) -> list[Case]:
        return [case for case in self.cases if case.outcome in ("failed", "error")]

    def slowest(self, count: int) -> list[Case]:
        timed = [case for case in self.cases if case.seconds is not None]
        timed.sort(key=lambda case: case.seconds or 0.0, reverse=True)
        return timed[:count] if count > 0 else []


# --------------------------------------------------------------------------- JUnit XML


def parse_junit(text: str, source: str) -> Report:
    """The cases of a JUnit XML report (pytest's xunit1/xunit2 and most others)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UsageError(f"{source}: not JUnit XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise UsageError(f"{source}: not JUnit XML: root element <{root.tag}>")
    return Report.of(_junit_case(element) for element in root.iter("testcase"))


def _junit_case(element: ET.Element) -> Case:
    case_id = junit_case_id(
        element.get("classname", ""), element.get("name", ""), element.get("file")
    )
    seconds = _float_or_none(element.get("time"))
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        found = element.find(tag)
        if found is not None:
            return Case(
                case_id, outcome, seconds, found.get("message", ""), (found.text or "").strip()
            )
    return Case(case_id, "passed", seconds)


def junit_case_id(classname: str, name: str, file: str | None = None) -> str:
    """pytest's node id when the report says which file (xunit1), else class.name."""
    if file and file.endswith(".py"):
        module = file[: -len(".py")].replace("/", ".").replace("\\", ".")
        rest = classname[len(module) :].lstrip(".") if classname.startswith(module) else ""
        return "::".join(part for part in (file, rest.replace(".", "::"), name) if part)
    return f"{classname}::{name}" if classname else name


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def render_junit(report: Report, suite: str) -> str:
    """JUnit XML for a report that did not come as JUnit XML (unittest, a command)."""
    counts = report.counts
    root = ET.Element(
        "testsuites",
        {
            "tests": str(counts.tests),
            "failures": str(counts.failed),
            "errors": str(counts.errors),
            "skipped": str(counts.skipped),
        },
    )
    suite_element = ET.SubElement(
        root,
        "testsuite",
        {
            "name": suite,
            "tests": str(counts.tests),
            "failures": str(counts.failed),
            "errors": str(counts.errors),
            "skipped": str(counts.skipped),
        },
    )
    for case in report.cases:
        classname, _, name = case.id.rpartition(".")
        attributes = {"classname": classname, "name": name or case.id}
        if case.seconds is not None:
            attributes["time"] = f"{case.seconds:.3f}"
        element = ET.SubElement(suite_element, "testcase", attributes)
        tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(case.outcome)
        if tag:
            child = ET.SubElement(element, tag, {"message": case.message})
            child.text = case.details or None
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# --------------------------------------------------------------------------- unittest output

_RULE_EQ = "=" * 70
_RULE_DASH = "-" * 70
_UNITTEST_TEST = re.compile(r"^(?P<name>[A-Za-z_]\w*) \((?P<where>[\w.]+)\)")
_UNITTEST_HEADER = re.compile(
    r"^(?P<kind>FAIL|ERROR): (?P<name>[A-Za-z_]\w*) \((?P<where>[\w.]+)\)"
)
_UNITTEST_RAN = re.compile(r"^Ran (?P<count>\d+) tests? in (?P<seconds>[\d.]+)s$")
_UNITTEST_TOTALS = re.compile(r"^(?:OK|FAILED)(?: \((?P<details>[^)]*)\))?$")
_UNITTEST_OUTCOMES = {
    "ok": "passed",
    "FAIL": "failed",
    "ERROR": "error",
    "expected failure": "passed",
    "unexpected success": "failed",
}


def _unittest_outcome(text: str) -> str | None:
    text = text.strip()
    if text.startswith("skipped"):
        return "skipped"
    return _UNITTEST_OUTCOMES.get(text)


def _unittest_id(name: str, where: str) -> str:
    """``module.Class.test`` (Python 3.11 prints it whole; older ones print the class)."""
    return where if where.endswith("." + name) else f"{where}.{name}"


def parse_unittest_output(text: str) -> Report | None:
    """What unittest printed (verbose or not), or None when it is not unittest's output."""
    lines = text.splitlines()
    ran = next((m for m in map(_UNITTEST_RAN.match, lines) if m), None)
    if ran is None:
        return None
    named = _unittest_failures(lines)
    cases: dict[str, Case] = {}
    pending: str | None = None
    for line in lines:
        if line in (_RULE_EQ, _RULE_DASH):
            break
        found = _UNITTEST_TEST.match(line)
        if found:
            pending = _unittest_id(found.group("name"), found.group("where"))
        if pending is None:
            continue
        candidate = line.rpartition(" ... ")[2] if " ... " in line else line
        outcome = _unittest_outcome(candidate)
        if outcome is None:
            continue
        _, message, detail = named.get(pending, ("", "", ""))
        if outcome == "skipped":
            message = candidate.strip().removeprefix("skipped").strip().strip("'\"")
        cases[pending] = Case(pending, outcome, None, message, detail)
        pending = None
    if cases:
        return Report.of(cases.values())
    # Not verbose: only the failures are named; the totals come from the last lines.
    failures = [
        Case(case_id, kind, None, message, detail)
        for case_id, (kind, message, detail) in named.items()
    ]
    totals = _unittest_totals(lines)
    total = int(ran.group("count"))
    skipped = totals.get("skipped", 0)
    failed = totals.get("failures", 0) + totals.get("unexpected successes", 0)
    errors = totals.get("errors", 0)
    counts = Counts(
        tests=total,
        passed=max(total - failed - errors - skipped, 0),
        failed=failed,
        errors=errors,
        skipped=skipped,
    )
    return Report(tuple(failures), counts)


def _unittest_failures(lines: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """``FAIL: name (where)`` blocks: test id -> (outcome, last traceback line, traceback)."""
    blocks: dict[str, tuple[str, str, str]] = {}
    index = 0
    while index < len(lines):
        header = _UNITTEST_HEADER.match(lines[index])
        if header is None or index == 0 or lines[index - 1] != _RULE_EQ:
            index += 1
            continue
        case_id = _unittest_id(header.group("name"), header.group("where"))
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index] != _RULE_DASH:
            index += 1  # docstring line(s) between the header and the rule
        index += 1
        while index < len(lines) and lines[index] not in (_RULE_EQ, _RULE_DASH):
            body.append(lines[index])
            index += 1
        detail = "\n".join(body).strip()
        last = next((line for line in reversed(body) if line.strip()), "")
        outcome = "failed" if header.group("kind") == "FAIL" else "error"
        blocks.setdefault(case_id, (outcome, last.strip(), detail))
    return blocks


def _unittest_totals(lines: Sequence[str]) -> dict[str, int]:
    for line in reversed(lines):
        found = _UNITTEST_TOTALS.match(line.strip())
        if found:
            totals: dict[str, int] = {}
            for part in (found.group("details") or "").split(","):
                key, _, value = part.strip().partition("=")
                if value.isdigit():
                    totals[key] = int(value)
            return totals
    return {}


# --------------------------------------------------------------------------- pip


@dataclass(frozen=True)
class PipFailure:
    package: str
    reason: str

    def describe(self) -> str:
        return f"cannot install the requirements: {self.package}: {self.reason}"


_PIP_SUBJECT = re.compile(r"^(?:Collecting|Processing|Obtaining) (?P<what>\S+)")
_PIP_FROM_LINE = re.compile(r"\((?P<where>from line \d+ of [^)]+)\)")


def explain_pip_failure(output: str) -> PipFailure:
    """The package pip could not install and why, from pip's own output."""
    lines = [line.rstrip() for line in output.splitlines()]
    subject = "?"
    for index, line in enumerate(lines):
        found = _PIP_SUBJECT.match(line.strip())
        if found:
            subject = found.group("what")
        if line.startswith("ERROR: "):
            return _pip_error(line[len("ERROR: ") :], lines[index + 1 :], subject)
        if line.strip().startswith("\u00d7 ") and "did not run successfully" in line:
            return PipFailure(subject, f"building it failed: {line.strip()[2:]}")
    tail = [line for line in lines if line.strip()][-1:] or ["pip failed"]
    return PipFailure(subject, tail[0].strip())


def _pip_error(message: str, following: Sequence[str], subject: str) -> PipFailure:
    context = "\n".join(following[:8])
    where = _PIP_FROM_LINE.search(context)
    hint = next((line.strip() for line in following[:6] if line.startswith("Hint: ")), "")
    suffix = "".join(f" ({part})" for part in (where and where.group("where"), hint) if part)

    invalid = re.match(r"Invalid requirement: '(?P<req>[^']*)': (?P<why>.*)", message)
    if invalid:
        return PipFailure(
            invalid.group("req"), f"invalid requirement: {invalid.group('why')}{suffix}"
        )
    missing = re.match(
        r"Could not find a version that satisfies the requirement (?P<req>\S+)(?P<rest>.*)", message
    )
    if missing:
        versions = missing.group("rest").strip()
        return PipFailure(
            missing.group("req"), f"no version satisfies it {versions}".strip() + suffix
        )
    no_match = re.match(r"No matching distribution found for (?P<req>\S+)", message)
    if no_match:
        return PipFailure(no_match.group("req"), "no matching distribution found" + suffix)
    conflict = re.match(r"Cannot install (?P<reqs>.+?) because", message)
    if conflict:
        cause = [line.strip() for line in following if line.strip()][:6]
        return PipFailure(conflict.group("reqs"), " ".join([message, *cause]))
    return PipFailure(subject, message + suffix)


def pyproject_requirements(path: Path, extras: Sequence[str]) -> list[str]:
    """The ``[project]`` dependencies of a pyproject.toml, with the chosen extras."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return requirements_of_project(str(path), data, extras)


def requirements_of_project(
    source: str, data: Mapping[str, Any], extras: Sequence[str]
) -> list[str]:
    project = data.get("project")
    if not isinstance(project, dict):
        if extras:
            raise UsageError(f"{source}: no [project] table, so no --extra {extras[0]}")
        return []
    if "dependencies" in project.get("dynamic", []):
        raise UsageError(f"{source}: dependencies are dynamic; pass --requirements FILE")
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            known = ", ".join(sorted(optional)) or "none"
            raise UsageError(f"--extra {extra}: not in {source} (optional dependencies: {known})")
        requirements.extend(optional[extra])
    return [str(item) for item in requirements]


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    status: str  # passed | failed | no-tests
    exit_code: int
    message: str


def decide(report: Report, *, runner: str, runner_exit: int, allow_no_tests: bool) -> Verdict:
    """Passed, failed or no tests, from the report and the runner's exit status."""
    counts = report.counts
    bad = counts.failed + counts.errors
    if bad:
        return Verdict("failed", 1, f"{bad} of {counts.tests} test(s) failed")
    ok_exits = {0, 5} if runner == "pytest" else {0}
    if runner_exit not in ok_exits:
        return Verdict("failed", 1, f"{runner} exited with status {runner_exit}")
    if counts.tests == 0:
        if allow_no_tests:
            return Verdict("no-tests", 0, "no test was collected (allowed by --allow-no-tests)")
        return Verdict(
            "no-tests",
            1,
            "no test was collected: check the test paths, or pass --allow-no-tests",
        )
    return Verdict("passed", 0, f"{counts.passed} test(s) passed")


def summary_lines(report: Report, seconds: float, slowest: int) -> list[str]:
    counts = report.counts
    lines = [
        f"{counts.passed} passed, {counts.failed} failed, {counts.errors} errors, "
        f"{counts.skipped} skipped in {seconds:.2f}s"
    ]
    slow = report.slowest(slowest)
    if slow:
        lines.append(f"slowest {len(slow)}:")
        lines += [f"  {case.seconds or 0.0:7.2f}s {case.id}" for case in slow]
    for case in report.failures:
        lines.append(f"{case.outcome.upper()} {case.id}")
        lines += [f"    {line}" for line in case.first_lines()]
    return lines


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    workdir: Path
    requirement_files: tuple[Path, ...]
    requirements: tuple[str, ...]  # from pyproject.toml
    requirements_source: str | None
    junit_xml: Path
    command: tuple[str, ...] | None
    pytest_args: tuple[str, ...]
    allow_no_tests: bool
    pip_cache_dir: Path | None
    venv: Path | None
    python: str
    slowest: int


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


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Environment:
    root: Path
    python: Path
    purelib: Path


def create_environment(root: Path, python: str) -> Environment:
    """A virtual environment without pip (pip runs from this step, pointed at it)."""
    bin_python = root / "bin" / "python"
    if not bin_python.exists():
        say(f"creating a virtual environment in {root}")
        proc = subprocess.run(
            [python, "-m", "venv", "--without-pip", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise UsageError(
                f"--python {python}: cannot create a virtual environment: "
                + (proc.stderr.strip().splitlines() or ["?"])[-1]
            )
    proc = subprocess.run(
        [str(bin_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Environment(root, bin_python, Path(proc.stdout.strip()))


def pip_install(env: Environment, config: Config) -> None:
    targets: list[str] = []
    for path in config.requirement_files:
        targets += ["-r", str(path.resolve())]
    targets += list(config.requirements)
    if not targets:
        say("no requirements to install")
        return
    say(f"installing requirements from {config.requirements_source}")
    argv = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(env.python),
        "install",
        "--disable-pip-version-check",
        "--no-input",
        *targets,
    ]
    child_env = dict(os.environ)
    if config.pip_cache_dir is not None:
        child_env["PIP_CACHE_DIR"] = str(config.pip_cache_dir.resolve())
    exit_code, output = run_teed(argv, cwd=config.workdir, env=child_env, prefix="pip: ")
    if exit_code != 0:
        raise UsageError(explain_pip_failure(output).describe())


def has_module(env: Environment, module: str) -> bool:
    proc = subprocess.run(
        [str(env.python), "-c", f"import {module}"], capture_output=True, check=False
    )
    return proc.returncode == 0


def seed_pytest(env: Environment) -> None:
    """Copy this step's own pytest (pure Python) into the environment, offline."""
    if has_module(env, "pytest"):
        return
    from importlib import metadata

    try:
        names = distribution_closure(PYTEST_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise UsageError(
            f"pytest is not in the requirements and not installed with gitops-test ({exc})"
        ) from None
    say(f"adding {', '.join(sorted(names))} to the environment (not in the requirements)")
    for name in sorted(names):
        dist = metadata.distribution(name)
        for entry in dist.files or ():
            relative = Path(str(entry))
            if relative.parts[0] == ".." or "__pycache__" in relative.parts:
                continue
            source = Path(str(dist.locate_file(entry)))
            if source.is_file():
                target = env.purelib / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def distribution_closure(name: str) -> set[str]:
    """A distribution and everything it requires here (markers evaluated here)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    queue = [name]
    while queue:
        current = canonicalize_name(queue.pop())
        if current in seen:
            continue
        seen.add(current)
        for text in metadata.distribution(current).requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(requirement.name)
    return seen


def run_teed(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], prefix: str = ""
) -> tuple[int, str]:
    """Run a process, echoing its output to stderr as it comes; return status and output."""
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror}") from None
    collected: list[str] = []
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            collected.append(line)
            sys.stderr.write(prefix + line)
            sys.stderr.flush()
    return proc.wait(), "".join(collected)


def child_environment(env: Environment, junit: Path) -> dict[str, str]:
    child = dict(os.environ)
    child.pop("PYTHONHOME", None)
    child["VIRTUAL_ENV"] = str(env.root)
    child["PATH"] = os.pathsep.join([str(env.root / "bin"), child.get("PATH", os.defpath)])
    child["GITOPS_JUNIT_XML"] = str(junit)
    return child


def run_pytest(env: Environment, config: Config, junit: Path) -> tuple[int, Report | None]:
    argv = [
        str(env.python),
        "-m",
        "pytest",
        f"--junit-xml={junit}",
        "-o",
        "junit_family=xunit1",
        *config.pytest_args,
    ]
    say("running: " + shlex.join(["pytest", *argv[3:]]))
    exit_code, output = run_teed(argv, cwd=config.workdir, env=child_environment(env, junit))
    if exit_code == 4:
        last = [line for line in output.splitlines() if line.strip()][-1:] or ["?"]
        raise UsageError(f"pytest rejected its arguments: {last[0].strip()}")
    if not junit.is_file():
        return exit_code, None
    return exit_code, parse_junit(junit.read_text(encoding="utf-8"), str(junit))


def run_command(env: Environment, config: Config, junit: Path) -> tuple[int, Report | None, str]:
    assert config.command is not None
    say("running: " + shlex.join(config.command))
    exit_code, output = run_teed(
        config.command, cwd=config.workdir, env=child_environment(env, junit)
    )
    if junit.is_file():
        return exit_code, parse_junit(junit.read_text(encoding="utf-8"), str(junit)), "junit"
    report = parse_unittest_output(output)
    if report is not None:
        return exit_code, report, "unittest"
    if exit_code != 0:
        tail = "\n".join(output.splitlines()[-20:])
        case = Case(shlex.join(config.command), "failed", None, f"exit status {exit_code}", tail)
        return exit_code, Report.of([case]), "exit-status"
    return exit_code, None, "none"


# --------------------------------------------------------------------------- the stage


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    config = make_config(argv, step_run)
    junit = config.junit_xml.resolve()
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)  # a report left by an earlier run must not be read
    temporary = None if config.venv else Path(tempfile.mkdtemp(prefix="gitops-test-venv-"))
    started = time.monotonic()
    try:
        env = create_environment((config.venv or temporary or Path()).resolve(), config.python)
        pip_install(env, config)
        runner = "command" if config.command else "pytest"
        if config.command:
            exit_code, report, source = run_command(env, config, junit)
        else:
            seed_pytest(env)
            exit_code, report = run_pytest(env, config, junit)
            source = "junit"
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    seconds = time.monotonic() - started
    if report is None:
        report = Report()
        if runner == "pytest" and exit_code not in (0, 5):
            warn(f"pytest exited with status {exit_code} and wrote no JUnit XML")
        elif runner == "command":
            warn(
                "the command wrote no JUnit XML to $GITOPS_JUNIT_XML "
                "and printed no unittest results"
            )
    if source != "junit" or not junit.is_file():
        junit.write_text(render_junit(report, "gitops-test"), encoding="utf-8")
    verdict = decide(
        report, runner=runner, runner_exit=exit_code, allow_no_tests=config.allow_no_tests
    )
    for line in summary_lines(report, seconds, config.slowest):
        say(line)
    say(f"{verdict.status}: {verdict.message} (JUnit XML: {config.junit_xml})")
    return {
        "status": verdict.status,
        "exit_code": verdict.exit_code,
        "message": verdict.message,
        "runner": runner,
        "results_from": source,
        **report.counts.as_dict(),
        "seconds": round(seconds, 3),
        "junit_xml": str(config.junit_xml),
        "failures": [
            {"id": case.id, "outcome": case.outcome, "message": "\n".join(case.first_lines(3))}
            for case in report.failures
        ],
        "slowest": [
            {"id": case.id, "seconds": case.seconds} for case in report.slowest(config.slowest)
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
