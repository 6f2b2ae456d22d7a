"""A plain (non-editable) install of this checkout in a temporary venv, as in the images.

The development ``.venv`` has an editable install: a meta-path finder that runs
on every import, and, with ``PYTHONDONTWRITEBYTECODE`` set, no ``.pyc`` for our
modules, so each process compiles them again. The images have neither. This
builds a wheel from the checkout (``pip wheel --no-deps``, setuptools from
pip's cache), installs it with ``extras`` pinned by ``constraints-image.txt``
into a new venv without pip, and byte-compiles it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) with bytecode caching on, as an installed image has."""
    base = dict(os.environ if env is None else env)
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    return base


def run_quietly(argv: list[str], env: dict[str, str]) -> None:
    """Run a setup command; its output only when it fails (pip warns about mirrors)."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed:\n{done.stdout}{done.stderr}")


@contextmanager
def plain_install(extras: str = "all", *packages: str) -> Iterator[Path]:
    """The ``bin`` directory of a temporary venv holding this checkout, installed.

    ``packages``: more to install beside it (the test image has pip and pytest).
    """
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as tmp:
        root = Path(tmp)
        env = child_env()
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        run_quietly([*pip, "wheel", "--no-deps", "-w", str(root / "wheels"), str(REPO)], env)
        (wheel,) = (root / "wheels").glob("*.whl")
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        requirement = f"{wheel}[{extras}]" if extras else str(wheel)
        constraints = str(REPO / "constraints-image.txt")
        install = [*pip, "--python", str(python), "install", "-c", constraints]
        run_quietly([*install, requirement, *packages], env)
        where = "import steps, pathlib; print(pathlib.Path(steps.__file__).parent)"
        site = subprocess.run(
            [str(python), "-c", where],
            check=True, capture_output=True, text=True, env=env,
        ).stdout.strip()  # fmt: skip
        subprocess.run([str(python), "-m", "compileall", "-q", site], check=True, env=env)
        yield venv / "bin"
