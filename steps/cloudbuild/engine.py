"""How a step's image becomes a command line here (pure, apart from ``which``).

- ``process``: our step images (``.../<stage>:TAG``) run the console script
  ``gitops-<stage>`` from this installation; ``sh``/``bash``/``gitops-X``
  entrypoints run locally; Google's builders are mapped to local tools
  (git -> git, docker build/push/tag -> buildah, gsutil -> a clear failure),
  ``python:*`` to this Python; ``--map-image IMAGE=COMMAND`` adds more.
- ``podman``/``docker``: each step runs in its image, except images that
  cannot be pulled here (Google's builders, and any ``--map-image`` whose
  value is a command), which run as in ``process``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from steps.cloudbuild.config import Step

STAGES = ("test", "update-manifest", "push-candidate", "verify-rollout", "promote")
_STEP_IMAGE = re.compile(r"^(?:.*/)?(?P<stage>" + "|".join(STAGES) + r")(?::[^/]*)?(?:@.*)?$")
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


def find_mapping(image: str, maps: Sequence[Mapping_]) -> Mapping_ | None:
    for item in maps:
        if fnmatch.fnmatchcase(image, item.pattern) or fnmatch.fnmatchcase(
            _bare(image), item.pattern
        ):
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
    if steps_prefix and image.startswith(steps_prefix.rstrip("/") + "/"):
        rest = image[len(steps_prefix.rstrip("/")) + 1 :]
        stage = rest.split(":", 1)[0].split("@", 1)[0]
        return stage if stage in STAGES else None
    match = _STEP_IMAGE.match(image)
    if match and "gitops-steps" in image:
        return match.group("stage")
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
        return [buildah, "bud", "--isolation", "chroot", "--layers", "--pull=false", *rest]
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
    if mapping is not None and is_command(mapping.target):
        if entrypoint:
            return [local_tool(entrypoint), *args]
        return [*shlex.split(mapping.target), *args]
    if entrypoint:
        if entrypoint in ("sh", "bash"):
            return [shutil.which(entrypoint) or f"/bin/{entrypoint}", *args]
        if entrypoint in ("python", "python3"):
            return [sys.executable, *args]
        return [local_tool(entrypoint), *args]
    stage = stage_of(image, steps_prefix)
    if stage is not None:
        return [local_tool(f"gitops-{stage}"), *args]
    bare = _bare(image)
    if bare == GIT:
        return [shutil.which("git") or "git", *args]
    if bare == DOCKER:
        return docker_to_buildah(args)
    if bare == GSUTIL:
        raise NotRunnable(
            f"{GSUTIL} is not available locally; map it with --map-image {GSUTIL}=COMMAND"
        )
    if bare in ("python", "docker.io/library/python", "library/python") or bare.endswith("/python"):
        if not args:
            return [sys.executable]
        first = args[0]
        if first in ("python", "python3") or re.fullmatch(r"python3(\.\d+)?", first):
            return [sys.executable, *args[1:]]
        if first in ("pip", "pip3"):
            return [sys.executable, "-m", "pip", *args[1:]]
        return [shutil.which(first) or first, *args[1:]]
    raise NotRunnable(
        f"image {image!r} cannot be run by the process engine; "
        f"map it with --map-image {bare}=COMMAND (or use --engine podman)"
    )


def runs_locally(image: str, maps: Sequence[Mapping_]) -> bool:
    """Under podman/docker, whether a step still runs as a local process."""
    mapping = find_mapping(image, maps)
    if mapping is not None:
        return is_command(mapping.target)
    return _bare(image).startswith(GOOGLE_BUILDERS)


def container_image(image: str, maps: Sequence[Mapping_]) -> str:
    mapping = find_mapping(image, maps)
    if mapping is None:
        return image
    if "*" in mapping.pattern and "*" in mapping.target:
        prefix = mapping.pattern.split("*", 1)[0]
        return mapping.target.replace("*", image[len(prefix) :], 1)
    return mapping.target


def containers_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """CONTAINERS_CONF/CONTAINERS_STORAGE_CONF: the storage every entry point shares."""
    from steps import containers

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
