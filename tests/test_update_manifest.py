"""gitops-update-manifest as users run it: flags, files, exit codes, results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.lib import manifest_io
from steps.update_manifest import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_K8S = REPO / "examples" / "app" / "k8s"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: gcr.io/proj/app:v1
"""


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime under ``root``: proof that nothing was written."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# --------------------------------------------------------------------------- in place


def test_changes_are_printed_as_path_line_object_container(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write(tmp_path / "deploy.yaml", DEPLOYMENT)

    assert main(["--in-place", str(manifest), "--image", "gcr.io/proj/app:v2"]) == 0

    err = capsys.readouterr().err
    assert (
        f"{manifest}:10 Deployment/web container web: gcr.io/proj/app:v1 -> gcr.io/proj/app:v2"
        in err
    )
    assert "image: gcr.io/proj/app:v2\n" in manifest.read_text()


def test_directory_walk_edits_only_yaml_files_and_skips_hidden_dirs(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", DEPLOYMENT)
    write(tmp_path / "nested" / "b.yml", DEPLOYMENT)
    write(tmp_path / "README.md", "image: gcr.io/proj/app:v1\n")
    write(tmp_path / "deploy.json", DEPLOYMENT)
    write(tmp_path / ".git" / "c.yaml", DEPLOYMENT)

    assert main(["--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2"]) == 0

    assert "app:v2" in (tmp_path / "a.yaml").read_text()
    assert "app:v2" in (tmp_path / "nested" / "b.yml").read_text()
    for untouched in ("README.md", "deploy.json", ".git/c.yaml"):
        assert "app:v1" in (tmp_path / untouched).read_text(), untouched


def test_files_that_do_not_change_are_not_rewritten(tmp_path: Path) -> None:
    write(tmp_path / "other.yaml", DEPLOYMENT.replace("gcr.io/proj/app", "gcr.io/proj/other"))
    write(tmp_path / "pinned.yaml", DEPLOYMENT.replace(":v1", ":v2"))
    write(tmp_path / "change.yaml", DEPLOYMENT)
    before = snapshot(tmp_path)

    assert main(["--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2"]) == 0

    after = snapshot(tmp_path)
    assert after["other.yaml"] == before["other.yaml"]
    assert after["pinned.yaml"] == before["pinned.yaml"]
    assert after["change.yaml"] != before["change.yaml"]


def test_file_mode_is_kept(tmp_path: Path) -> None:
    manifest = write(tmp_path / "deploy.yaml", DEPLOYMENT)
    manifest.chmod(0o640)

    assert main(["--in-place", str(manifest), "--image", "gcr.io/proj/app:v2"]) == 0

    assert manifest.stat().st_mode & 0o777 == 0o640


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "deploy.yaml", DEPLOYMENT)
    before = snapshot(tmp_path)

    assert main(["--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2", "--dry-run"]) == 0

    assert snapshot(tmp_path) == before
    assert "container web: gcr.io/proj/app:v1 -> gcr.io/proj/app:v2" in capsys.readouterr().err


def test_flags_can_come_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "deploy.yaml", DEPLOYMENT)
    monkeypatch.setenv("GITOPS_IN_PLACE", str(tmp_path))
    monkeypatch.setenv("GITOPS_IMAGE", "gcr.io/proj/app:v3")
    monkeypatch.setenv("GITOPS_RESULT_FILE", str(tmp_path / "result.json"))

    assert main([]) == 0

    assert "app:v3" in (tmp_path / "deploy.yaml").read_text()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "changed"


def test_command_line_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "deploy.yaml", DEPLOYMENT)
    monkeypatch.setenv("GITOPS_IMAGE", "gcr.io/proj/app:from-env")

    assert main(["--in-place", str(tmp_path), "--image", "gcr.io/proj/app:from-flag"]) == 0

    assert "app:from-flag" in (tmp_path / "deploy.yaml").read_text()


