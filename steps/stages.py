"""The one registry of stages: the pipeline's entry points and the images that carry them.

Everything else that lists stages or images comes from ``STAGES``: read when
it runs (the runner's image -> command mapping in
``steps/cloudbuild/engine.py``, the targets ``scripts/build-images`` builds,
the image and packaging tests, the benchmarks and their size budgets), or
written from it by ``scripts/stage_files.py`` between ``GENERATED`` markers
(``Dockerfile.steps``'s environments and targets, ``cloudbuild/steps.yaml``'s
build and smoke steps and ``images:``, ``pyproject.toml``'s console scripts,
the README's table of images). ``tests/test_stage_registry.py`` checks all of
them, and ``pyproject.toml``'s extras and the README's section per stage,
which people write. Adding a stage is its module plus one row here, then
``.venv/bin/python scripts/stage_files.py`` and its README section.

``python -m steps.stages`` prints the image targets, one a line (for
``scripts/build-images``). Pure data: importing this imports nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

DEFAULT_BUDGET_MB = 60.0
"""Issue 15: what a step image may add to its base (Cloud Build pulls it on every build)."""


@dataclass(frozen=True)
class Variant:
    """A second image of a stage: the stage plus a tool too big for every build to pull.

    Its target is ``STAGE-SUFFIX``; it runs the same console script with the
    same flags, and only builds that use the tool name it.
    """

    suffix: str
    extras: tuple[str, ...]
    """Extras installed on top of the stage's own."""
    budget_mb: float
    """Its size budget above the base: the stage's, plus the tool it exists for."""
    why: str
    """What it adds, for the docs: one line."""


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
    packages: tuple[str, ...] = ()
    """Packages its image installs beside the extras (the test stage's pytest and pip)."""
    budget_mb: float = DEFAULT_BUDGET_MB
    """Its image's size budget above the base (``benchmarks/bench_image_sizes.py``)."""
    variants: tuple[Variant, ...] = ()
    """Other images of this stage, each with something only some builds need."""

    @property
    def script(self) -> str:
        return f"gitops-{self.name}"

    @property
    def has_own_image(self) -> bool:
        return self.image == self.name


@dataclass(frozen=True)
class Image:
    """One step image (a ``Dockerfile.steps`` target): a stage's console script as
    entrypoint, in a virtualenv with the stage's extras."""

    target: str
    stage: Stage
    extras: tuple[str, ...]
    budget_mb: float
    variant: Variant | None = None

    @property
    def git(self) -> bool:
        return self.stage.git

    @property
    def kubectl(self) -> bool:
        """It carries the pinned kubectl (Kustomize) of the ``render`` extra."""
        return "render" in self.extras

    @property
    def packages(self) -> tuple[str, ...]:
        return self.stage.packages


STAGES: tuple[Stage, ...] = (
    Stage(
        name="test",
        module="steps.test_stage",
        extras=(),
        image="test",
        packages=("pytest", "pip"),
    ),
    Stage(
        name="update-manifest",
        module="steps.update_manifest",
        extras=("manifest",),
        image="update-manifest",
        variants=(
            Variant(
                suffix="kustomize",
                extras=("render",),
                # 60 MB and kubectl's 61.9 MB binary, the smallest real Kustomize
                # any reachable registry ships (docs/ARCHITECTURE.md).
                budget_mb=125.0,
                why="update-manifest with the real Kustomize (kubectl 1.37), for --kustomize",
            ),
        ),
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
        budget_mb=180.0,
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


def images_of(stages: tuple[Stage, ...]) -> tuple[Image, ...]:
    """Each stage's own image, then its variants, in registry order."""
    found: list[Image] = []
    for stage in stages:
        if not stage.has_own_image:
            continue
        found.append(Image(stage.name, stage, stage.extras, stage.budget_mb))
        for variant in stage.variants:
            extras = stage.extras + variant.extras
            target = f"{stage.name}-{variant.suffix}"
            found.append(Image(target, stage, extras, variant.budget_mb, variant))
    return tuple(found)


IMAGES: tuple[Image, ...] = images_of(STAGES)
"""Every step image, in build order."""

IMAGE_TARGETS: tuple[str, ...] = tuple(image.target for image in IMAGES)

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


def image_named(target: str) -> Image:
    """The image whose ``Dockerfile.steps`` target is ``target`` (``KeyError`` when none)."""
    for image in IMAGES:
        if image.target == target:
            return image
    raise KeyError(target)


if __name__ == "__main__":
    sys.stdout.write("".join(f"{target}\n" for target in IMAGE_TARGETS))
