"""Write the parts of other files that the registry of stages decides.

``steps/stages.py`` is the one registry of stages and their images. This
rewrites, from it, what lies between each ``BEGIN GENERATED NAME`` and
``END GENERATED NAME`` marker line; everything around the markers is
written by hand and left alone:

- ``Dockerfile.steps``: each image's environment (``deps-*``, ``env-*``) and
  its target;
- ``cloudbuild/steps.yaml``: a build step and a ``--help`` smoke step per
  image, and ``images:``;
- ``pyproject.toml``: ``[project.scripts]``;
- ``README.md``: the table of step images.

pyproject.toml's extras are checked, not written: which packages an extra
needs is a decision, not a consequence of the registry
(``tests/test_stage_registry.py`` checks that each stage's extras exist).

    .venv/bin/python scripts/stage_files.py           # rewrite the generated parts
    .venv/bin/python scripts/stage_files.py --check   # exit 1, naming each file that differs

``tests/test_stage_registry.py`` fails when a committed file differs from
what this writes, and proves on a copy of the tree that a new stage is its
module plus one registry row.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ".venv/bin/python scripts/stage_files.py"

if __name__ == "__main__":  # run as a script: the registry of the tree it is in
    sys.path.insert(0, str(ROOT))

from steps.stages import STAGES, TOOLS, Image, Stage, images_of  # noqa: E402


class MarkerError(Exception):
    """A file lacks a generated block's markers, or has them twice."""


def splice(text: str, name: str, body: str, path: str) -> str:
    """``text`` with the lines between block ``name``'s marker lines replaced by ``body``."""
    lines = text.splitlines(keepends=True)
    begin = re.compile(rf"\bBEGIN GENERATED {re.escape(name)}\b")
    end = re.compile(rf"\bEND GENERATED {re.escape(name)}\b")
    begins = [i for i, line in enumerate(lines) if begin.search(line)]
    ends = [i for i, line in enumerate(lines) if end.search(line)]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise MarkerError(
            f"{path}: needs one 'BEGIN GENERATED {name}' line and, after it, one "
            f"'END GENERATED {name}' line"
        )
    return "".join([*lines[: begins[0] + 1], body, *lines[ends[0] :]])


# -- Dockerfile.steps


def environment(image: Image) -> str:
    """The name of the virtualenv an image installs: its extras and extra packages."""
    return "-".join(image.extras + image.packages) or "core"


def _environments(images: Sequence[Image]) -> list[str]:
    out: list[str] = []
    done: set[str] = set()
    for image in images:
        env = environment(image)
        if env in done:
            continue
        done.add(env)
        extras = " ".join(image.extras)
        packages = "".join(f" {package}" for package in image.packages)
        users = ", ".join(i.target for i in images if environment(i) == env)
        out += [
            f"# {users}: extras {extras or '(none)'}" + (f"; and{packages}" if packages else ""),
            f"FROM build AS deps-{env}",
            "RUN python3 -m venv --without-pip /opt/gitops-steps \\",
            f" && /opt/build/bin/python /opt/build/requirements-of.py{' ' * bool(extras)}"
            f"{extras} > /tmp/requirements.txt \\",
            " && /opt/build/bin/pip --python /opt/gitops-steps/bin/python install --quiet "
            f"-r /tmp/requirements.txt{packages}",
            "",
            f"FROM deps-{env} AS env-{env}",
            "COPY --from=wheel /wheels /wheels",
            "RUN /opt/build/bin/pip --python /opt/gitops-steps/bin/python install --quiet "
            "--no-deps /wheels/*.whl \\",
            " && rm -f /opt/gitops-steps/bin/gitops-sandbox",
            "",
        ]
    return out


def _also(stages: Sequence[Stage], image: Image) -> list[str]:
    """The other stages that run in ``image`` (their script as entrypoint)."""
    if image.variant is not None:
        return []
    return [s.script for s in stages if s.image == image.target and s is not image.stage]


def dockerfile_block(stages: Sequence[Stage], version: str) -> str:
    images = images_of(tuple(stages))
    out = _environments(images)
    for image in images:
        about = image.variant.why if image.variant else f"{image.stage.script}"
        also = _also(stages, image)
        out += [
            f"# {image.target}: {about}" + (f"; also {', '.join(also)}" if also else ""),
            f"FROM {'with-git' if image.git else 'base'} AS {image.target}",
            f"COPY --from=env-{environment(image)} /opt/gitops-steps /opt/gitops-steps",
            f"ARG VERSION={version}",
            "ARG VCS_REF=unknown",
            "ARG SOURCE=https://github.com/gitops-steps/gitops-steps",
            f'LABEL org.opencontainers.image.title="{image.stage.script}" \\',
            '      org.opencontainers.image.source="${SOURCE}" \\',
            '      org.opencontainers.image.revision="${VCS_REF}" \\',
            '      org.opencontainers.image.version="${VERSION}"',
            f'ENTRYPOINT ["/opt/gitops-steps/bin/{image.stage.script}"]',
            "",
        ]
    return "\n".join(out[:-1]) + "\n"


