"""Every stage's entry points, and the promise that --help stays light."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import sysconfig
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


HELP_IMPORTS_OF_OURS = {
    "steps",
    "steps.lib",
    "steps.lib.cli",
    "steps.lib.errors",
    "steps.lib.push_flags",
    "steps.lib.cluster_flags",
}
"""All of ours that --help may import besides the stage module: the flags and the
errors. A stage's work (steps/lib/...) is imported after its flags are parsed."""
HELP_MUST_NOT_IMPORT = (
    "dataclasses",
    "inspect",
    "typing",
    "json",
    "pathlib",
    "subprocess",
    "tempfile",
    "threading",
    "datetime",
    "urllib.parse",
    "tomllib",
    "xml.etree",
    "yaml",
)
"""Standard-library modules (and PyYAML) a stage's work needs and --help does not.
Each costs 1-7 ms at every start (``python -X importtime``; dataclasses, which
brings inspect, about as much as Python takes to start): with them, --help took
5-7x ``python -c pass`` from a plain install, without them about 2.5x
(benchmarks/bench_startup.py; issue 15's target is 3x). argparse itself and what
it imports (re, gettext, shutil for the terminal's width) are the floor."""


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


@pytest.mark.parametrize(
    "module",
    sorted(set(STAGES.values())),
)
def test_help_imports_only_the_flags(module: str) -> None:
    """What makes --help fast: the stage module holds its flags and main, and
    imports its work only once the flags are parsed. Run without ``site`` (-S),
    so that the editable install's import hook and .pth files load nothing."""
    code = (
        "import contextlib, io, sys\n"
        f"sys.path[:0] = [{str(REPO)!r}, {sysconfig.get_paths()['purelib']!r}]\n"
        f"import {module} as stage\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        stage.main(['--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "assert 'GITOPS_RESULT_FILE' in out.getvalue()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'steps'))\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HELP_MUST_NOT_IMPORT!r})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    ours, heavy = proc.stdout.splitlines()[:2]
    assert sorted(set(ast.literal_eval(ours)) - HELP_IMPORTS_OF_OURS - {module}) == []
    assert heavy == "[]"


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


@pytest.mark.parametrize(
    ("stage", "work"),
    [
        ("steps.push_candidate", "steps.lib.candidate_push"),
        ("steps.promote", "steps.lib.promotion"),
        ("steps.history", "steps.lib.history_run"),
    ],
)
def test_a_stage_and_its_work_use_one_name(stage: str, work: str) -> None:
    """The name in the work's messages and trailers is the stage's (``run_step``'s)."""
    module = importlib.import_module(stage)
    assert importlib.import_module(work).STEP == module.STEP
    assert module.STEP in {s.name for s in REGISTRY}


def test_reading_manifests_to_apply_does_not_load_the_editing_machinery(tmp_path: Path) -> None:
    """verify-rollout only reads manifests: its path to the first request must not
    load update-manifest's editing modules (milliseconds before every apply)."""
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from steps.lib.rollout_plan import load_manifests\n"
        f"assert len(load_manifests(Path({str(tmp_path)!r}))) == 1\n"
        "edit = sorted(m for m in sys.modules if m in {\n"
        "    'steps.lib.manifest_edit', 'steps.lib.manifest_io', 'steps.lib.manifest_splice',\n"
        "    'steps.lib.flux_markers', 'steps.lib.image_rules', 'tempfile'})\n"
        "print(edit)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out


BEFORE_FIRST_REQUEST_MUST_NOT_IMPORT = (
    "dataclasses",  # inspect, ast, dis, tokenize: ~6 ms, and ~0.3 ms per class
    "inspect",
    "random",  # retry jitter: only once something failed
    "encodings.idna",  # socket and ssl, given a str host name
    "subprocess",  # exec credential plugins only
    "tempfile",
    "http.client",
    "ssl",  # https only
    "logging",
    "steps.lib.kube_watch",  # the wait: loaded after the apply
    "steps.lib.rollout_watch",
    "steps.lib.fail_fast",
    "steps.lib.live_record",
)


def test_verify_rollout_reaches_its_first_request_without_the_wait_or_heavy_imports(
    tmp_path: Path,
) -> None:
    """The path from spawn to the first request (the dry run, then the apply) is
    what a deploy waits on: pin what it must not load. The first connection
    prints the modules loaded by then and ends the process."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  selector: {matchLabels: {app: web}}\n"
        "  template:\n    metadata: {labels: {app: web}}\n"
        "    spec: {containers: [{name: web, image: example.com/web:1}]}\n"
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t0ken}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    must_not = BEFORE_FIRST_REQUEST_MUST_NOT_IMPORT
    code = (
        "import os, socket, sys\n"
        "def first_connection(address, *args, **kwargs):\n"
        "    socket.getaddrinfo(*address)  # as create_connection would, with the host as given\n"
        f"    print(sorted(m for m in sys.modules if m in {must_not!r}))\n"
        "    print('connecting to', *address, flush=True)\n"
        "    os._exit(0)\n"
        "socket.create_connection = first_connection\n"
        "from steps.verify_rollout import main\n"
        f"main(['--manifests', {str(manifests)!r}, '--kubeconfig', {str(kubeconfig)!r}])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPS_", "KUBE"))}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[-1:] == ["connecting to b'127.0.0.1' 9"], (
        done.stdout + done.stderr
    )
    assert lines[-2] == "[]", lines[-2]
