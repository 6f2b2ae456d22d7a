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

import pytest
from test_cloudbuild_validate import CASES, REPO, header

from steps.cloudbuild import validate

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
        assert report.errors[:1] == [verdict["error"]], (report.errors, verdict)
    elif "ok" in fields and fields.get("started-by", "submit") == "submit":
        assert report.errors == []


@pytest.mark.parametrize("path", OUR_CONFIGS, ids=[p.name for p in OUR_CONFIGS])
def test_our_configs_load_in_gcloud(
    path: Path, gcloud_verdicts: dict[str, dict[str, object]]
) -> None:
    assert gcloud_verdicts[str(path)]["ok"], gcloud_verdicts[str(path)]
