"""The edit as data, spliced into the text, then proved (pure: text in, text out).

Every change is recorded as data (``Change`` for logs, commits and results;
``TextEdit`` for the characters replaced) in a ``FilePlan``. Only the located
characters are replaced; every other byte stays as it was. A second parse of
the result must then mean exactly the old text plus the planned changes
(``verify_plan``), or nothing is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from steps.lib.errors import ManifestError
from steps.lib.yaml_nodes import STR_TAG, compose_documents

# A scalar we can write plain: no indicator characters, no spaces.
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@:+=-]*$")
# An anchor and/or tag written before a scalar is part of its node's marks.
_NODE_PROPERTIES = re.compile(r"(?:(?:&[^\s,\[\]{}]+|![^\s,\[\]{}]*)\s+)*")
_resolver = yaml.resolver.Resolver()
# Plain scalars that some YAML reader (1.1 or 1.2, Go or Python) takes for a
# number, boolean or null; quoted whatever PyYAML thinks of them.
_AMBIGUOUS = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|0[xX][0-9a-fA-F_]+|0o[0-7]+|0b[01_]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    r"|[0-9]+(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"
    r"|y|Y|n|N|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|true|True|TRUE|false|False|FALSE"
    r"|~|null|Null|NULL)$"
)


@dataclass(frozen=True)
class Change:
    """One value changed in one file: the data behind logs, commits, results."""

    path: str
    line: int
    kind: str
    name: str
    target: str
    old: str
    new: str
    image: str

    def describe(self) -> str:
        where = f"{self.path}:{self.line} {self.kind}/{self.name} {self.target}"
        return f"{where}: {self.old} -> {self.new}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "kind": self.kind,
            "name": self.name,
            "target": self.target,
            "old": self.old,
            "new": self.new,
            "image": self.image,
        }


@dataclass(frozen=True)
class TextEdit:
    """Replace ``text[start:end]`` with ``replacement``."""

    start: int
    end: int
    replacement: str


@dataclass
class FilePlan:
    """Everything that will change in one file, and how to prove it."""

    path: str
    documents: list[yaml.Node] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    edits: list[TextEdit] = field(default_factory=list)
    matched: set[str] = field(default_factory=set)
    # Expectations for verify_plan, keyed by node identity in the old tree.
    scalar_values: dict[int, str] = field(default_factory=dict)
    mapping_updates: dict[int, dict[str, str | None]] = field(default_factory=dict)
    _edited_spans: set[tuple[int, int]] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return bool(self.edits)


def set_scalar(plan: FilePlan, text: str, node: yaml.ScalarNode, value: str) -> None:
    """Plan ``node`` to read ``value``: the splice, and what verify_plan expects."""
    _check_replaceable(plan, node)
    plan.scalar_values[id(node)] = value
    _splice_scalar(plan, text, node, value)


def _check_replaceable(plan: FilePlan, node: yaml.ScalarNode) -> None:
    """Check the scalar can be replaced in place (not a block scalar)."""
    if node.style in ("|", ">"):
        raise ManifestError(
            plan.path,
            node.start_mark.line + 1,
            f"{node.value!r} is a block scalar; write it on one line to let it be updated",
        )


def _value_span(text: str, node: yaml.Node) -> tuple[int, int]:
    """Where the value itself is written, without a leading anchor or tag."""
    start, end = node.start_mark.index, node.end_mark.index
    properties = _NODE_PROPERTIES.match(text, start, end)
    if properties:
        start = properties.end()
    return start, end


def _splice_scalar(plan: FilePlan, text: str, node: yaml.ScalarNode, value: str) -> None:
    span = _value_span(text, node)
    if span in plan._edited_spans:
        return  # an alias of a scalar we already change
    plan._edited_spans.add(span)
    plan.edits.append(TextEdit(span[0], span[1], render_scalar(value, node.style)))


def render_scalar(value: str, style: str | None) -> str:
    """Write ``value`` as a YAML string scalar in the given style.

    A plain scalar stays plain only when it would still read as a string:
    ``1.10`` written plain is the float 1.1, so it gets double quotes.
    """
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if not style and _PLAIN_SAFE.match(value) and _resolves_to_str(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _resolves_to_str(value: str) -> bool:
    if _AMBIGUOUS.match(value):
        return False
    tag = _resolver.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == STR_TAG)


def update_mapping_key(
    plan: FilePlan, text: str, mapping: yaml.MappingNode, key: str, value: str | None
) -> None:
    """Set, add or remove ``key`` in a mapping by editing its text."""
    pairs = mapping.value
    index = next(
        (i for i, (k, _) in enumerate(pairs) if isinstance(k, yaml.ScalarNode) and k.value == key),
        None,
    )
    if index is not None:
        value_node = pairs[index][1]
        if value is not None:
            if not isinstance(value_node, yaml.ScalarNode):
                raise ManifestError(
                    plan.path, value_node.start_mark.line + 1, f"{key} is not a string"
                )
            set_scalar(plan, text, value_node, value)
            return
        plan.edits.append(_removal(plan.path, text, mapping, index))
        return
    if value is None:
        return
    rendered = f"{key}: {render_scalar(value, None)}"
    last_end = pairs[-1][1].end_mark.index
    if mapping.flow_style:
        plan.edits.append(TextEdit(last_end, last_end, f", {rendered}"))
        return
    indent = " " * pairs[0][0].start_mark.column
    newline_at = text.find("\n", last_end)
    if newline_at == -1:
        eol = "\r\n" if "\r\n" in text else "\n"
        plan.edits.append(TextEdit(len(text), len(text), f"{eol}{indent}{rendered}"))
        return
    eol = "\r\n" if text[newline_at - 1 : newline_at] == "\r" else "\n"
    plan.edits.append(TextEdit(newline_at + 1, newline_at + 1, f"{indent}{rendered}{eol}"))


def _removal(path: str, text: str, mapping: yaml.MappingNode, index: int) -> TextEdit:
    pairs = mapping.value
    key_node, value_node = pairs[index]
    if mapping.flow_style:
        if index > 0:
            return TextEdit(pairs[index - 1][1].end_mark.index, value_node.end_mark.index, "")
        if len(pairs) > 1:
            return TextEdit(key_node.start_mark.index, pairs[1][0].start_mark.index, "")
        return TextEdit(key_node.start_mark.index, value_node.end_mark.index, "")
    line_start = text.rfind("\n", 0, key_node.start_mark.index) + 1
    before = text[line_start : key_node.start_mark.index]
    if index == 0 and len(pairs) > 1 and before.strip() and not before.replace("-", "").strip():
        # `- digest: ...` then `  name: ...`: the next key moves up behind the dash.
        _check_rest_of_line(path, text, key_node, value_node)
        return TextEdit(key_node.start_mark.index, pairs[1][0].start_mark.index, "")
    if before.strip():
        raise ManifestError(
            path,
            key_node.start_mark.line + 1,
            f"cannot remove {key_node.value}: it shares its line with another key "
            "(put 'name:' first in this entry)",
        )
    line_end = _check_rest_of_line(path, text, key_node, value_node)
    if line_end == -1:
        # Last line of a file without a final newline: drop the newline before it.
        return TextEdit(max(line_start - 1, 0), len(text), "")
    return TextEdit(line_start, line_end + 1, "")


def _check_rest_of_line(path: str, text: str, key: yaml.Node, value: yaml.Node) -> int:
    """Only a comment may follow a value removed with its line; where that line ends."""
    line_end = text.find("\n", value.end_mark.index)
    rest = text[value.end_mark.index : line_end if line_end != -1 else len(text)]
    if rest.strip() and not rest.strip().startswith("#"):
        raise ManifestError(path, key.start_mark.line + 1, f"cannot remove {key.value}")
    return line_end


def apply_edits(text: str, edits: Sequence[TextEdit]) -> str:
    """Apply non-overlapping edits (sorted by start) to ``text``."""
    pieces: list[str] = []
    position = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < position:
            raise ValueError(f"overlapping edits at {edit.start}")
        pieces.append(text[position : edit.start])
        pieces.append(edit.replacement)
        position = edit.end
    pieces.append(text[position:])
    return "".join(pieces)


# --------------------------------------------------------------------------- verification


class _Plain:
    """Turns node trees into comparable values, applying a plan's expectations."""

    def __init__(self, plan: FilePlan | None) -> None:
        self.scalars = plan.scalar_values if plan else {}
        self.mappings = plan.mapping_updates if plan else {}

    def convert(self, node: yaml.Node, depth: int = 0) -> Any:
        if depth > 200:
            raise ValueError("nesting too deep to verify")
        if isinstance(node, yaml.ScalarNode):
            if id(node) in self.scalars:
                return (STR_TAG, self.scalars[id(node)])
            return (node.tag, node.value)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, depth + 1) for item in node.value]
        pairs = [(self.convert(k, depth + 1), self.convert(v, depth + 1)) for k, v in node.value]
        for key, value in self.mappings.get(id(node), {}).items():
            pairs = [pair for pair in pairs if pair[0] != (STR_TAG, key)]
            if value is not None:
                pairs.append(((STR_TAG, key), (STR_TAG, value)))
        return sorted(pairs, key=repr)


def verify_plan(plan: FilePlan, new_text: str) -> None:
    """Prove ``new_text`` is the planned text with exactly the planned changes.

    Raises ManifestError (nothing is written) if the edit would change the
    meaning of anything else: that would be a bug in this module.
    """
    try:
        new_documents = compose_documents(plan.path, new_text)
    except ManifestError as exc:
        raise ManifestError(
            plan.path, None, f"refusing to write: the edited file would not parse ({exc.problem})"
        ) from None
    expected = [_Plain(plan).convert(node) for node in plan.documents]
    actual = [_Plain(None).convert(node) for node in new_documents]
    if expected != actual:
        raise ManifestError(
            plan.path,
            None,
            "refusing to write: the edit would change more than the images "
            "(a bug in gitops-steps; please report it with this file)",
        )
