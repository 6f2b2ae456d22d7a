"""Manifest files on disk: find, read, pin images in place, write all or nothing.

The library under gitops-update-manifest (``--in-place``, and ``--from``'s
reading) and push-candidate's ``--image`` mode: plan every file's changes
first, verify each spliced text, then replace the files atomically, putting
back every replaced file if one write fails.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steps.lib.errors import ManifestError, UsageError
from steps.lib.image_rules import ImageRule, check_rules_distinct, parse_image_rule
from steps.lib.manifest_edit import plan_file
from steps.lib.manifest_files import KUSTOMIZATION_FILENAMES, YAML_SUFFIXES, walk_files
from steps.lib.manifest_splice import Change, apply_edits, verify_plan
from steps.lib.output import warn

# --------------------------------------------------------------------------- I/O model


@dataclass
class FileOutcome:
    """One file read and, when it changes, its new bytes."""

    display: str
    source: Path
    original: bytes
    new: bytes | None = None
    changes: list[Change] = field(default_factory=list)
    output_name: str | None = None  # render mode: path relative to --to


@dataclass
class Outcome:
    files: list[FileOutcome]
    matched: set[str]
    skipped: list[str] = field(default_factory=list)
    upstream: list[Change] = field(default_factory=list)
    """Changes made before a further step (Kustomize) produced ``files``."""

    @property
    def changes(self) -> list[Change]:
        return self.upstream + [change for outcome in self.files for change in outcome.changes]

    @property
    def changed_files(self) -> list[FileOutcome]:
        return [outcome for outcome in self.files if outcome.new is not None]


# --------------------------------------------------------------------------- pinning in place


def update_in_place(
    paths: Sequence[Path], image_specs: Sequence[str], *, allow_unmatched: bool = False
) -> list[Change]:
    """Apply ``--image`` specs to files and directories in place (for other stages).

    Raises UsageError / ManifestError on bad input, having written nothing.
    """
    rules = parse_rules(image_specs)
    outcome = plan_in_place(paths, rules)
    check_unmatched(rules, outcome.matched, allow_unmatched)
    write_in_place(outcome.changed_files)
    return outcome.changes


def parse_rules(image_specs: Sequence[str]) -> list[ImageRule]:
    rules = [parse_image_rule(spec) for spec in image_specs]
    check_rules_distinct(rules)
    return rules


def check_unmatched(rules: Sequence[ImageRule], matched: set[str], allow: bool) -> None:
    unmatched = [rule.spec for rule in rules if rule.spec not in matched]
    if unmatched and not allow:
        names = ", ".join(unmatched)
        raise UsageError(
            f"--image {names}: matches no container, kustomization image or marker "
            "(pass --allow-unmatched to accept this)"
        )
    for spec in unmatched:
        warn(f"--image {spec} matched nothing")


# --------------------------------------------------------------------------- reading


def iter_manifest_files(path: Path) -> Iterator[Path]:
    """A file as given, or a directory's YAML files (hidden directories skipped)."""
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError as exc:
        raise ManifestError(str(path), None, f"cannot read: {exc.strerror}") from None
    if is_file:
        yield path
        return
    if not is_dir:
        if path.exists():
            raise UsageError(f"--in-place {path}: not a regular file or a directory")
        raise UsageError(f"--in-place {path}: no such file or directory")
    for root, name in walk_files(path):
        if is_manifest_name(name):
            yield Path(root, name)


def is_manifest_name(name: str) -> bool:
    return name.endswith(YAML_SUFFIXES) or name in KUSTOMIZATION_FILENAMES


def read_bytes(path: Path, display: str) -> bytes:
    """A regular file's bytes; anything else (a FIFO swapped in meanwhile) is refused.

    Opened without blocking, so that a FIFO cannot hang the stage before the check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ManifestError(display, None, f"cannot read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ManifestError(display, None, "not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise ManifestError(display, None, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def decode(display: str, data: bytes) -> tuple[str, bytes]:
    """UTF-8 text and its byte-order mark (kept as it was)."""
    bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    try:
        return data[len(bom) :].decode("utf-8"), bom
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(display, line, "not UTF-8 text") from None


def plan_text(
    display: str, text: str, bom: bytes, rules: Sequence[ImageRule], matched: set[str]
) -> tuple[bytes | None, list[Change]]:
    """New bytes for a text (None when unchanged), verified before returning."""
    kustomization = Path(display).name in KUSTOMIZATION_FILENAMES
    plan = plan_file(display, text, rules, kustomization=kustomization)
    matched |= plan.matched
    if not plan.changed:
        return None, []
    new_text = apply_edits(text, plan.edits)
    verify_plan(plan, new_text)
    return bom + new_text.encode("utf-8"), plan.changes


def plan_in_place(paths: Sequence[Path], rules: Sequence[ImageRule]) -> Outcome:
    """Read every candidate file and plan its changes; write nothing."""
    needles = {needle for rule in rules for needle in rule.needles}
    outcome = Outcome(files=[], matched=set())
    seen: set[Path] = set()
    for root in paths:
        for path in iter_manifest_files(root):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            display = str(path)
            data = read_bytes(path, display)
            # The cheap check: a file that cannot mention an image is not parsed.
            if not any(needle in data for needle in needles):
                continue
            text, bom = decode(display, data)
            new, changes = plan_text(display, text, bom, rules, outcome.matched)
            outcome.files.append(FileOutcome(display, path, data, new, changes))
    return outcome


# --------------------------------------------------------------------------- writing


def write_in_place(files: Sequence[FileOutcome]) -> None:
    """Replace each file atomically; on any failure put back what was replaced.

    A symlink given by name stays a symlink: its target is what is edited.
    Before each replacement the original is kept under a second hard link, so
    that putting it back restores the file itself (owner, group, mode, other
    links), not a copy of its bytes.
    """
    kept: list[tuple[Path, Path | None, bytes]] = []  # (file, link to the original, bytes)
    try:
        for outcome in files:
            assert outcome.new is not None
            target = outcome.source.resolve()
            kept.append((target, _keep_original(target), outcome.original))
            _replace_file(target, outcome.new)
    except OSError as exc:
        for target, original, data in reversed(kept):
            if original is not None:
                os.replace(original, target)
            else:
                _replace_file(target, data)
        raise UsageError(
            f"cannot write {exc.filename or 'a manifest'}: {exc.strerror}; no file was changed"
        ) from None
    finally:
        for _, original, _ in kept:
            if original is not None:
                original.unlink(missing_ok=True)


def _keep_original(path: Path) -> Path | None:
    """A hidden hard link to ``path`` beside it (None where links are not possible)."""
    for attempt in range(100):
        link = path.with_name(f".{path.name}.{os.getpid()}-{attempt}.orig")
        try:
            os.link(path, link)
            return link
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def _replace_file(path: Path, content: bytes) -> None:
    """Write ``content`` beside ``path`` and rename it over it, keeping mode and owner."""
    old = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):  # only root may give files away
                os.chown(tmp, old.st_uid, old.st_gid)
        os.chmod(tmp, old.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
