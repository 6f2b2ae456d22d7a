"""gitops-update-manifest against hostile or unlucky input (issue 11).

Each case runs the stage as users do (``main(argv)``) on real files and
checks the exit code, the message and the bytes on disk.
"""

from __future__ import annotations

import json
import os
import re
import resource
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_update_manifest import DEPLOYMENT

from steps.lib import manifest_io
from steps.update_manifest import main

MARK = '# {"$imagepolicy": "ns:app"}'


def alias_bomb(levels: int = 12) -> str:
    """Nine aliases a level: 9**12 nodes once expanded, a few hundred bytes of text."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- YAML itself


@pytest.mark.parametrize(
    ("other", "message"),
    [
        pytest.param(alias_bomb(), "expand to more than 200,000 nodes", id="alias-bomb"),
        pytest.param("x: " + "[" * 300 + "]" * 300 + "\n", "nested more than 200", id="deep"),
        pytest.param("x: &a [*a]\n", "an alias refers to a node that contains it", id="cycle"),
    ],
)
def test_bombs_and_deep_nesting_in_another_document_exit_2_in_bounded_memory(
    tmp_path: Path, other: str, message: str
) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(DEPLOYMENT + "---\n" + other)
    before = manifest.read_bytes()

    def limit_memory() -> None:  # 1 GiB: expanding the bomb needs far more
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run(
        [
            *(sys.executable, "-m", "steps.update_manifest"),
            *("--in-place", str(manifest), "--image", "gcr.io/proj/app:v2"),
        ],
        capture_output=True,
        text=True,
        preexec_fn=limit_memory,
        timeout=120,  # only a guard against a hang, far above the expected second
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert re.search(rf"{re.escape(str(manifest))}:1[2-9]: [^\n]*{message}", proc.stderr)
    assert "Traceback" not in proc.stderr
    assert manifest.read_bytes() == before


def test_a_key_written_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(DEPLOYMENT + "        image: gcr.io/proj/app:v0\n")
    code, err = run(tmp_path, capsys, "--in-place", str(manifest), "--image", "gcr.io/proj/app:v2")
    assert code == 2, err
    assert f"{manifest}:11: duplicate key 'image' (first at line 10)" in err
    assert "app:v2" not in manifest.read_text()


# --------------------------------------------------------------------------- Flux markers


def marked(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str, str]:
    path = tmp_path / "values.yaml"
    path.write_bytes(text.encode())
    code, err = run(tmp_path, capsys, "--in-place", str(path), "--image", "ns:app=nginx:2")
    return code, err, path.read_bytes().decode()


def test_a_marker_inside_a_quoted_string_is_not_a_comment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"a:\n  note: 'put {MARK} after it'\n  image: nginx:1 {MARK}\n"
    code, err, after = marked(tmp_path, capsys, text)
    assert code == 0, err
    assert after == text.replace("nginx:1", "nginx:2")


@pytest.mark.parametrize("newline", ["\r", "\u2028", "\x85"], ids=["cr", "ls", "nel"])
def test_line_breaks_other_than_newline_keep_the_change_on_the_marked_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], newline: str
) -> None:
    lines = ["a: nginx:0", f"b: nginx:1 {MARK}", "c: nginx:0", f"d: nginx:1 {MARK}", ""]
    text = newline.join(lines)
    code, err, after = marked(tmp_path, capsys, text)
    assert code == 0, err
    assert after == text.replace("nginx:1", "nginx:2")
    assert "values.yaml:2 " in err and "values.yaml:4 " in err


def test_a_marker_inside_a_block_scalar_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"script: |\n  echo nginx:1 {MARK}\nimage: nginx:1 {MARK}\n"
    code, err, after = marked(tmp_path, capsys, text)
    assert code == 0, err
    assert after == f"script: |\n  echo nginx:1 {MARK}\nimage: nginx:2 {MARK}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            f"a:\n  image: {MARK}\n    nginx:1\n",
            "values.yaml:2: the marker is on a key whose value is on another line",
            id="key-with-value-on-next-line-is-never-renamed",
        ),
        pytest.param(
            f"sidecar: &img nginx:1\nimage: *img {MARK}\n",
            "values.yaml:2: the marked value is an alias",
            id="alias-never-edits-its-anchor-elsewhere",
        ),
        pytest.param(
            f"sidecar: &img nginx:1\nmain: {{name: a, image: *img}} {MARK}\n",
            "values.yaml:2: the marked value is an alias",
            id="alias-last-in-a-flow-mapping",
        ),
        pytest.param(
            f"base: &base {{image: nginx:1}}\nvalues: *base {MARK}\n",
            "values.yaml:2: the marked value is an alias",
            id="alias-of-a-mapping",
        ),
    ],
)
def test_markers_that_cannot_be_applied_where_they_are_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    code, err, after = marked(tmp_path, capsys, text)
    assert code == 2, err
    assert message in err
    assert after == text


def test_markers_in_thousands_of_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Correctness of the one-pass marker search across documents (speed: benchmarks/).
    documents = [f"kind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{a: b}}\n" for i in range(500)]
    documents[250] = f"kind: HelmRelease\nmetadata: {{name: h}}\nimage: nginx:1 {MARK}\n"
    code, err, after = marked(tmp_path, capsys, "---\n".join(documents))
    assert code == 0, err
    assert after.count("nginx:2") == 1
    assert "HelmRelease/h marker ns:app: nginx:1 -> nginx:2" in err


# --------------------------------------------------------------------------- kustomizations


def test_component_kustomizations_are_edited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kustomization.yaml"
    path.write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "images:\n- name: gcr.io/proj/app\n  newTag: v1\n"
    )
    code, err = run(tmp_path, capsys, "--in-place", str(path), "--image", "gcr.io/proj/app:v2")
    assert code == 0, err
    assert "  newTag: v2\n" in path.read_text()


def test_a_digest_written_first_can_become_a_tag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `kustomize edit set image app@sha256:...` writes: digest before name.
    path = tmp_path / "kustomization.yaml"
    digest = "sha256:" + "a" * 64
    path.write_text(f"images:\n- digest: {digest}\n  name: gcr.io/proj/app\nresources: [d.yaml]\n")
    code, err = run(tmp_path, capsys, "--in-place", str(path), "--image", "gcr.io/proj/app:v2")
    assert code == 0, err
    expected = "images:\n- name: gcr.io/proj/app\n  newTag: v2\nresources: [d.yaml]\n"
    assert path.read_text() == expected


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image", "=nginx:1"], "--image =nginx:1: nothing before '='"),
        (["--image", "gcr.io/proj/app="], "--image gcr.io/proj/app=: nothing after '='"),
    ],
)
def test_image_flags_with_an_empty_side_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(DEPLOYMENT)
    code, err = run(tmp_path, capsys, "--in-place", str(manifest), *argv)
    assert code == 2, err
    assert message in err


@pytest.mark.parametrize(
    ("template", "assignment", "message"),
    [
        pytest.param(
            "kind: ConfigMap\ndata:\n  owner: ${OWNER}\n",
            "OWNER=a\n  injected: true",
            "--set OWNER: the value spans lines",
            id="new-line",
        ),
        pytest.param(
            "kind: ConfigMap\ndata: {owner: ${OWNER}}\n",
            "OWNER=a, injected: true",
            "a --set value changes the YAML's structure",
            id="flow-mapping",
        ),
        pytest.param(
            "kind: ConfigMap\ndata: {owner: '${OWNER}'}\n",
            "OWNER=a', injected: 'true",
            "a --set value changes the YAML's structure",
            id="out-of-quotes",
        ),
        pytest.param(
            "kind: ConfigMap\ndata:\n  owners: [${OWNER}]\n",
            "OWNER=a, b",
            "a --set value changes the YAML's structure",
            id="extra-item",
        ),
    ],
)
def test_a_set_value_cannot_inject_yaml(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    template: str,
    assignment: str,
    message: str,
) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    (source / "cm.yaml.tpl").write_text(template)
    out = tmp_path / "out"
    code, err = run(tmp_path, capsys, "--from", str(source), "--to", str(out), "--set", assignment)
    assert code == 2, err
    assert message in err
    assert not out.exists()


def test_a_set_value_may_hold_yaml_punctuation_inside_a_scalar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    (source / "cm.yaml.tpl").write_text("kind: ConfigMap\ndata:\n  owner: '${OWNER}'\n")
    out = tmp_path / "out"
    code, err = run(
        tmp_path, capsys, "--from", str(source), "--to", str(out), "--set", "OWNER=a, b: c"
    )
    assert code == 0, err
    assert (out / "cm.yaml").read_text() == "kind: ConfigMap\ndata:\n  owner: 'a, b: c'\n"


# --------------------------------------------------------------------------- where we write


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_render_never_writes_over_its_own_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    source = tmp_path / "k8s"
    (source / "sub").mkdir(parents=True)
    (source / "d.yaml").write_text(DEPLOYMENT)
    to = {"same": source, "parent": tmp_path, "inside": source / "sub"}[where]
    code, err = run(tmp_path, capsys, "--from", str(source), "--to", str(to), "--clean")
    assert code == 2, err
    assert "--to" in err and "--from" in err
    assert (source / "d.yaml").read_text() == DEPLOYMENT


def test_render_to_the_current_directory_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    (source / "d.yaml").write_text(DEPLOYMENT)
    monkeypatch.chdir(source)
    code, err = run(tmp_path, capsys, "--from", ".", "--to", ".", "--clean")
    assert code == 2, err
    assert "Traceback" not in err


def test_render_to_the_current_directory_works_when_it_is_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    (source / "d.yaml").write_text(DEPLOYMENT)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    code, err = run(tmp_path, capsys, "--from", str(source), "--to", ".")
    assert code == 0, err
    assert (out / "d.yaml").read_text() == DEPLOYMENT


def test_a_fifo_in_a_walked_directory_is_skipped_not_waited_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d.yaml").write_text(DEPLOYMENT)
    os.mkfifo(tmp_path / "pipe.yaml")
    outcome: dict[str, tuple[int, str]] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(
            done=run(tmp_path, capsys, "--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader so that the test process can end
        fd = os.open(tmp_path / "pipe.yaml", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("update-manifest hangs on a FIFO")
    code, err = outcome["done"]
    assert code == 0, err
    assert "pipe.yaml: not a regular file; skipped" in err
    assert "app:v2" in (tmp_path / "d.yaml").read_text()


def test_a_fifo_given_by_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    code, err = run(
        tmp_path, capsys, "--in-place", str(tmp_path / "pipe.yaml"), "--image", "gcr.io/a/b:1"
    )
    assert code == 2, err
    assert "pipe.yaml: not a regular file" in err


def test_a_symlinked_file_stays_a_symlink_and_its_target_is_edited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "base" / "d.yaml"
    target.parent.mkdir()
    target.write_text(DEPLOYMENT)
    link = tmp_path / "overlay.yaml"
    link.symlink_to(Path("base") / "d.yaml")
    code, err = run(tmp_path, capsys, "--in-place", str(link), "--image", "gcr.io/proj/app:v2")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(Path("base") / "d.yaml")
    assert "app:v2" in target.read_text()


def test_a_failed_write_puts_back_the_original_files_themselves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rollback restores each file's inode, hence owner, group, mode and links."""
    paths = [tmp_path / name for name in ("a.yaml", "b.yaml")]
    for path in paths:
        path.write_text(DEPLOYMENT)
        path.chmod(0o640)
        if os.geteuid() == 0:
            os.chown(path, 65534, 65534)
    before = {p.name: (p.stat().st_ino, p.stat().st_uid, p.stat().st_gid) for p in paths}
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(manifest_io.os, "replace", failing_replace)
    code, err = run(tmp_path, capsys, "--in-place", str(tmp_path), "--image", "gcr.io/proj/app:v2")
    assert code == 2, err
    after = {p.name: (p.stat().st_ino, p.stat().st_uid, p.stat().st_gid) for p in paths}
    assert after == before
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in paths)
    assert all(p.read_text() == DEPLOYMENT for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml"]


def test_a_successful_write_keeps_the_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(DEPLOYMENT)
    if os.geteuid() == 0:  # as CI runs: the file belongs to someone else
        os.chown(path, 65534, 65534)
    owner = (path.stat().st_uid, path.stat().st_gid)
    code, err = run(tmp_path, capsys, "--in-place", str(path), "--image", "gcr.io/proj/app:v2")
    assert code == 0, err
    assert "app:v2" in path.read_text()
    assert (path.stat().st_uid, path.stat().st_gid) == owner


# --------------------------------------------------------------------------- the safety net


def test_the_post_splice_check_refuses_a_wrong_splice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A splice that changes anything else (a bug) is caught before any write."""
    real_apply = manifest_io.apply_edits

    def sloppy_apply(text: str, edits: object) -> str:
        return real_apply(text, edits).replace("name: web", "name: wbe")  # type: ignore[arg-type]

    monkeypatch.setattr(manifest_io, "apply_edits", sloppy_apply)
    manifest = tmp_path / "d.yaml"
    manifest.write_text(DEPLOYMENT)
    result = tmp_path / "result.json"
    code, err = run(
        tmp_path,
        capsys,
        "--in-place",
        str(manifest),
        "--image",
        "gcr.io/proj/app:v2",
        "--result-file",
        str(result),
    )
    assert code == 2, err
    assert "refusing to write: the edit would change more than the images" in err
    assert manifest.read_text() == DEPLOYMENT
    assert json.loads(result.read_text())["status"] == "error"
