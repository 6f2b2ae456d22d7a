"""gitops-cloudbuild validate: Cloud Build's checks, each broken case's message,
and the substitution rules (``$$``, MUST_MATCH/ALLOW_LOOSE, dynamic expansions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.cloudbuild import config, validate
from steps.cloudbuild.substitutions import Usage, expand, parse_pairs
from steps.lib.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
CASES = sorted((Path(__file__).parent / "cloudbuild_cases").glob("*.yaml"))


def header(path: Path) -> dict[str, str]:
    """A case's ``# key: value`` lines: error (or ``# ok``), started-by, gcloud, source."""
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        fields[key] = value
    assert ("error" in fields) != ("ok" in fields), path
    assert fields.get("gcloud") in ("accepts", "refuses"), path
    return fields


@pytest.mark.parametrize("name", ["app.yaml", "env.yaml", "steps.yaml"])
@pytest.mark.parametrize("started_by", ["trigger", "submit"])
def test_our_configs_pass(name: str, started_by: str, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = str(REPO / "cloudbuild" / name)
    assert validate.main([config_path, "--started-by", started_by]) == 0
    assert "OK" in capsys.readouterr().err


def test_our_configs_pass_with_trigger_substitutions() -> None:
    given = "_ENV_REPO=https://example.test/env,_ENV_PATH=hello,COMMIT_SHA=abc1234def"
    assert validate.main([str(REPO / "cloudbuild" / "env.yaml"), "--substitutions", given]) == 0


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fields = header(case)
    started_by = fields.get("started-by", "submit")
    report = validate.validate(case, started_by=started_by)
    code = validate.main([str(case), "--started-by", started_by])
    if "ok" in fields:
        assert report.errors == [] and code == 0, report.errors
        return
    message = fields["error"]
    assert message in report.errors, report.errors
    assert code == 2
    assert f"{case}: {message}" in capsys.readouterr().err


def check(data: dict[str, Any], given: dict[str, str] | None = None) -> config.Report:
    return config.check(data, given or {})


def test_limits() -> None:
    too_many = {"steps": [{"name": "bash"}] * (config.MAX_STEPS + 1)}
    assert check(too_many).errors == [
        "invalid .steps field: cannot specify more than 300 build steps"
    ]
    args = {"steps": [{"name": "bash", "args": ["x"] * 101}]}
    assert check(args).errors == ["invalid .steps field: build step 0 too many args (max: 100)"]
    long_arg = {"steps": [{"name": "bash", "args": ["x", "x" * 10_001]}]}
    assert check(long_arg).errors == [
        "invalid .steps field: build step 0 arg 1 too long (max: 10000)"
    ]
    envs = {"steps": [{"name": "bash", "env": ["A=1"] * 101}]}
    assert check(envs).errors == ["invalid .steps field: build step 0 too many envs (max: 100)"]


def test_allow_loose_accepts_undefined_and_unused() -> None:
    data = {
        "steps": [{"name": "bash", "args": ["$_MISSING", "${_MISSING}x"]}],
        "substitutions": {"_UNUSED": "u"},
        "options": {"substitutionOption": "ALLOW_LOOSE"},
    }
    report = check(data)
    assert report.errors == []
    resolved = config.resolve(data, {}, config.placeholder_built_ins())
    assert resolved.data["steps"][0]["args"] == ["", "x"]
    assert resolved.missing == ["_MISSING"] and resolved.unused == ["_UNUSED"]


def test_unused_given_substitution_fails_under_must_match() -> None:
    data = {"steps": [{"name": "bash", "args": ["$_A"]}], "substitutions": {"_A": "a"}}
    assert check(data, {"_A": "b"}).errors == []
    errors = check(data, {"_B": "b"}).errors
    assert errors == [
        'invalid build: key "_B" in the substitution data is not matched in the template'
    ]


def test_overridable_built_ins_may_be_given_and_are_not_unused() -> None:
    data = {"steps": [{"name": "bash", "args": ["$$COMMIT_SHA"]}]}
    assert check(data, {"COMMIT_SHA": "abc", "BRANCH_NAME": "main"}).errors == []
    [error] = check(data, {"PROJECT_ID": "p"}).errors
    assert 'substitution key "PROJECT_ID" does not respect format' in error
    # A trigger sets every built-in.
    assert config.check(data, {"PROJECT_ID": "p"}, started_by="trigger").errors == []


def test_script_is_not_substituted() -> None:
    data = {"steps": [{"name": "bash", "script": "echo $HOME ${_X:-y}"}]}
    assert check(data).errors == []
    resolved = config.resolve(data, {}, config.placeholder_built_ins())
    assert resolved.data["steps"][0]["script"] == "echo $HOME ${_X:-y}"


def test_dollar_escape_and_values() -> None:
    data = {
        "steps": [{"name": "img:${_V}", "args": ["$$HOME", "$$$_V", "${PROJECT_ID}-$BUILD_ID"]}],
        "substitutions": {"_V": "1"},
    }
    built = {**config.placeholder_built_ins(), "PROJECT_ID": "p", "BUILD_ID": "b"}
    resolved = config.resolve(data, {}, built)
    assert resolved.data["steps"][0]["name"] == "img:1"
    assert resolved.data["steps"][0]["args"] == ["$HOME", "$1", "p-b"]


def test_dynamic_values_use_other_values() -> None:
    data = {
        "steps": [{"name": "bash", "args": ["${_IMAGE}"]}],
        "substitutions": {"_IMAGE": "${_REGION}-docker.pkg.dev/${PROJECT_ID}/x", "_REGION": "us"},
        "options": {"dynamicSubstitutions": True},
    }
    built = {**config.placeholder_built_ins(), "PROJECT_ID": "p"}
    resolved = config.resolve(data, {}, built)
    assert resolved.data["steps"][0]["args"] == ["us-docker.pkg.dev/p/x"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${V:0:7}", "abcdef1"),
        ("${V:3}", "def1234-XyZ.tar.gz"),
        ("${V: -6}", "tar.gz"),
        ("${V:2:-3}", "cdef1234-XyZ.tar"),
        ("${V#*.}", "tar.gz"),
        ("${V##*.}", "gz"),
        ("${V%.*}", "abcdef1234-XyZ.tar"),
        ("${V%%.*}", "abcdef1234-XyZ"),
        ("${V/./_}", "abcdef1234-XyZ_tar.gz"),
        ("${V//./_}", "abcdef1234-XyZ_tar_gz"),
        ("${V/#abc/ABC}", "ABCdef1234-XyZ.tar.gz"),
        ("${V/%gz/bz2}", "abcdef1234-XyZ.tar.bz2"),
        ("${V^^}", "ABCDEF1234-XYZ.TAR.GZ"),
        ("${V,,}", "abcdef1234-xyz.tar.gz"),
        ("${V^}", "Abcdef1234-XyZ.tar.gz"),
        ("${NOPE:-fallback}", "fallback"),
        ("${E:-fallback}", "fallback"),
        ("${E-fallback}", ""),
        ("$$V", "$V"),
    ],
)
def test_bash_style_expansions(template: str, expected: str) -> None:
    values = {"V": "abcdef1234-XyZ.tar.gz", "E": ""}
    assert expand(template, values, dynamic=True, usage=Usage()) == expected


