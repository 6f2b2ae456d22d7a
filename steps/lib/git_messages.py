"""Commit messages the git stages write and read: subject, body and a final
trailer block headed ``Gitops-Step:`` (the only trailers trusted). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TRAILER = re.compile(r"^(?P<key>[A-Za-z0-9][A-Za-z0-9-]*):\s*(?P<value>.*\S)\s*$")


def parse_trailers(message: str) -> list[tuple[str, str]]:
    """The ``Key: value`` lines of a message's last paragraph (if all are such)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    trailers: list[tuple[str, str]] = []
    for line in paragraphs[-1].splitlines():
        match = _TRAILER.match(line)
        if not match:
            return []
        trailers.append((match.group("key"), match.group("value")))
    return trailers


TOOL_TRAILER = "Gitops-Step"
"""Heads the trailer block of every commit the git stages write."""


def tool_trailers(message: str) -> list[tuple[str, str]]:
    """The trailers of a message, if (and only if) one of our stages wrote them.

    Our stages always end a message with a trailer block that starts with
    ``Gitops-Step:``; a user's ``--message`` goes above it, so it can never
    be the last paragraph, and trailer-like lines in it are never read.
    """
    trailers = parse_trailers(message)
    if not trailers or trailers[0][0] != TOOL_TRAILER:
        return []
    return trailers


def trailer_values(trailers: Sequence[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in trailers if k.lower() == key.lower()]


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def format_message(
    subject: str, body: str, trailers: Sequence[tuple[str, str]], step: str | None = None
) -> str:
    """Subject, blank line, body, blank line, trailers: what git tools parse.

    With ``step``, the trailer block starts with ``Gitops-Step: <step>`` and
    is always there, so that text from the user (subject, body) can never
    pose as our trailers. Control characters are dropped everywhere.
    """
    subject_line = " ".join(_UNPRINTABLE.sub(" ", subject).split()) or "Update"
    parts = [subject_line]
    text = _UNPRINTABLE.sub("", body).strip()
    if text:
        parts.append(text)
    pairs = [(TOOL_TRAILER, step)] if step else []
    pairs += [(key, value) for key, value in trailers if key != TOOL_TRAILER]
    lines = [
        f"{key}: {' '.join(_UNPRINTABLE.sub(' ', value).split())}"
        for key, value in pairs
        if value and value.strip()
    ]
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