# -- cloudbuild/steps.yaml


def steps_yaml_steps(stages: Sequence[Stage]) -> str:
    """A build step per image, one after the other (each reuses the layers of those
    before), then a ``--help`` smoke step per image."""
    images = images_of(tuple(stages))
    out: list[str] = []
    for image in images:
        tag = f"${{_STEPS_IMAGE_PREFIX}}/{image.target}:${{_STEPS_VERSION}}"
        out += [
            f"  - id: build-{image.target}",
            "    name: gcr.io/cloud-builders/docker",
            f"    args: [build, -f, Dockerfile.steps, --target, {image.target},",
            '           --build-arg, "BASE_IMAGE=${_BASE_IMAGE}", '
            '--build-arg, "VCS_REF=${_VCS_REF}",',
            '           --build-arg, "VERSION=${_STEPS_VERSION}",',
            f'           -t, "{tag}", .]',
            "    env: [DOCKER_BUILDKIT=1]",
        ]
    for image in images:
        out += [
            f"  - id: help-{image.target}",
            f"    name: ${{_STEPS_IMAGE_PREFIX}}/{image.target}:${{_STEPS_VERSION}}",
            "    args: [--help]",
            f"    waitFor: [build-{image.target}]",
        ]
    return "\n".join(out) + "\n"


def steps_yaml_images(stages: Sequence[Stage]) -> str:
    return "".join(
        f"  - ${{_STEPS_IMAGE_PREFIX}}/{image.target}:${{_STEPS_VERSION}}\n"
        for image in images_of(tuple(stages))
    )


# -- pyproject.toml


def pyproject_scripts(stages: Sequence[Stage], tools: Mapping[str, str]) -> str:
    scripts = {stage.script: stage.module for stage in stages} | dict(tools)
    return "".join(f'{script} = "{module}:main"\n' for script, module in scripts.items())


# -- README.md


def readme_images(stages: Sequence[Stage]) -> str:
    rows = [
        "| image (`--target`) | entrypoint | also runs | extras | git | budget above base |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for image in images_of(tuple(stages)):
        also = ", ".join(f"`{script}`" for script in _also(stages, image))
        extras = ", ".join(f"`{extra}`" for extra in image.extras) or "none"
        if image.packages:
            extras += "; " + ", ".join(image.packages)
        budget = f"{image.budget_mb:.0f} MB"
        if image.variant is not None:
            budget += f": {image.variant.why}"
        rows.append(
            f"| `{image.target}` | `{image.stage.script}` | {also} | {extras} "
            f"| {'yes' if image.git else ''} | {budget} |"
        )
    return "\n".join(rows) + "\n"


# -- the whole tree


def blocks(
    root: Path, stages: Sequence[Stage], tools: Mapping[str, str]
) -> dict[str, list[tuple[str, Callable[[], str]]]]:
    """Each file this writes (relative to ``root``), and its blocks: name, body."""
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    return {
        "Dockerfile.steps": [("targets", lambda: dockerfile_block(stages, version))],
        "cloudbuild/steps.yaml": [
            ("steps", lambda: steps_yaml_steps(stages)),
            ("images", lambda: steps_yaml_images(stages)),
        ],
        "pyproject.toml": [("scripts", lambda: pyproject_scripts(stages, tools))],
        "README.md": [("images", lambda: readme_images(stages))],
    }


def render(
    root: Path, stages: Sequence[Stage] = STAGES, tools: Mapping[str, str] = TOOLS
) -> dict[str, str]:
    """What each file this writes should hold: ``{path relative to root: text}``."""
    rendered: dict[str, str] = {}
    for path, parts in blocks(root, stages, tools).items():
        text = (root / path).read_text()
        for name, body in parts:
            text = splice(text, name, body(), path)
        rendered[path] = text
    return rendered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        rendered = render(ROOT)
    except MarkerError as exc:
        print(f"stage_files: {exc}", file=sys.stderr)
        return 2
    changed = [path for path, text in rendered.items() if (ROOT / path).read_text() != text]
    if args.check:
        for path in changed:
            print(f"{path}: differs from steps/stages.py; run {COMMAND}", file=sys.stderr)
        return 1 if changed else 0
    for path in changed:
        (ROOT / path).write_text(rendered[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
