"""Byte-for-byte corpus: awkward YAML in, exactly the expected bytes out.

Each directory under tests/corpus holds one input manifest, the expected
result (``expected-<name>``) and the ``--image`` flags (images.txt). The
stage runs for real on a copy; bytes are compared exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from steps.update_manifest import main

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(path.name for path in CORPUS.iterdir() if path.is_dir())


def _case_files(name: str) -> tuple[Path, Path, list[str]]:
    directory = CORPUS / name
    inputs = [p for p in directory.iterdir() if p.name not in ("images.txt",)]
    source = next(p for p in inputs if not p.name.startswith("expected-"))
    expected = directory / f"expected-{source.name}"
    images = (directory / "images.txt").read_text().split()
    return source, expected, images


@pytest.mark.parametrize("name", CASES)
def test_corpus_case_is_edited_byte_for_byte(name: str, tmp_path: Path) -> None:
    source, expected, images = _case_files(name)
    work = tmp_path / source.name
    shutil.copyfile(source, work)
    argv = ["--in-place", str(work)]
    for image in images:
        argv += ["--image", image]

    assert main(argv) == 0
    assert work.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize("name", CASES)
def test_corpus_case_is_idempotent(name: str, tmp_path: Path) -> None:
    """Running again on the result changes nothing and does not rewrite."""
    source, expected, images = _case_files(name)
    work = tmp_path / source.name
    shutil.copyfile(expected, work)
    before = work.stat().st_mtime_ns
    argv = ["--in-place", str(work)]
    for image in images:
        argv += ["--image", image]

    assert main(argv) == 0
    assert work.read_bytes() == expected.read_bytes()
    assert work.stat().st_mtime_ns == before


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 15