def test_bad_expansion() -> None:
    with pytest.raises(UsageError, match="bad substitution"):
        expand("${V@Q}", {"V": "x"}, dynamic=True, usage=Usage())


def test_parse_pairs() -> None:
    assert parse_pairs("_A=1,_B=x=y,") == {"_A": "1", "_B": "x=y"}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_pairs("_A")


def test_unreadable_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("steps: [\n", encoding="utf-8")
    assert validate.main([str(tmp_path / "bad.yaml")]) == 2
    assert "parsing" in capsys.readouterr().err
    assert validate.main([str(tmp_path / "missing.yaml")]) == 2


def test_cases_are_valid_yaml() -> None:
    for case in CASES:
        assert isinstance(yaml.safe_load(case.read_text(encoding="utf-8")), dict)


def test_automap_counts_as_using_every_substitution() -> None:
    data: dict[str, Any] = {
        "steps": [{"name": "bash", "script": "echo $_A", "automapSubstitutions": True}],
        "substitutions": {"_A": "a"},
    }
    assert check(data).errors == []
    data["steps"][0]["automapSubstitutions"] = False
    assert check(data).errors == [
        'invalid build: key "_A" in the substitution data is not matched in the template'
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(600, "10m0s"), (90000, "25h0m0s"), (3661.5, "1h1m1.5s"), (1.5, "1.5s"), (0.5, "500ms"),
     (0, "0s"), (86400, "24h0m0s")],
)  # fmt: skip
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    """cloud-build-local formats its limits with Go's %v of a time.Duration."""
    assert config.go_duration(seconds) == text
