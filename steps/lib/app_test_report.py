"""The test stage's reading of results, pure: JUnit XML and unittest's output
into a ``Report``, pip's output into the package at fault and why, and the
verdict with its summary. Every function here takes text and returns data;
``steps.lib.app_test_run`` runs the processes that produce the text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from steps.lib.errors import UsageError

FAILURE_LINES = 6


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
