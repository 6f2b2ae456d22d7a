"""Each step image's size above its base image, against the size targets.

Cloud Build pulls every step image on every build, so size is part of the
product. Builds every image of the registry (steps/stages.py) with
scripts/build-images (cached layers make a rebuild take seconds), then prints,
per target, the bytes it adds to the base image, its budget (60 MB;
verify-rollout 180 MB; a stage's variant image, such as update-manifest-kustomize,
its own: the stage's plus the tool it exists for) and the ratio to it.

    .venv/bin/python benchmarks/bench_image_sizes.py [--no-build] [TARGET...]

Needs root and buildah/podman (see scripts/build-images).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from steps.lib import containers
from steps.stages import IMAGE_TARGETS, image_named

REPO = Path(__file__).resolve().parent.parent
TARGETS = IMAGE_TARGETS
MB = 1_000_000


def podman_env() -> dict[str, str]:
    """The image storage every entry point shares (steps/lib/containers.py)."""
    return {**os.environ, **containers.environ()}


def image_size(name: str) -> int:
    proc = subprocess.run(
        ["podman", "image", "inspect", name, "--format", "{{json .Size}}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(proc.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=list(TARGETS), metavar="TARGET")
    parser.add_argument("--no-build", action="store_true", help="measure the images as built")
    parser.add_argument("--prefix", default="localhost/gitops-steps")
    parser.add_argument("--tag", default="dev")
    parser.add_argument("--base", default="localhost/gitops-steps-base:bookworm")
    args = parser.parse_args()
    if not args.no_build:
        env = {**os.environ, "STEPS_IMAGE_PREFIX": args.prefix, "STEPS_TAG": args.tag}
        env["BASE_IMAGE"] = args.base
        subprocess.run([str(REPO / "scripts" / "build-images"), *args.targets], env=env, check=True)
    base = image_size(args.base)
    print(f"base image {args.base}: {base / MB:.1f} MB")
    print(f"{'target':<26} {'above base':>11} {'budget':>8} {'ratio':>6}  total")
    over = []
    for target in args.targets:
        size = image_size(f"{args.prefix}/{target}:{args.tag}")
        added = (size - base) / MB
        image = image_named(target)
        ratio = added / image.budget_mb
        flag = "" if ratio <= 1 else "  OVER"
        if ratio > 1:
            over.append(target)
        note = f"  (variant of {image.stage.name}: {image.variant.why})" if image.variant else ""
        print(
            f"{target:<26} {added:>8.1f} MB {image.budget_mb:>5.0f} MB {ratio:>6.2f}  "
            f"{size / MB:.1f} MB{flag}{note}"
        )
    if over:
        print(f"over target: {', '.join(over)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
