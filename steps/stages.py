"""The one registry of stages: the pipeline's entry points and the images that carry them.

Everything else that lists stages is derived from ``STAGES`` (the runner's
image -> command mapping in ``steps/cloudbuild/engine.py``, the targets
``scripts/build-images`` builds, the image and packaging tests, the
benchmarks) or checked against it by ``tests/test_stage_registry.py``
(``pyproject.toml``'s console scripts and extras, ``Dockerfile.steps``'s
targets, ``cloudbuild/steps.yaml``, the README). Adding a stage is its module
plus one row here; the test then names every place still to write.

``python -m steps.stages`` prints the image targets, one a line (for
``scripts/build-images``). Pure data: importing this imports nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: a module with ``main(argv=None) -> int`` and its console script."""

    name: str
    """``update-manifest``: the console script is ``gitops-NAME``."""
    module: str
    """The module ``python -m`` runs and whose ``main`` the console script calls."""
    extras: tuple[str, ...]
    """The ``pyproject.toml`` extras its image installs."""
    image: str
    """The ``Dockerfile.steps`` target it runs in: its own name, or the image of
    the stage it shares (gitops-history runs in promote's image)."""
    git: bool = False
    """Its image carries the git binary."""
    kubectl: bool = False
    """Its image carries the pinned kubectl (Kustomize) of the ``render`` extra."""

    @property
    def script(self) -> str:
        return f"gitops-{self.name}"

    @property
    def has_own_image(self) -> bool:
        return self.image == self.name


STAGES: tuple[Stage, ...] = (
    Stage(name="test", module="steps.test_stage", extras=(), image="test"),
    Stage(
        name="update-manifest",
        module="steps.update_manifest",
        extras=("manifest", "render"),
        image="update-manifest",
        kubectl=True,
    ),
    Stage(
        name="push-candidate",
        module="steps.push_candidate",
        extras=("git",),
        image="push-candidate",
        git=True,
    ),
    Stage(
        name="verify-rollout",
        module="steps.verify_rollout",
        extras=("git", "verify"),
        image="verify-rollout",
        git=True,
    ),
    Stage(
        name="promote",
        module="steps.promote",
        extras=("git", "verify"),
        image="promote",
        git=True,
    ),
    Stage(name="history", module="steps.history", extras=("git",), image="promote", git=True),
)

IMAGE_STAGES: tuple[Stage, ...] = tuple(stage for stage in STAGES if stage.has_own_image)
"""The stages with an image of their own, in build order."""

IMAGE_TARGETS: tuple[str, ...] = tuple(stage.image for stage in IMAGE_STAGES)

TOOLS: dict[str, str] = {
    "gitops-cloudbuild": "steps.cloudbuild.__main__",
    "gitops-sandbox": "steps.sandbox.__main__",
}
"""Console scripts that are not stages: the local runner and the sandbox (never in an image)."""


def by_name(name: str) -> Stage:
    """The stage called ``name`` (``KeyError`` when there is none)."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(name)


if __name__ == "__main__":
    sys.stdout.write("".join(f"{target}\n" for target in IMAGE_TARGETS))
