"""The test stage's work: the app's requirements (files, or its pyproject.toml)
in a fresh virtual environment, pytest or ``--command`` run in it, and the
result. ``steps/test_stage.py`` reads the flags into a ``Config``; what the
processes print is judged by ``steps.lib.app_test_report`` (pure).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.lib.app_test_report import (
    Case,
    Report,
    decide,
    explain_pip_failure,
    parse_junit,
    parse_unittest_output,
    render_junit,
    summary_lines,
)
from steps.lib.errors import UsageError
from steps.lib.output import say, warn

PYTEST_DISTRIBUTION = "pytest"


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


# --------------------------------------------------------------------------- requirements


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


def run_tests(config: Config) -> dict[str, Any]:
    """A fresh environment, the requirements, the tests; the result (exit 1 on a failure)."""
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
