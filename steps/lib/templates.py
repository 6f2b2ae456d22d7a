"""``${NAME}`` templates, as in the classic ``kubernetes.yaml.tpl`` layout (pure).

Only ``${NAME}`` is a placeholder (``$NAME`` and ``$(...)`` stay as they are,
since manifests often hold shell snippets); ``$${NAME}`` writes a literal
``${NAME}``. A placeholder without a value is an error, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from steps.lib.errors import ManifestError, UsageError

_PLACEHOLDER = re.compile(r"\$(\$?)\{([^}\n]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_LINE_BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``, naming a bad ``--set``."""
    values: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not _NAME.match(name):
            raise UsageError(f"--set {assignment}: expected NAME=VALUE with NAME like PROJECT_ID")
        if any(brk in value for brk in _LINE_BREAKS):
            # A value is substituted as text: a line break in it would write new YAML keys.
            raise UsageError(f"--set {name}: the value spans lines; give a one-line value")
        values[name] = value
    return values


def render_template(path: str, text: str, values: Mapping[str, str]) -> tuple[str, set[str]]:
    """Replace placeholders in ``text``; return the result and the names used."""
    used: set[str] = set()
    problems: list[tuple[int, str]] = []

    def substitute(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped:
            return "${" + name + "}"
        line = text.count("\n", 0, match.start()) + 1
        if not _NAME.match(name):
            problems.append((line, f"${{{name}}} is not a valid placeholder name"))
            return match.group(0)
        if name not in values:
            problems.append(
                (line, f"unknown placeholder ${{{name}}} (give it with --set {name}=VALUE)")
            )
            return match.group(0)
        used.add(name)
        return values[name]

    rendered = _PLACEHOLDER.sub(substitute, text)
    if problems:
        line, problem = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ManifestError(path, line, problem + more)
    return rendered, used