def test_bad_boolean_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "deploy.yaml", DEPLOYMENT)
    monkeypatch.setenv("GITOPS_RESOLVE_DIGESTS", "maybe")

    assert main(["--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2"]) == 2

    assert "GITOPS_RESOLVE_DIGESTS='maybe': expected true or false" in capsys.readouterr().err


# --------------------------------------------------------------------------- results


def test_result_file_and_builder_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "m" / "deploy.yaml", DEPLOYMENT)
    builder_output = tmp_path / "builder"
    builder_output.mkdir()
    monkeypatch.setenv("BUILDER_OUTPUT", str(builder_output))
    monkeypatch.setenv("BUILD_ID", "b-123")
    result_file = tmp_path / "result.json"

    argv = ["--in-place", str(tmp_path / "m"), "--image", "gcr.io/proj/app:v2"]
    assert main([*argv, "--result-file", str(result_file)]) == 0

    result = json.loads(result_file.read_text())
    assert result["step"] == "update-manifest"
    assert result["status"] == "changed"
    assert result["exit_code"] == 0
    assert result["provenance"] == {"build_id": "b-123"}
    assert result["changes"] == [
        {
            "path": str(tmp_path / "m" / "deploy.yaml"),
            "line": 10,
            "kind": "Deployment",
            "name": "web",
            "target": "container web",
            "old": "gcr.io/proj/app:v1",
            "new": "gcr.io/proj/app:v2",
            "image": "gcr.io/proj/app:v2",
        }
    ]
    assert json.loads((builder_output / "output").read_text())["changes"] == result["changes"]


def test_builder_output_stays_under_4_kib_and_counts_what_it_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(200):
        write(tmp_path / "m" / f"deploy-{index:03}.yaml", DEPLOYMENT)
    monkeypatch.setenv("BUILDER_OUTPUT", str(tmp_path))
    result_file = tmp_path / "result.json"

    argv = ["--in-place", str(tmp_path / "m"), "--image", "gcr.io/proj/app:v2"]
    assert main([*argv, "--result-file", str(result_file)]) == 0

    output = (tmp_path / "output").read_bytes()
    assert len(output) <= 4096
    compact = json.loads(output)
    full = json.loads(result_file.read_text())
    assert len(full["changes"]) == 200
    assert len(compact["changes"]) + compact["changes_omitted"] == 200
    assert compact["status"] == "changed"


def test_unchanged_status_when_already_pinned(tmp_path: Path) -> None:
    write(tmp_path / "deploy.yaml", DEPLOYMENT)
    result_file = tmp_path / "result.json"

    argv = ["--in-place", str(tmp_path / "deploy.yaml"), "--image", "gcr.io/proj/app:v1"]
    assert main([*argv, "--result-file", str(result_file)]) == 0

    assert json.loads(result_file.read_text())["status"] == "unchanged"


