"""The local demo: run update-manifest on the bundled example, for real.

Starts a registry on loopback, pushes an image to it, renders the example
app's manifests with that image pinned by digest, then pins a newer build in
place, showing what changed. Everything it writes goes under ``--out``.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from steps import update_manifest
from steps.sandbox.registry import LocalRegistry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "app" / "k8s"
TEMPLATE_IMAGE = "us-docker.pkg.dev/demo-project/apps/hello"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _diff(before: str, after: str, name: str) -> None:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), name, name
    )
    sys.stdout.writelines(lines)
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gitops-sandbox demo", description=__doc__)
    parser.add_argument("--out", default=str(REPO / "out" / "demo"), help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    with LocalRegistry(out / "registry", port=0) as registry:
        repository = f"{registry.address}/apps/hello"
        _step(f"registry on {registry.address}: pushing apps/hello:1.0 and apps/hello:1.1")
        first = registry.push_image("apps/hello", "1.0", seed="1.0")
        second = registry.push_image("apps/hello", "1.1", seed="1.1")
        print(f"apps/hello:1.0 is {first}\napps/hello:1.1 is {second}")

        manifests = out / "manifests"
        _step(f"render {EXAMPLE.relative_to(REPO)} -> {manifests}, pinning 1.0 by digest")
        code = update_manifest.main(
            [
                "--from", str(EXAMPLE), "--to", str(manifests),
                "--set", "PROJECT_ID=demo-project",
                "--image", f"{TEMPLATE_IMAGE}={repository}:1.0",
                "--resolve-digests", "--insecure-registry", registry.address,
                "--result-file", str(out / "render-result.json"),
            ]
        )  # fmt: skip
        if code:
            return code
        template = (EXAMPLE / "deployment.yaml.tpl").read_text()
        rendered = (manifests / "deployment.yaml").read_text()
        _diff(template, rendered, "deployment.yaml")

        _step("pin 1.1 in place: only the image changes, byte for byte")
        code = update_manifest.main(
            [
                "--in-place", str(manifests),
                "--image", f"{repository}:1.1",
                "--resolve-digests", "--insecure-registry", registry.address,
                "--result-file", str(out / "in-place-result.json"),
            ]
        )  # fmt: skip
        if code:
            return code
        _diff(rendered, (manifests / "deployment.yaml").read_text(), "deployment.yaml")

    _step(f"results: {out / 'render-result.json'} and {out / 'in-place-result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
