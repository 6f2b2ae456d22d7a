"""gitops-test: real virtual environments, real pip, real pytest, on small apps.

Requirements come from local wheels built here, so no test needs the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from steps.lib.app_test_report import (
    Case,
    Counts,
    Report,
    decide,
    explain_pip_failure,
    junit_case_id,
    parse_junit,
    parse_unittest_output,
    render_junit,
    summary_lines,
)
from steps.lib.app_test_run import requirements_of_project
from steps.lib.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "app"


# --------------------------------------------------------------------------- helpers


def run_stage(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, Any]]:
    result_file = cwd / "result.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITOPS_")}
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "steps.test_stage", "--result-file", str(result_file), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return proc.returncode, proc.stderr, result


def write_app(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def make_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel, so pip installs a real package offline."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_source,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


GREETLIB = 'def shout(text):\n    return text.upper() + "!"\n'
USES_GREETLIB = """
    from greetlib import shout

    def test_shout():
        assert shout("hi") == "HI!"
"""


# --------------------------------------------------------------------------- end to end


def test_example_app_passes(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    code, err, result = run_stage(tmp_path, "--workdir", "app")
    assert code == 0, err
    assert result["status"] == "passed"
    assert (result["tests"], result["passed"], result["failed"]) == (2, 2, 0)
    junit = tmp_path / "test-results" / "junit.xml"
    report = parse_junit(junit.read_text(), str(junit))
    assert {case.id for case in report.cases} == {
        "test_app.py::test_greeting_default",
        "test_app.py::test_greeting_name",
    }
    assert "2 passed, 0 failed, 0 errors, 0 skipped" in err
    assert "slowest 2:" in err


def test_failing_test_exits_1_naming_it(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        {
            "test_math.py": """
                import pytest

                def test_ok():
                    assert 1 + 1 == 2

                def test_wrong():
                    assert 1 + 1 == 3, "arithmetic is broken"

                @pytest.mark.skip(reason="later")
                def test_later():
                    pass
            """
        },
    )
    code, err, result = run_stage(tmp_path, "--junit-xml", "reports/unit.xml")
    assert code == 1, err
    assert result["status"] == "failed"
    counts = {k: result[k] for k in ("tests", "passed", "failed", "errors", "skipped")}
    assert counts == {"tests": 3, "passed": 1, "failed": 1, "errors": 0, "skipped": 1}
    assert result["failures"][0]["id"] == "test_math.py::test_wrong"
    assert "arithmetic is broken" in result["failures"][0]["message"]
    assert "FAILED test_math.py::test_wrong" in err
    assert "    AssertionError: arithmetic is broken" in err
    assert (tmp_path / "reports" / "unit.xml").is_file()


def test_collection_error_is_a_failure(tmp_path: Path) -> None:
    write_app(tmp_path, {"test_broken.py": "import nowhere_to_be_found\n"})
    code, err, result = run_stage(tmp_path)
    assert code == 1, err
    assert result["errors"] == 1
    assert "nowhere_to_be_found" in result["failures"][0]["message"]


def test_no_tests_fails_unless_allowed(tmp_path: Path) -> None:
    write_app(tmp_path, {"app.py": "X = 1\n"})
    code, err, result = run_stage(tmp_path)
    assert code == 1
    assert result["status"] == "no-tests"
    assert "--allow-no-tests" in err
    code, err, result = run_stage(tmp_path, env={"GITOPS_ALLOW_NO_TESTS": "true"})
    assert code == 0, err
    assert result["status"] == "no-tests"
    assert result["tests"] == 0


def test_pytest_arguments_after_double_dash(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "app")
    code, err, result = run_stage(tmp_path, "--workdir", "app", "--", "-k", "name")
    assert code == 0, err
    assert result["tests"] == 1


def test_requirements_installed_in_an_isolated_environment(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "greetlib", "1.0", GREETLIB)
    write_app(
        tmp_path / "app",
        {
            "requirements.txt": f"{wheel}\n",
            "test_it.py": USES_GREETLIB,
            # PyYAML is installed with gitops-steps but not required by the app:
            # the app's environment must not see it.
            "test_isolated.py": """
                import importlib.util

                def test_step_packages_are_not_visible():
                    assert importlib.util.find_spec("yaml") is None
                    assert importlib.util.find_spec("steps") is None
            """,
        },
    )
    cache = tmp_path / "pip-cache"
    code, err, result = run_stage(
        tmp_path, "--workdir", "app", "--pip-cache-dir", str(cache), "--venv", "env"
    )
    assert code == 0, err
    assert result["passed"] == 2
    assert "installing requirements from app/requirements.txt" in err
    assert (tmp_path / "env" / "bin" / "python").exists()
    # A kept environment is reused: the second run installs into it again, quickly.
    code, err, result = run_stage(tmp_path, "--workdir", "app", "--venv", "env")
    assert code == 0, err
    assert "creating a virtual environment" not in err


def test_dependencies_from_pyproject_with_extras(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "greetlib", "1.0", GREETLIB)
    write_app(
        tmp_path,
        {
            "pyproject.toml": f"""
                [project]
                name = "demo"
                version = "1"
                dependencies = []
                [project.optional-dependencies]
                test = ["greetlib @ {wheel.as_uri()}"]
            """,
            "test_it.py": USES_GREETLIB,
        },
    )
    code, err, _ = run_stage(tmp_path)
    assert code == 1  # without the extra, greetlib is missing
    code, err, result = run_stage(tmp_path, "--extra", "test")
    assert code == 0, err
    assert result["passed"] == 1


@pytest.mark.parametrize(
    ("requirement", "package", "reason"),
    [
        ("requests==>1", "requests==>1", "invalid requirement"),
        ("./no-such-directory", "./no-such-directory", "does not exist"),
        ("greetlib[oops", "greetlib[oops", "invalid requirement"),
    ],
)
def test_requirements_that_cannot_be_installed_exit_2(
    tmp_path: Path, requirement: str, package: str, reason: str
) -> None:
    write_app(
        tmp_path, {"requirements.txt": f"{requirement}\n", "test_x.py": "def test_x(): pass\n"}
    )
    code, err, result = run_stage(tmp_path)
    assert code == 2, err
    assert result["status"] == "error"
    assert f"cannot install the requirements: {package}: " in result["error"]
    assert reason in result["error"]
    assert "from line 1 of" in result["error"]
    assert "Traceback" not in err


def test_missing_local_wheel_exits_2(tmp_path: Path) -> None:
    write_app(tmp_path, {"requirements.txt": f"{tmp_path / 'gone' / 'x-1.0-py3-none-any.whl'}\n"})
    code, err, result = run_stage(tmp_path)
    assert code == 2, err
    assert "x-1.0-py3-none-any.whl" in result["error"]


def test_unittest_command_output_is_read(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        {
            "test_u.py": """
                import unittest

                class T(unittest.TestCase):
                    def test_a(self):
                        '''Has a docstring.'''
                        print("noise")

                    def test_b(self):
                        self.assertEqual(1, 2)

                    @unittest.skip("later")
                    def test_c(self):
                        pass

                if __name__ == "__main__":
                    unittest.main()
            """
        },
    )
    code, err, result = run_stage(tmp_path, "--command", "python test_u.py -v")
    assert code == 1, err
    assert result["results_from"] == "unittest"
    assert (result["tests"], result["passed"], result["failed"], result["skipped"]) == (3, 1, 1, 1)
    assert result["failures"][0]["id"] == "__main__.T.test_b"
    report = parse_junit((tmp_path / "test-results" / "junit.xml").read_text(), "junit")
    assert report.counts == Counts(tests=3, passed=1, failed=1, errors=0, skipped=1)


def test_command_that_writes_junit_is_read(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        {
            "req.txt": "",
            "runner.py": """
                import os, pathlib
                pathlib.Path(os.environ["GITOPS_JUNIT_XML"]).write_text(
                    '<testsuite><testcase classname="c" name="n" time="1.5"/></testsuite>'
                )
            """,
        },
    )
    code, err, result = run_stage(
        tmp_path, "--requirements", "req.txt", "--command", "python runner.py"
    )
    assert code == 0, err
    assert result["results_from"] == "junit"
    assert result["slowest"] == [{"id": "c::n", "seconds": 1.5}]


def test_command_without_results(tmp_path: Path) -> None:
    code, _, result = run_stage(tmp_path, "--command", "python -c pass")
    assert code == 1
    assert result["status"] == "no-tests"
    code, _, result = run_stage(tmp_path, "--command", "python -c pass", "--allow-no-tests")
    assert code == 0
    code, _, result = run_stage(
        tmp_path, "--command", "python -c 'raise SystemExit(3)'", "--allow-no-tests"
    )
    assert code == 1
    assert result["failed"] == 1
    assert "exit status 3" in result["failures"][0]["message"]


def test_usage_errors(tmp_path: Path) -> None:
    code, err, _ = run_stage(tmp_path, "--workdir", "missing")
    assert code == 2 and "--workdir missing: not a directory" in err
    code, err, _ = run_stage(tmp_path, "--command", "true", "--", "-x")
    assert code == 2 and "do not go with --command" in err
    code, err, _ = run_stage(tmp_path, "--requirements", "nope.txt")
    assert code == 2 and "--requirements nope.txt: no such file" in err
    write_app(tmp_path, {"test_x.py": "def test_x(): pass\n"})
    code, err, _ = run_stage(tmp_path, "--", "--no-such-pytest-option")
    assert code == 2 and "pytest rejected its arguments" in err


def test_builder_output_holds_the_counts(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "app")
    out = tmp_path / "builder"
    out.mkdir()
    code, err, _ = run_stage(tmp_path, "--workdir", "app", env={"BUILDER_OUTPUT": str(out)})
    assert code == 0, err
    compact = json.loads((out / "output").read_text())
    assert compact["step"] == "test" and compact["passed"] == 2


def test_help_is_light() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from steps import test_stage\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        test_stage.main(['--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0\n"
        "assert 'GITOPS_PIP_CACHE_DIR' in buf.getvalue()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('git', 'kubernetes',"
        " 'google', 'yaml')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("classname", "name", "file", "expected"),
    [
        ("test_app", "test_x", "test_app.py", "test_app.py::test_x"),
        ("tests.test_app.TestX", "test_y", "tests/test_app.py", "tests/test_app.py::TestX::test_y"),
        ("tests.test_app", "test_p[1-2]", "tests/test_app.py", "tests/test_app.py::test_p[1-2]"),
        ("pkg.Suite", "case", None, "pkg.Suite::case"),
        ("", "lonely", None, "lonely"),
    ],
)
def test_junit_case_ids(classname: str, name: str, file: str | None, expected: str) -> None:
    assert junit_case_id(classname, name, file) == expected


def test_parse_junit_outcomes_and_round_trip() -> None:
    xml = """<?xml version="1.0"?>
    <testsuites><testsuite>
      <testcase classname="m" name="a" time="0.5"/>
      <testcase classname="m" name="b" time="2">
        <failure message="assert 1 == 2&#10;more">trace</failure></testcase>
      <testcase classname="m" name="c"><error message="">setup broke
    second line</error></testcase>
      <testcase classname="m" name="d"><skipped message="later"/></testcase>
    </testsuite></testsuites>"""
    report = parse_junit(xml, "x.xml")
    assert report.counts == Counts(tests=4, passed=1, failed=1, errors=1, skipped=1)
    assert [case.id for case in report.slowest(1)] == ["m::b"]
    assert report.failures[0].first_lines() == ["assert 1 == 2", "more", "trace"]
    assert report.failures[1].first_lines() == ["setup broke", "    second line"]
    again = parse_junit(render_junit(report, "s"), "again")
    assert again.counts == report.counts
    lines = summary_lines(report, 2.5, 5)
    assert lines[0] == "1 passed, 1 failed, 1 errors, 1 skipped in 2.50s"
    assert "FAILED m::b" in lines and "ERROR m::c" in lines


def test_parse_junit_rejects_other_files() -> None:
    with pytest.raises(UsageError, match="not JUnit XML"):
        parse_junit("<html/>", "x.xml")
    with pytest.raises(UsageError, match="not JUnit XML"):
        parse_junit("not xml", "x.xml")


def test_parse_unittest_output_quiet() -> None:
    output = textwrap.dedent(
        """\
        .F.s
        ======================================================================
        FAIL: test_b (pkg.test_mod.T.test_b)
        ----------------------------------------------------------------------
        Traceback (most recent call last):
          File "x.py", line 3, in test_b
        AssertionError: 1 != 2

        ----------------------------------------------------------------------
        Ran 4 tests in 0.002s

        FAILED (failures=1, skipped=1)
        """
    )
    report = parse_unittest_output(output)
    assert report is not None
    assert report.counts == Counts(tests=4, passed=2, failed=1, errors=0, skipped=1)
    assert report.failures[0].id == "pkg.test_mod.T.test_b"
    assert report.failures[0].message == "AssertionError: 1 != 2"


def test_parse_unittest_output_older_python_and_none() -> None:
    report = parse_unittest_output(
        "test_a (mod.T) ... ok\ntest_b (mod.T) ... skipped 'x'\n\n"
        + "-" * 70
        + "\nRan 2 tests in 0.0s\n\nOK (skipped=1)\n"
    )
    assert report is not None
    assert [(c.id, c.outcome) for c in report.cases] == [
        ("mod.T.test_a", "passed"),
        ("mod.T.test_b", "skipped"),
    ]
    assert parse_unittest_output("all good\n") is None


@pytest.mark.parametrize(
    ("output", "package", "reason"),
    [
        (
            "Collecting nosuchpkg-xyz\nERROR: Could not find a version that satisfies the "
            "requirement nosuchpkg-xyz (from versions: none)\nERROR: No matching distribution "
            "found for nosuchpkg-xyz\n",
            "nosuchpkg-xyz",
            "no version satisfies it (from versions: none)",
        ),
        (
            "Processing /nonexistent/dir\nERROR: Could not install packages due to an OSError: "
            "[Errno 2] No such file or directory: '/nonexistent/dir'\n",
            "/nonexistent/dir",
            "OSError",
        ),
        (
            "ERROR: Cannot install a==1 and b==2 because these package versions have conflicting "
            "dependencies.\n\nThe conflict is caused by:\n    a 1 depends on c<1\n",
            "a==1 and b==2",
            "a 1 depends on c<1",
        ),
        (
            "Collecting brokenpkg\n  error: subprocess-exited-with-error\n\n"
            "  \u00d7 python setup.py egg_info did not run successfully.\n",
            "brokenpkg",
            "building it failed: python setup.py egg_info did not run successfully.",
        ),
        ("something odd\n", "?", "something odd"),
    ],
)
def test_explain_pip_failure(output: str, package: str, reason: str) -> None:
    failure = explain_pip_failure(output)
    assert failure.package == package
    assert reason in failure.reason


def test_requirements_of_project() -> None:
    data = {
        "project": {
            "dependencies": ["a>=1"],
            "optional-dependencies": {"test": ["b"], "docs": ["c"]},
        }
    }
    assert requirements_of_project("p", data, ["test"]) == ["a>=1", "b"]
    assert requirements_of_project("p", {"tool": {}}, []) == []
    with pytest.raises(UsageError, match="--extra lint: not in p"):
        requirements_of_project("p", data, ["lint"])
    with pytest.raises(UsageError, match="dynamic"):
        requirements_of_project("p", {"project": {"dynamic": ["dependencies"]}}, [])


@pytest.mark.parametrize(
    ("cases", "runner", "runner_exit", "allow", "expected"),
    [
        ([Case("a", "passed")], "pytest", 0, False, ("passed", 0)),
        ([Case("a", "passed"), Case("b", "failed")], "pytest", 1, False, ("failed", 1)),
        ([Case("a", "error")], "pytest", 2, False, ("failed", 1)),
        ([], "pytest", 5, False, ("no-tests", 1)),
        ([], "pytest", 5, True, ("no-tests", 0)),
        ([Case("a", "skipped")], "pytest", 0, False, ("passed", 0)),
        ([Case("a", "passed")], "pytest", 3, False, ("failed", 1)),
        ([], "command", 0, False, ("no-tests", 1)),
        ([Case("a", "passed")], "command", 1, False, ("failed", 1)),
    ],
)
def test_decide(
    cases: list[Case], runner: str, runner_exit: int, allow: bool, expected: tuple[str, int]
) -> None:
    verdict = decide(Report.of(cases), runner=runner, runner_exit=runner_exit, allow_no_tests=allow)
    assert (verdict.status, verdict.exit_code) == expected
