"""Every stage's entry points, and the promise that --help stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from steps.stages import STAGES as REGISTRY

REPO = Path(__file__).resolve().parent.parent
STAGES = {stage.script: stage.module for stage in REGISTRY}
HEAVY = ("git", "kubernetes", "google", "urllib3")
LAZY = ("urllib.request", "http.client", "ssl", "traceback")
"""Standard-library modules --help must not import either: each costs milliseconds
at every start, and only a redirect (urllib.request), the API client
(http.client, ssl) or a bug (traceback) needs it."""


def test_update_manifest_is_among_the_stages() -> None:
    assert "gitops-update-manifest" in STAGES


@pytest.mark.parametrize("module", sorted(set(STAGES.values())))
def test_help_does_not_import_heavy_libraries(module: str) -> None:
    code = (
        "import contextlib, importlib, io, sys\n"
        f"stage = importlib.import_module({module!r})\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        stage.main(['--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
        f"print(sorted(m for m in sys.modules if m in {LAZY!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "[]"]


@pytest.mark.parametrize("script", sorted(STAGES))
def test_console_script_and_python_dash_m(script: str) -> None:
    module = STAGES[script]
    executable = Path(sys.executable).parent / script
    for argv in ([str(executable), "--help"], [sys.executable, "-m", module, "--help"]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert "--result-file" in proc.stdout
        assert "GITOPS_RESULT_FILE" in proc.stdout


def test_importing_the_package_is_light() -> None:
    code = (
        "import sys, steps, steps.lib.cli, steps.lib.output, steps.lib.errors, steps.lib.imageref\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} + ('yaml',)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
