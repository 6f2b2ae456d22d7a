"""Libraries below, stages above, no cycles: the import graph of steps/.

Reads every module's imports with ``ast`` (function-level ones too: a lazy
import is still a dependency) and fails, naming the modules, when

- modules import each other in a cycle, or
- a stage (steps/stages.py) imports another stage: what two stages share
  belongs in a library, or
- a library (steps/lib) imports anything of ours but another library.

``from package import submodule`` is an import of the submodule: the
package's ``__init__`` runs first for any import of one of its modules, so it
is no more a dependency there than in ``from package.module import name``.

Usage: python scripts/checks/import_graph.py   (exit 1 on a finding)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of steps/ that ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from package import submodule`` names the submodule; any other name
            # comes from the module itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "steps":
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in sorted((ROOT / "steps").rglob("*.py"))}
    known = set(paths)
    return {name: imports_of(path, name, known) for name, path in paths.items()}


def cycles(edges: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """Each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                yield sorted(component)

    for node in sorted(edges):
        if node not in index:
            yield from visit(node)


def stage_modules() -> set[str]:
    sys.path.insert(0, str(ROOT))
    from steps.stages import STAGES

    return {stage.module for stage in STAGES}


def problems() -> list[str]:
    edges = graph()
    found = [f"import cycle: {' <-> '.join(component)}" for component in cycles(edges)]
    stages = stage_modules()
    for stage in sorted(stages):
        for other in sorted(edges.get(stage, set()) & (stages - {stage})):
            found.append(f"stage {stage} imports stage {other}: move what they share to a library")
    for name in sorted(edges):
        if name.startswith("steps.lib"):
            for other in sorted(edges[name]):
                if not other.startswith("steps.lib"):
                    found.append(f"library {name} imports {other}: libraries import libraries only")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"import_graph: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
