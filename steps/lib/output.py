"""Where a stage's words go: progress on stderr, a JSON result in files.

Every string that leaves the process passes through ``redact`` so that a
secret registered with ``register_secret`` never reaches a log or a file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

BUILDER_OUTPUT_LIMIT = 4096
"""Cloud Build keeps at most 4 KiB of a step's ``$BUILDER_OUTPUT/output``."""

_REDACTED = "[REDACTED]"
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it would be printed."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    """Mask every registered secret in ``text`` (longest first)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return text


def _use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def say(message: str, *, stream: TextIO | None = None) -> None:
    """Print one line of progress to stderr (plain text unless a terminal)."""
    out = stream or sys.stderr
    out.write(redact(message) + "\n")
    out.flush()


def warn(message: str) -> None:
    """Print a warning line; bold yellow only on a terminal."""
    text = f"warning: {message}"
    if _use_colour(sys.stderr):
        text = f"\033[33m{text}\033[0m"
    say(text)


def _dumps(result: Mapping[str, Any], *, indent: int | None) -> str:
    return redact(json.dumps(result, indent=indent, sort_keys=False, default=str))


def fit_to_limit(result: Mapping[str, Any], limit: int = BUILDER_OUTPUT_LIMIT) -> str:
    """Serialise ``result`` in at most ``limit`` bytes by truncating its lists.

    The longest top-level list is halved until the JSON fits; each truncated
    list ``name`` gets a sibling ``name_omitted`` with the count dropped, so a
    reader knows the list is partial.
    """
    data: dict[str, Any] = dict(result)
    full: dict[str, list[Any]] = {k: list(v) for k, v in data.items() if isinstance(v, list)}
    text = _dumps(data, indent=None)
    while len(text.encode()) > limit:
        shrinkable = [k for k, v in data.items() if isinstance(v, list) and v]
        if not shrinkable:
            # Nothing left to cut: keep only what identifies the step.
            identity = ("step", "status", "exit_code")
            keep: dict[str, Any] = {k: data[k] for k in identity if k in data}
            keep["truncated"] = True
            return _dumps(keep, indent=None)
        longest = max(shrinkable, key=lambda k: len(json.dumps(data[k], default=str)))
        kept = len(data[longest]) // 2
        data[longest] = data[longest][:kept]
        data[f"{longest}_omitted"] = len(full[longest]) - kept
        text = _dumps(data, indent=None)
    return text


def umask() -> int:
    """This process's umask, read without changing it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def normal_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file or directory: 0666/0777 less
    the umask. ``mkstemp``/``mkdtemp`` make 0600/0700, right for secrets only."""
    return (0o777 if directory else 0o666) & ~umask()


def write_atomic(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename, with the
    mode the file had, or else the user's normal one (not ``mkstemp``'s 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # only when writing a file: it pulls in shutil, random, bz2, lzma

    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = normal_mode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(
    result: Mapping[str, Any],
    result_file: str | None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Write the result to ``--result-file`` and to ``$BUILDER_OUTPUT/output``."""
    env = os.environ if environ is None else environ
    if result_file:
        write_atomic(Path(result_file), _dumps(result, indent=2) + "\n")
    builder_output = env.get("BUILDER_OUTPUT")
    if builder_output:
        write_atomic(Path(builder_output) / "output", fit_to_limit(result))