# --------------------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(
    ("files", "argv_tail", "message"),
    [
        pytest.param(
            {
                "b.yaml": "kind: Pod\nspec:\n  containers:\n"
                "  - image: gcr.io/proj/app:v1\n   bad: [\n"
            },
            ["--image", "gcr.io/proj/app:v2"],
            "b.yaml:5: invalid YAML",
            id="malformed-yaml",
        ),
        pytest.param(
            {"b.yaml": b"# caf\xe9\nimage: gcr.io/proj/app:v1\n"},
            ["--image", "gcr.io/proj/app:v2"],
            "b.yaml:1: not UTF-8 text",
            id="not-utf8",
        ),
        pytest.param(
            {},
            ["--image", "gcr.io/proj/nothing:v2"],
            "--image gcr.io/proj/nothing:v2: matches no container",
            id="unmatched-image",
        ),
        pytest.param(
            {},
            ["--image", "gcr.io/proj/app"],
            "--image gcr.io/proj/app: give a tag or a digest",
            id="image-without-tag",
        ),
        pytest.param(
            {},
            ["--image", "gcr.io/proj/app:v1=gcr.io/proj/app:v2"],
            "OLD must be a repository without a tag or digest",
            id="old-with-tag",
        ),
        pytest.param(
            {},
            ["--image", "Not An Image"],
            "--image Not An Image: 'Not An Image' is not an image reference",
            id="invalid-reference",
        ),
        pytest.param(
            {},
            ["--image", "gcr.io/proj/app:v2", "--image", "gcr.io/proj/app:v3"],
            "both set gcr.io/proj/app",
            id="two-rules-one-image",
        ),
        pytest.param(
            {"b.yaml": 'digest: "" # {"$imagepolicy": "ns:app:digest"}\n'},
            ["--image", "ns:app=gcr.io/proj/app:v2"],
            "b.yaml:1: the marker sets a digest but --image ns:app=gcr.io/proj/app:v2 has none",
            id="marker-digest-without-digest",
        ),
        pytest.param(
            {
                "b.yaml": "kind: Pod\nspec:\n  containers:\n  - name: a\n"
                "    image: |\n      gcr.io/proj/app:v1\n"
            },
            ["--image", "gcr.io/proj/app:v2"],
            "b.yaml:5: 'gcr.io/proj/app:v1\\n' is a block scalar",
            id="block-scalar-image",
        ),
        pytest.param(
            {},
            ["--image", "gcr.io/proj/app:v2", "--set", "A=1"],
            "--set only applies",
            id="set-in-place",
        ),
        pytest.param(
            {},
            ["--image", "gcr.io/proj/app:v2", "--bogus"],
            "unrecognized arguments: --bogus",
            id="unknown-flag",
        ),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str | bytes],
    argv_tail: list[str],
    message: str,
) -> None:
    # a.yaml would change: proof that errors elsewhere stop every write.
    tree = tmp_path / "m"
    write(tree / "a.yaml", DEPLOYMENT)
    for name, content in files.items():
        write(tree / name, content)
    result_file = tmp_path / "result.json"
    before = snapshot(tree)

    code = main(["--in-place", str(tree), *argv_tail, "--result-file", str(result_file)])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(tree) == before
    if "unrecognized" not in message:
        assert json.loads(result_file.read_text())["status"] == "error"


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="gitops-steps-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _run_unprivileged(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the stage as nobody when we are root: root can read anything."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    command = [*prefix, sys.executable, "-m", "steps.update_manifest", *argv]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)


@pytest.mark.parametrize("unreadable", ["b.yaml", "sub"])
def test_unreadable_file_or_directory_is_named(world_readable_dir: Path, unreadable: str) -> None:
    tree = world_readable_dir
    write(tree / "a.yaml", DEPLOYMENT).chmod(0o666)
    write(tree / "b.yaml", DEPLOYMENT)
    write(tree / "sub" / "c.yaml", DEPLOYMENT)
    (tree / unreadable).chmod(0o000)
    tree.chmod(0o777)

    proc = _run_unprivileged("--in-place", str(tree), "--image", "gcr.io/proj/app:v2")

    assert proc.returncode == 2, proc.stderr
    assert f"{tree / unreadable}: cannot read: Permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "app:v1" in (tree / "a.yaml").read_text()


