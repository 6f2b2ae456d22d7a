"""How a step's image becomes a command line here (pure, apart from ``which``).

Where a step runs (``placement``):

- on the host, only when that is safe: our stage images under the
  ``process`` engine (the console script ``gitops-<stage>`` of this
  installation, or the entrypoint the step names), Google's builders we
  have a local tool for (git -> git, docker build/push/tag -> buildah,
  gsutil -> a clear failure), and images the user mapped to a command with
  ``--map-image IMAGE=COMMAND``;
- in a container otherwise: every step under ``podman``/``docker``, and a
  third-party image under ``process`` when podman is installed. Without a
  container engine such a step stops, naming ``--map-image`` and
  ``--engine``: a user's image never runs its commands on the host.

``--map-image PATTERN=TARGET``: PATTERN is matched against the image as
written and without its tag/digest; ``*`` in PATTERN matches any run of
characters (``/`` and ``:`` included). TARGET is a command (it has a space or
no ``/``: ``git``, ``python3 -m x``) or an image; in an image TARGET each
``*`` is replaced, in order, by what the matching ``*`` of PATTERN matched,
and a TARGET without a tag or digest keeps the image's own tag
(``gcr.io/p/*=localhost/*`` maps ``gcr.io/p/a/b:1`` to ``localhost/a/b:1``).
The first matching ``--map-image`` wins.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from steps.cloudbuild.stepgraph import Step
from steps.stages import IMAGES, by_name

STAGES = {image.target: image.stage.name for image in IMAGES}
"""Our step images (steps/stages.py), each named after its target, and the stage each runs."""
_STEP_IMAGE = re.compile(
    r"^(?:.*/)?(?P<image>" + "|".join(sorted(STAGES, key=len, reverse=True)) + r")"
    r"(?::[^/]*)?(?:@.*)?$"
)
GIT = "gcr.io/cloud-builders/git"
DOCKER = "gcr.io/cloud-builders/docker"
GSUTIL = "gcr.io/cloud-builders/gsutil"
GOOGLE_BUILDERS = ("gcr.io/cloud-builders/", "gcr.io/google.com/cloudsdktool/")
PODMAN_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")


class NotRunnable(Exception):
    """The step's image has no local equivalent; the message says what to do."""


@dataclass(frozen=True)
class Mapping_:
    pattern: str
    target: str


def parse_map_images(items: Sequence[str]) -> list[Mapping_]:
    out: list[Mapping_] = []
    for item in items:
        pattern, sep, target = item.partition("=")
        if not sep or not pattern or not target:
            raise ValueError(f"--map-image: expected IMAGE=COMMAND_OR_IMAGE, got {item!r}")
        out.append(Mapping_(pattern, target))
    return out


def _bare(image: str) -> str:
    """The image without tag or digest (``gcr.io/x/y:1`` -> ``gcr.io/x/y``)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rfind(":")]
    return name


def _pattern(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything; every other character is literal."""
    return re.compile("".join("(.*)" if c == "*" else re.escape(c) for c in pattern) + r"\Z")


def _match(image: str, item: Mapping_) -> re.Match[str] | None:
    regex = _pattern(item.pattern)
    return regex.match(image) or regex.match(_bare(image))


def find_mapping(image: str, maps: Sequence[Mapping_]) -> Mapping_ | None:
    for item in maps:
        if _match(image, item):
            return item
    return None


def is_command(target: str) -> bool:
    """A ``--map-image`` value is a command unless it looks like an image."""
    first = shlex.split(target)[0] if target.strip() else target
    return " " in target.strip() or "/" not in first or first.startswith(("/", "./"))


