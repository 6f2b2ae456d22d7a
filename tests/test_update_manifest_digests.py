"""update-manifest --resolve-digests against a real registry on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_registry import ImagePusher

from steps.update_manifest import main


def deployment(image: str) -> str:
    return (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  template:\n    spec:\n      containers:\n      - name: web\n"
        f"        image: {image}  # pinned by CI\n"
    )


def test_tag_is_pinned_to_the_digest_the_registry_serves(
    tmp_path: Path, images: ImagePusher
) -> None:
    digest = images.push("app", "v2")
    repository = images.repository("app")
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(deployment(f"{repository}:v1"))
    result_file = tmp_path / "result.json"

    code = main(
        [
            "--in-place", str(manifest),
            "--image", f"{repository}:v2",
            "--resolve-digests",
            "--insecure-registry", images.registry.address,
            "--result-file", str(result_file),
        ]
    )  # fmt: skip

    assert code == 0
    assert manifest.read_text() == deployment(f"{repository}@{digest}")
    result = json.loads(result_file.read_text())
    assert result["images"] == [
        {
            "spec": f"{repository}:v2",
            "requested": f"{repository}:v2",
            "pinned": f"{repository}@{digest}",
        }
    ]


def test_keep_tag_writes_tag_and_digest(tmp_path: Path, images: ImagePusher) -> None:
    digest = images.push("app", "v3")
    repository = images.repository("app")
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(deployment(f"{repository}:v1"))

    code = main(
        [
            "--in-place", str(manifest),
            "--image", f"{repository}:v3",
            "--resolve-digests", "--keep-tag",
            "--insecure-registry", images.registry.address,
        ]
    )  # fmt: skip

    assert code == 0
    assert manifest.read_text() == deployment(f"{repository}:v3@{digest}")


def test_image_index_pins_the_index_digest(tmp_path: Path, images: ImagePusher) -> None:
    amd64 = images.push("multi", "amd64", seed="amd64")
    arm64 = images.push("multi", "arm64", seed="arm64")
    index = images.push_index("multi", "v1", [amd64, arm64])
    repository = images.repository("multi")
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(deployment(f"{repository}:v0"))

    argv = ["--in-place", str(manifest), "--image", f"{repository}:v1"]
    argv += ["--resolve-digests", "--insecure-registry", images.registry.address]
    assert main(argv) == 0

    assert manifest.read_text() == deployment(f"{repository}@{index}")


def test_missing_tag_is_exit_2_and_nothing_is_written(
    tmp_path: Path, images: ImagePusher, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push("app", "v1")
    repository = images.repository("app")
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(deployment(f"{repository}:v1"))
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)

    argv = ["--in-place", str(manifest), "--image", f"{repository}:does-not-exist"]
    argv += ["--resolve-digests", "--insecure-registry", images.registry.address]
    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert f"{repository}:does-not-exist not found" in err
    assert "Traceback" not in err
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before


def test_flux_digest_marker_takes_the_resolved_digest(tmp_path: Path, images: ImagePusher) -> None:
    digest = images.push("chart-app", "1.4.0")
    repository = images.repository("chart-app")
    values = tmp_path / "values.yaml"
    values.write_text(
        "image:\n"
        f'  repository: {repository} # {{"$imagepolicy": "apps:chart-app:name"}}\n'
        '  tag: 1.3.0 # {"$imagepolicy": "apps:chart-app:tag"}\n'
        '  digest: "" # {"$imagepolicy": "apps:chart-app:digest"}\n'
    )

    argv = ["--in-place", str(values), "--image", f"apps:chart-app={repository}:1.4.0"]
    argv += ["--resolve-digests", "--insecure-registry", images.registry.address]
    assert main(argv) == 0

    assert values.read_text() == (
        "image:\n"
        f'  repository: {repository} # {{"$imagepolicy": "apps:chart-app:name"}}\n'
        '  tag: 1.4.0 # {"$imagepolicy": "apps:chart-app:tag"}\n'
        f'  digest: "{digest}" # {{"$imagepolicy": "apps:chart-app:digest"}}\n'
    )


def test_the_readme_demo_runs(tmp_path: Path) -> None:
    """scripts/demo: render the example, pin by digest, pin again in place."""
    import subprocess
    import sys

    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "steps.sandbox", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    render = json.loads((out / "render-result.json").read_text())
    in_place = json.loads((out / "in-place-result.json").read_text())
    assert render["status"] == in_place["status"] == "changed"
    deployment_text = (out / "manifests" / "deployment.yaml").read_text()
    assert in_place["changes"][0]["new"] in deployment_text
    assert "@sha256:" in in_place["changes"][0]["new"]