def test_failed_write_puts_back_files_already_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk error half-way must not leave half the manifests updated."""
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        write(tmp_path / name, DEPLOYMENT)
    original = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: str, dst: str | Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(manifest_io.os, "replace", failing_replace)

    assert main(["--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2"]) == 2

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix == ".yaml"} == original
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert "No space left on device; no file was changed" in capsys.readouterr().err


def test_mode_flags_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--image", "gcr.io/proj/app:v2"]) == 2
    assert "give either --in-place PATH... or --from DIR --to DIR" in capsys.readouterr().err
    assert main(["--from", str(tmp_path)]) == 2
    assert "--from needs --to DIR" in capsys.readouterr().err
    assert main(["--in-place", str(tmp_path / "missing")]) == 2
    assert "--in-place needs at least one --image" in capsys.readouterr().err
    assert main(["--in-place", str(tmp_path / "missing"), "--image", "a:b"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- render mode


def test_render_example_app(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        "--from",
        str(EXAMPLE_K8S),
        "--to",
        str(out),
        "--set",
        "PROJECT_ID=demo",
        "--image",
        "us-docker.pkg.dev/demo/apps/hello:v2",
    ]

    assert main(argv) == 0

    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "service.yaml"]
    template = (EXAMPLE_K8S / "deployment.yaml.tpl").read_text()
    expected = template.replace(
        '"us-docker.pkg.dev/${PROJECT_ID}/apps/hello:latest"',
        '"us-docker.pkg.dev/demo/apps/hello:v2"',
    )
    assert (out / "deployment.yaml").read_text() == expected
    assert (out / "service.yaml").read_bytes() == (EXAMPLE_K8S / "service.yaml").read_bytes()


def test_render_templates_escapes_and_skips(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    write(
        source / "cm.yaml.tpl",
        "kind: ConfigMap\ndata:\n  a: ${A}\n  literal: $${A}\n  shell: $HOME\n",
    )
    write(source / "sub" / "d.yml", DEPLOYMENT)
    write(source / "notes.txt", "not a manifest\n")
    out = tmp_path / "out"
    result_file = tmp_path / "r.json"

    argv = [
        "--from",
        str(source),
        "--to",
        str(out),
        "--set",
        "A=x",
        "--image",
        "gcr.io/proj/app:v9",
    ]
    assert main([*argv, "--result-file", str(result_file)]) == 0

    assert (
        out / "cm.yaml"
    ).read_text() == "kind: ConfigMap\ndata:\n  a: x\n  literal: ${A}\n  shell: $HOME\n"
    assert "gcr.io/proj/app:v9" in (out / "sub" / "d.yml").read_text()
    assert not (out / "notes.txt").exists()
    result = json.loads(result_file.read_text())
    assert result["skipped"] == ["notes.txt"]
    assert result["files_written"] == 2


def test_render_without_images_only_renders(tmp_path: Path) -> None:
    source = write(tmp_path / "k8s" / "a.yaml.tpl", "x: ${A}\n").parent
    assert main(["--from", str(source), "--to", str(tmp_path / "out"), "--set", "A=1"]) == 0
    assert (tmp_path / "out" / "a.yaml").read_text() == "x: 1\n"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"a.yaml.tpl": "a: 1\nb: ${MISSING}\n"},
            "a.yaml.tpl:2: unknown placeholder ${MISSING} (give it with --set MISSING=VALUE)",
        ),
        ({"a.yaml.tpl": "a: ${A}\n"}, "a.yaml.tpl:2: after rendering: invalid YAML"),
        ({"a.yaml": "a: 1\n", "a.yaml.tpl": "a: 2\n"}, "would both be written as a.yaml"),
        ({"a.yaml": "a: [1\n"}, "a.yaml:2: invalid YAML"),
    ],
)
def test_render_mistakes_create_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str], message: str
) -> None:
    for name, content in files.items():
        write(tmp_path / "k8s" / name, content)
    out = tmp_path / "out"

    assert main(["--from", str(tmp_path / "k8s"), "--to", str(out), "--set", "A=[unclosed"]) == 2

    assert message in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["k8s"]


def test_render_refuses_non_empty_output_unless_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "k8s" / "a.yaml", "a: 1\n").parent
    out = tmp_path / "out"
    write(out / "stale.yaml", "stale: true\n")

    assert main(["--from", str(source), "--to", str(out)]) == 2
    assert "--to " + str(out) + ": not empty (pass --clean" in capsys.readouterr().err
    assert (out / "stale.yaml").exists()

    assert main(["--from", str(source), "--to", str(out), "--clean"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.yaml"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- packaging


def test_console_script_and_module_entry_points() -> None:
    script = Path(sys.executable).parent / "gitops-update-manifest"
    for argv in (
        [str(script), "--help"],
        [sys.executable, "-m", "steps.update_manifest", "--help"],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert "GITOPS_IMAGE" in proc.stdout
        assert "--resolve-digests" in proc.stdout
