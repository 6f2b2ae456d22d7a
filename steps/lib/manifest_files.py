"""Finding manifest files below a directory: no hidden directories, no symlinks,
and an unreadable directory is an error.

Apart from ``manifest_io`` (which edits files) so that verify-rollout, which
only reads, does not load the YAML editing machinery before its first request.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from steps.lib.errors import ManifestError
from steps.lib.output import warn

YAML_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_FILENAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})


def walk_files(top: Path) -> Iterator[tuple[str, str]]:
    """(directory, file name) below ``top``, sorted, without hidden dirs or symlinks.

    Unlike a bare os.walk, a directory that cannot be read is an error: a
    silently skipped directory would be a silently skipped manifest.
    """

    def fail(exc: OSError) -> None:
        raise ManifestError(str(exc.filename), None, f"cannot read: {exc.strerror}")

    for root, dirs, files in os.walk(top, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                raise ManifestError(path, None, f"cannot read: {exc.strerror}") from None
            if stat.S_ISLNK(mode):
                continue
            if not stat.S_ISREG(mode):  # a FIFO would block the read forever
                warn(f"{path}: not a regular file; skipped")
                continue
            yield root, name
