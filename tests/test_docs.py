"""The README and cloudbuild/README.md say only what is true.

- Every YAML snippet is the configs' own text: a step or a top-level block
  copied verbatim from cloudbuild/*.yaml, so it cannot drift from what runs.
- Every ``gcloud`` command uses only flags the installed Google Cloud CLI
  accepts for that command (its own ``--help`` is the oracle).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = (REPO / "README.md", REPO / "cloudbuild" / "README.md")
CONFIGS = sorted((REPO / "cloudbuild").glob("*.yaml"))
GCLOUD = Path("/usr/lib/google-cloud-sdk/bin/gcloud")
_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)


def blocks(lang: str) -> list[tuple[Path, str]]:
    return [
        (doc, m.group("body"))
        for doc in DOCS
        for m in _FENCE.finditer(doc.read_text())
        if m.group("lang") == lang
    ]


def test_the_docs_have_yaml_snippets() -> None:
    assert len(blocks("yaml")) >= 4


@pytest.mark.parametrize(
    "snippet", [body for _, body in blocks("yaml")], ids=lambda body: body.split("\n", 1)[0]
)
def test_each_yaml_snippet_is_a_configs_own_text(snippet: str) -> None:
    texts = [config.read_text() for config in CONFIGS]
    as_step = textwrap.indent(snippet, "  ")  # steps sit under ``steps:``
    assert any((snippet in text and snippet.startswith(("availableSecrets", "options"))) or
               as_step in text for text in texts), (
        "this snippet is not cloudbuild/*.yaml's text; copy it from there:\n" + snippet
    )  # fmt: skip


def gcloud_commands() -> list[str]:
    """Every ``gcloud ...`` command line in the docs (code blocks and inline code)."""
    found: list[str] = []
    for doc in DOCS:
        text = doc.read_text()
        for match in _FENCE.finditer(text):
            joined = match.group("body").replace("\\\n", " ")
            for line in joined.splitlines():
                line = line.split(" #", 1)[0]
                start = line.find("gcloud ")
                if start >= 0 and not line.lstrip().startswith("#"):
                    found.append(" ".join(line[start:].split()))
        prose = _FENCE.sub("", text).replace("\n", " ")
        found += [" ".join(m.split()) for m in re.findall(r"`(gcloud [^`]+)`", prose)]
    return sorted(set(found))


@functools.cache
def help_of(command: tuple[str, ...]) -> str | None:
    """``gcloud COMMAND --help``, or None when COMMAND is not one (a positional at its end)."""
    env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "TERM": "dumb"}
    env["CLOUDSDK_CONFIG"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "gitops-gcloud-docs")
    done = subprocess.run(
        [str(GCLOUD), *command, "--help"], env=env, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout) if done.returncode == 0 else None


def flags_of(words: list[str]) -> tuple[str, frozenset[str]]:
    """The longest command in ``words`` gcloud knows, and its flags."""
    path = list(words)
    while path:
        text = help_of(tuple(path))
        flat = " ".join((text or "").split())
        if text is not None and f"gcloud {' '.join(path)}" in flat:
            # A group takes no positional: a word left over is a command it lacks.
            group = re.search(rf"SYNOPSIS gcloud {' '.join(path)} (GROUP|COMMAND)\b", flat)
            assert not (group and len(path) < len(words)), (
                f"gcloud {' '.join(path)} has no command {words[len(path)]!r}"
            )
            return " ".join(path), frozenset(re.findall(r"--[a-z][a-z0-9-]*", text))
        path.pop()
    raise AssertionError(f"gcloud {' '.join(words)}: no such command")


def test_the_docs_have_gcloud_commands() -> None:
    assert len(gcloud_commands()) >= 8


@pytest.mark.skipif(not GCLOUD.exists(), reason="needs the Google Cloud CLI at " + str(GCLOUD))
@pytest.mark.parametrize("line", gcloud_commands())
def test_each_gcloud_command_uses_flags_gcloud_has(line: str) -> None:
    words = line.split()[1:]
    path: list[str] = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        path.append(word)
    flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    command, known = flags_of(path)
    assert flags <= known, f"gcloud {command} has no {sorted(flags - known)}"
