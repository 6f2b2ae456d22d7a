"""Where buildah and podman keep our images here: one cache, one storage choice.

``scripts/build-images``, ``gitops-cloudbuild`` (its docker builder and podman
engine), the sandbox and the image tests all build or run images in the same
storage, so they must agree on it: the cache directory is ``$GITOPS_CACHE_DIR``
or ``$XDG_CACHE_HOME/gitops-steps`` or ``~/.cache/gitops-steps``, and the
storage driver is chosen once, when ``storage.conf`` is first written
(``overlay`` when the kernel has it and ``/`` is not itself an overlay, else
``vfs``; ``$STORAGE_DRIVER`` overrides). An existing ``storage.conf`` is never
rewritten: changing the driver would orphan every image already stored.

``python -m steps.lib.containers`` prints the same settings as ``export`` lines
for the shell (``scripts/build-images`` evaluates them). Standard library only.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# No ulimits: the runtime on machines like ours cannot set them.
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The gitops-steps cache directory for ``environ`` (default: this process's).

    The fallback is this user's home, never ``environ``'s ``HOME``: a build
    step's environment says ``HOME=/builder/home``, and its buildah must still
    find the images the rest of us stored."""
    env = os.environ if environ is None else environ
    if env.get("GITOPS_CACHE_DIR"):
        return Path(env["GITOPS_CACHE_DIR"])
    xdg = env.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "gitops-steps"


def choose_driver(
    environ: Mapping[str, str] | None = None,
    filesystems: str | None = None,
    root_fs_type: str | None = None,
) -> str:
    """``overlay`` where it works on this machine, else ``vfs`` (every layer a full copy)."""
    env = os.environ if environ is None else environ
    if env.get("STORAGE_DRIVER"):
        return env["STORAGE_DRIVER"]
    if filesystems is None:
        try:
            filesystems = Path("/proc/filesystems").read_text()
        except OSError:
            filesystems = ""
    if root_fs_type is None:
        root_fs_type = _root_fs_type()
    has_overlay = any(line.split()[-1:] == ["overlay"] for line in filesystems.splitlines())
    # overlay on overlay is refused by the kernel (a container's own root).
    return "overlay" if has_overlay and root_fs_type != "overlay" else "vfs"


def _root_fs_type() -> str:
    """The type of the filesystem mounted at ``/`` (from /proc/self/mounts)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    found = ""
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/":
            found = fields[2]  # the last mount on / is the one in effect
    return found


def storage_conf(driver: str, cache: Path) -> str:
    """The ``storage.conf`` text for ``driver`` with its storage under ``cache`` (pure)."""
    return (
        f'[storage]\ndriver = "{driver}"\n'
        f'graphroot = "{cache / "storage"}"\nrunroot = "{cache / "run"}"\n'
    )


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless it exists; safe when two processes race."""
    if path.exists():
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    try:
        os.link(partial, path)  # fails if another process got there first
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF`` for our storage (made if needed)."""
    env = os.environ if environ is None else environ
    cache = cache_dir(env)
    cache.mkdir(parents=True, exist_ok=True)
    conf, storage = cache / "containers.conf", cache / "storage.conf"
    _write_once(conf, CONTAINERS_CONF)
    _write_once(storage, storage_conf(choose_driver(env), cache))
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def main(argv: Sequence[str] | None = None) -> int:
    """Print ``export`` lines: the cache directory and the two configuration files."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print("usage: python -m steps.lib.containers", file=sys.stderr)
        return 2
    values = {"GITOPS_CACHE_DIR": str(cache_dir()), **environ()}
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