def local_tool(name: str) -> str:
    """A command of ours (next to this Python) or from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    return found or name


def stage_of(image: str, steps_prefix: str | None) -> str | None:
    """The stage a step image runs (``.../update-manifest-kustomize:1`` -> update-manifest)."""
    if steps_prefix and image.startswith(steps_prefix.rstrip("/") + "/"):
        rest = image[len(steps_prefix.rstrip("/")) + 1 :]
        return STAGES.get(rest.split(":", 1)[0].split("@", 1)[0])
    match = _STEP_IMAGE.match(image)
    if match and "gitops-steps" in image:
        return STAGES[match.group("image")]
    return None


def registry_insecure(image: str) -> bool:
    host = image.split("/", 1)[0]
    return host.startswith(("127.0.0.1", "localhost"))


def docker_to_buildah(args: Sequence[str]) -> list[str]:
    """``docker build|push|tag ...`` as the buildah command that does it here."""
    if not args:
        raise NotRunnable(f"{DOCKER} without args: nothing to do")
    verb, rest = args[0], list(args[1:])
    buildah = shutil.which("buildah") or "buildah"
    if verb == "build":
        return [buildah, "bud", "--isolation", "chroot", "--layers", "--pull=never", *rest]
    if verb == "push":
        images = [a for a in rest if not a.startswith("-")]
        flags = [a for a in rest if a.startswith("-") and a not in ("--all-tags", "-a")]
        if not images:
            raise NotRunnable("docker push: no image named")
        tls = ["--tls-verify=false"] if registry_insecure(images[0]) else []
        return [buildah, "push", *tls, *flags, images[0], f"docker://{images[0]}"]
    if verb == "tag":
        return [buildah, "tag", *rest]
    raise NotRunnable(
        f"{DOCKER} {verb!r} has no local equivalent (build, push and tag do); "
        f"map the image with --map-image {DOCKER}=COMMAND"
    )


_BUILD_VALUE_FLAGS = {
    "-f", "--file", "-t", "--tag", "--build-arg", "--target", "--network", "--platform",
    "--cache-from", "--label", "--iidfile", "--secret", "--ssh", "--progress", "-o", "--output",
}  # fmt: skip
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<name>\S+))?", re.I)
_ARG = re.compile(r"^\s*ARG\s+(?P<name>\w+)(?:=(?P<value>\S*))?", re.I)


def dockerfile_bases(args: Sequence[str], workdir: Path) -> list[str]:
    """The base images ``docker build ARGS`` (run in ``workdir``) starts from.

    Stage names, ``scratch`` and ``ARG`` values (defaults before the first
    ``FROM``, overridden by ``--build-arg``) are resolved; an unreadable
    Dockerfile gives no bases (the build itself will say what is wrong).
    """
    dockerfile: str | None = None
    build_args: dict[str, str] = {}
    positional: list[str] = []
    items = list(args[1:])
    index = 0
    while index < len(items):
        item = items[index]
        flag, eq, inline = item.partition("=")
        if flag in _BUILD_VALUE_FLAGS:
            value = inline if eq else (items[index + 1] if index + 1 < len(items) else "")
            index += 1 if eq else 2
            if flag in ("-f", "--file"):
                dockerfile = value
            elif flag == "--build-arg":
                key, _, val = value.partition("=")
                build_args[key] = val
            continue
        if not item.startswith("-"):
            positional.append(item)
        index += 1
    context = workdir / (positional[-1] if positional else ".")
    path = workdir / dockerfile if dockerfile else context / "Dockerfile"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    values: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    for line in lines:
        arg = _ARG.match(line)
        if arg and not stages and not bases:
            values[arg.group("name")] = build_args.get(arg.group("name"), arg.group("value") or "")
            continue
        found = _FROM.match(line)
        if not found:
            continue
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), found.group("image"))
        if image.lower() != "scratch" and image not in stages and image not in bases:
            bases.append(image)
        if found.group("name"):
            stages.add(found.group("name"))
    return bases


def local_command(
    step: Step,
    image: str,
    args: Sequence[str],
    *,
    steps_prefix: str | None,
    maps: Sequence[Mapping_],
) -> list[str]:
    """The local argv for a step (``process`` engine); raises ``NotRunnable``."""
    entrypoint = step.entrypoint
    mapping = find_mapping(image, maps)
    stage = stage_of(image, steps_prefix)
    trusted = (mapping is not None and is_command(mapping.target)) or stage is not None
    if entrypoint and (trusted or _bare(image).startswith(GOOGLE_BUILDERS)):
        if entrypoint in ("sh", "bash"):
            return [shutil.which(entrypoint) or f"/bin/{entrypoint}", *args]
        if entrypoint in ("python", "python3"):
            return [sys.executable, *args]
        return [local_tool(entrypoint), *args]
    if mapping is not None and is_command(mapping.target):
        return [*shlex.split(mapping.target), *args]
    if stage is not None:
        return [local_tool(by_name(stage).script), *args]
    bare = _bare(image)
    if bare == GIT:
        return [shutil.which("git") or "git", *args]
    if bare == DOCKER:
        return docker_to_buildah(args)
    if bare == GSUTIL:
        raise NotRunnable(
            f"{GSUTIL} is not available locally; map it with --map-image {GSUTIL}=COMMAND"
        )
    if bare.startswith(GOOGLE_BUILDERS):
        raise NotRunnable(
            f"{image} has no local equivalent here (git, and docker build/push/tag, have); "
            f"map it with --map-image {bare}=COMMAND"
        )
    raise NotRunnable(unmapped_message(image))


def unmapped_message(image: str) -> str:
    return (
        f"image {image!r} is not one of our stage images: it never runs on the host "
        f"unless mapped, and no container engine is installed; map it with "
        f"--map-image {_bare(image)}=COMMAND or run with --engine podman|docker"
    )


HOST, CONTAINER = "host", "container"


def placement(image: str, engine: str, maps: Sequence[Mapping_], steps_prefix: str | None) -> str:
    """``host`` or ``container``: where a step runs (the module's rules)."""
    mapping = find_mapping(image, maps)
    if mapping is not None:
        return HOST if is_command(mapping.target) else CONTAINER
    if _bare(image).startswith(GOOGLE_BUILDERS):
        return HOST
    if engine == "process" and stage_of(image, steps_prefix) is not None:
        return HOST
    return CONTAINER


def container_engine_for(engine: str) -> str | None:
    """The engine a container step uses: the chosen one, else podman if installed."""
    if engine != "process":
        return engine
    return "podman" if shutil.which("podman") else None


def _reference_suffix(image: str) -> str:
    """``:tag`` and/or ``@digest`` of ``image`` ("" when it has neither)."""
    return image[len(_bare(image)) :]


def container_image(image: str, maps: Sequence[Mapping_]) -> str:
    """The image a step runs in after ``--map-image`` (the module's rule)."""
    mapping = find_mapping(image, maps)
    if mapping is None:
        return image
    match = _match(image, mapping)
    assert match is not None
    target = mapping.target
    groups = iter(match.groups())
    target = re.sub(r"\*", lambda _: next(groups, ""), target)
    if _reference_suffix(target) == "" and match.string == _bare(image):
        target += _reference_suffix(image)
    return target


def containers_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """CONTAINERS_CONF/CONTAINERS_STORAGE_CONF: the storage every entry point shares."""
    from steps.lib import containers

    return containers.environ(os.environ if environ is None else environ)


def container_command(
    engine: str,
    step: Step,
    image: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    mounts: Sequence[tuple[str, str]],
    workdir: str,
    script_path: str | None,
    name: str,
    shebang: bool = False,
) -> list[str]:
    """``podman run ...`` (or docker) for one step, Cloud Build style."""
    base = [shutil.which(engine) or engine]
    if engine == "podman":
        base += list(PODMAN_FLAGS)
    argv = [*base, "run", "--rm", "--name", name, "--network", "host", "-w", workdir]
    for host, inside in mounts:
        argv += ["-v", f"{host}:{inside}"]
    for key in sorted(env):
        argv += ["-e", key]
    if script_path is not None and shebang:
        return [*argv, "--entrypoint", script_path, image]
    if script_path is not None:
        return [*argv, "--entrypoint", "sh", image, script_path]
    if step.entrypoint:
        argv += ["--entrypoint", step.entrypoint]
    return [*argv, image, *args]
