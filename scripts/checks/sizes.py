"""Parts small enough to read: no function body over MAX_FUNCTION lines, no module
over MAX_MODULE lines, in steps/ (steps/sandbox, the test stand-ins, is exempt).

A function's body is counted from its first statement after the docstring: a
long signature or a docstring that explains is not what makes code hard to read.

Modules still over the limit are listed in LARGE_MODULES with their size when
they were listed: the list may only shrink (a listed module that grows fails,
and one that falls under the limit must leave the list).

Usage: python scripts/checks/sizes.py   (exit 1 on a finding)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION = 80
MAX_MODULE = 600
EXEMPT = ("steps/sandbox/",)
LARGE_MODULES: dict[str, int] = {}
"""Modules over MAX_MODULE still to split (path -> lines when listed)."""


def problems() -> list[str]:
    found: list[str] = []
    for path in sorted((ROOT / "steps").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(EXEMPT):
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        allowed = LARGE_MODULES.get(relative, MAX_MODULE)
        if lines > allowed:
            found.append(f"{relative}: {lines} lines (limit {allowed}): split it along a seam")
        elif relative in LARGE_MODULES and lines <= MAX_MODULE:
            found.append(f"{relative}: {lines} lines now; remove it from LARGE_MODULES")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if (
                    len(body) > 1
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                ):
                    body = body[1:]  # the docstring
                length = (node.end_lineno or node.lineno) - body[0].lineno + 1
                if length > MAX_FUNCTION:
                    found.append(
                        f"{relative}:{node.lineno}: {node.name} is {length} lines "
                        f"(limit {MAX_FUNCTION})"
                    )
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"sizes: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
