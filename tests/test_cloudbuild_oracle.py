"""Our verdicts against the Google Cloud CLI's own config loader (the outside oracle).

gcloud's loader is what ``gcloud builds submit`` runs before anything is sent:
it reads the config into the API's Build message and refuses unknown fields,
bad types and enum values, built-in keys in ``substitutions`` and ``source``.
For every case of tests/cloudbuild_cases (and our own configs):

- the loader's verdict is the one the case declares (``# gcloud: accepts`` or
  ``refuses``): the corpus stays honest about which refusals are the service's;
- when the loader refuses, our first error is the loader's message, word for word;
- when it accepts and the case is accepted, we accept too.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cloudbuild_validate import CASES, REPO, header

from steps.cloudbuild import schema, validate

SDK = Path(os.environ.get("GITOPS_GCLOUD_SDK", "/usr/lib/google-cloud-sdk"))
BUNDLED_PYTHON = SDK / "platform" / "bundledpythonunix" / "bin" / "python"
LOADER = Path(__file__).parent / "gcloud_loader.py"
OUR_CONFIGS = sorted((REPO / "cloudbuild").glob("*.yaml"))


@pytest.fixture(scope="module")
def gcloud_verdicts() -> dict[str, dict[str, object]]:
    if not (SDK / "lib" / "googlecloudsdk" / "api_lib" / "cloudbuild" / "config.py").is_file():
        pytest.skip(f"the Google Cloud CLI is not installed at {SDK} (GITOPS_GCLOUD_SDK)")
    python = str(BUNDLED_PYTHON) if BUNDLED_PYTHON.exists() else "python3"
    paths = [str(p) for p in [*CASES, *OUR_CONFIGS]]
    proc = subprocess.run(
        [python, str(LOADER), str(SDK), *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    verdicts = [json.loads(line) for line in proc.stdout.splitlines()]
    return {str(v["path"]): v for v in verdicts}


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case_agrees_with_gcloud(case: Path, gcloud_verdicts: dict[str, dict[str, object]]) -> None:
    fields = header(case)
    verdict = gcloud_verdicts[str(case)]
    assert verdict["ok"] == (fields["gcloud"] == "accepts"), verdict
    report = validate.validate(case, started_by="submit")
    if not verdict["ok"]:
        error = str(verdict["error"])
        assert [e[: len(error)] for e in report.errors[:1]] == [error], (report.errors, verdict)
    elif "ok" in fields and fields.get("started-by", "submit") == "submit":
        assert report.errors == []


@pytest.mark.parametrize("path", OUR_CONFIGS, ids=[p.name for p in OUR_CONFIGS])
def test_our_configs_load_in_gcloud(
    path: Path, gcloud_verdicts: dict[str, dict[str, object]]
) -> None:
    assert gcloud_verdicts[str(path)]["ok"], gcloud_verdicts[str(path)]


# -- an adversary: mutations of the accepted cases, judged by both ---------------


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _mutations(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Loader-level changes only (names, types, shapes): no service rule is touched.

    The adversary found two differences once: gcloud reads ``options: []`` as no
    options, and words a scalar where a mapping belongs as Python does."""
    out: dict[str, dict[str, Any]] = {}

    def variant(name: str, change: Any) -> None:
        copy = json.loads(json.dumps(data))
        change(copy)
        out[name] = copy

    variant("unknown-top", lambda d: d.update(stepz=[]))
    variant("unknown-step", lambda d: d["steps"][0].update(waitfor=["-"], imagez="x"))
    variant("unknown-option", lambda d: d.setdefault("options", {}).update(machine="E2_MEDIUM"))
    variant("int-name", lambda d: d["steps"][0].update(name=7))
    variant("float-arg", lambda d: d["steps"][0].update(args=["echo", 1.5]))
    variant("bool-arg", lambda d: d["steps"][-1].update(args=[True]))
    variant("null-env", lambda d: d["steps"][0].update(env=[None]))
    variant("int-timeout", lambda d: d.update(timeout=600))
    variant("bad-enum", lambda d: d.setdefault("options", {}).update(logStreamingOption="LOUD"))
    variant("list-options", lambda d: d.update(options=[]))
    variant("string-options", lambda d: d.update(options="E2_MEDIUM"))
    variant("list-volume", lambda d: d["steps"][0].update(volumes=[["cache", "/cache"]]))

    def snake_everything(d: dict[str, Any]) -> None:
        for step in d["steps"]:
            for key in list(step):
                step[_snake(key)] = step.pop(key)
        for key in list(d):
            if key != "substitutions":
                d[_snake(key)] = d.pop(key)

    variant("snake-case", snake_everything)
    return out


def test_mutations_agree_with_gcloud(tmp_path: Path) -> None:
    if not (SDK / "lib" / "googlecloudsdk" / "api_lib" / "cloudbuild" / "config.py").is_file():
        pytest.skip(f"the Google Cloud CLI is not installed at {SDK} (GITOPS_GCLOUD_SDK)")
    accepted = [
        c for c in CASES if "ok" in header(c) and header(c).get("started-by", "submit") == "submit"
    ]
    paths: list[Path] = []
    for case in accepted:
        data = yaml.safe_load(case.read_text(encoding="utf-8"))
        for name, mutated in _mutations(data).items():
            path = tmp_path / f"{case.stem}--{name}.yaml"
            path.write_text(yaml.safe_dump(mutated), encoding="utf-8")
            paths.append(path)
    python = str(BUNDLED_PYTHON) if BUNDLED_PYTHON.exists() else "python3"
    proc = subprocess.run(
        [python, str(LOADER), str(SDK), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    disagreements = []
    for line in proc.stdout.splitlines():
        verdict = json.loads(line)
        path = Path(verdict["path"])
        if verdict["ok"]:
            # gcloud read it: so must our reading (the service's own rules may still refuse).
            ours = schema.read_build(yaml.safe_load(path.read_text(encoding="utf-8"))).errors
            theirs: list[str] = []
        else:
            # Ours may add what gcloud's words mean, after them.
            theirs = [str(verdict["error"])]
            ours = [
                e[: len(theirs[0])] for e in validate.validate(path, started_by="submit").errors[:1]
            ]
        if ours != theirs:
            disagreements.append((Path(verdict["path"]).name, theirs, ours[:1]))
    assert len(paths) >= 40
    assert disagreements == [], "\n".join(map(str, disagreements))
