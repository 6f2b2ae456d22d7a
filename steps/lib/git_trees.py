"""Pure decisions over trees: a subdirectory's files as data, our change merged
onto another writer's tip path by path, and the changes between two states.
"""

from __future__ import annotations

from dataclasses import dataclass

Entry = tuple[str, str]
"""(mode, object id) of one path in a tree."""
State = dict[str, Entry]
"""A subdirectory's files: path relative to it -> entry."""


@dataclass(frozen=True)
class Change:
    """One path changed by a commit: A(dded), M(odified) or D(eleted)."""

    kind: str
    path: str

    def as_dict(self) -> dict[str, str]:
        return {"change": self.kind, "path": self.path}


def merge_subtree(base: State, ours: State, theirs: State) -> tuple[State, list[str]]:
    """Apply our change (base -> ours) on top of theirs, path by path.

    A path we did not change keeps their version (so a concurrent writer's
    adds and deletes survive); a path they did not change gets ours; a path
    both changed the same way is fine; a path both changed differently is a
    conflict. When theirs is base this is exactly ``ours`` (a mirror).
    """
    merged: State = {}
    conflicts: list[str] = []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o in (b, t):
            result = t
        elif t == b:
            result = o
        else:
            conflicts.append(path)
            result = t
        if result is not None:
            merged[path] = result
    return merged, conflicts


def diff_states(old: State, new: State) -> list[Change]:
    """The changes that turn ``old`` into ``new``, sorted by path."""
    changes: list[Change] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        kind = "A" if before is None else "D" if after is None else "M"
        changes.append(Change(kind, path))
    return changes


def join_path(subdir: str, path: str) -> str:
    return f"{subdir}/{path}" if subdir else path
