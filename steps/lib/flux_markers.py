"""Flux image-automation setter comments (``# {"$imagepolicy": "ns:name:tag"}``):
found in one linear pass over the text and applied to the value they follow
on their line. Pure.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import yaml

from steps.lib.errors import ManifestError
from steps.lib.image_rules import ImageRule
from steps.lib.imageref import ImageRef, InvalidReference
from steps.lib.manifest_splice import Change, FilePlan, set_scalar
from steps.lib.yaml_nodes import kind_and_name

# Flux image-automation setter: `image: x # {"$imagepolicy": "ns:name[:tag|:name|:digest]"}`.
# On one line: searched over the whole text at once, ``\s`` would join two lines.
MARKER = re.compile(r'#[ \t]*\{[ \t]*"\$imagepolicy"[ \t]*:[ \t]*"(?P<policy>[^"\r\n]+)"[ \t]*\}')


_MARKER_FIELDS = ("tag", "name", "digest")


@dataclass
class _MarkerIndex:
    """One file's scalars, by the line their value ends on (YAML's own line breaks)."""

    text: str
    line_starts: list[int]
    values: dict[int, list[tuple[yaml.ScalarNode, yaml.Node]]] = field(default_factory=dict)
    keys: dict[int, list[yaml.ScalarNode]] = field(default_factory=dict)
    aliases: dict[int, list[int]] = field(default_factory=dict)
    """Line -> where an aliased value is used on it (its key's end: the alias follows)."""
    string_spans: list[tuple[int, int]] = field(default_factory=list)

    def line_of(self, index: int) -> int:
        return bisect.bisect_right(self.line_starts, index) - 1

    def in_string(self, index: int) -> bool:
        """Whether ``index`` is inside some scalar's text (then a ``#`` there is no comment)."""
        at = bisect.bisect_right(self.string_spans, (index, len(self.text) + 1)) - 1
        return at >= 0 and self.string_spans[at][0] <= index < self.string_spans[at][1]


def _index_markers(text: str, documents: Sequence[yaml.Node]) -> _MarkerIndex:
    index = _MarkerIndex(text, _line_starts(text))
    spans: list[tuple[int, int]] = []
    for document in documents:
        for node, role in _walk_with_roles(document):
            if role == "alias":  # ``node`` is the key the alias follows
                used_at = node.end_mark.index
                index.aliases.setdefault(index.line_of(used_at), []).append(used_at)
                continue
            assert isinstance(node, yaml.ScalarNode)  # keys and values are yielded as scalars
            spans.append((node.start_mark.index, node.end_mark.index))
            line = index.line_of(node.end_mark.index)
            if role == "key":
                index.keys.setdefault(line, []).append(node)
            else:
                index.values.setdefault(line, []).append((node, document))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    index.string_spans = merged
    return index


def _walk_with_roles(node: yaml.Node) -> Iterator[tuple[yaml.Node, str]]:
    """Each scalar once, as ``key`` or ``value``; and each key whose value is an ``alias``.

    An alias is the very node of its anchor (marks and all), so its use is
    recognised by a value that starts before its own key ends.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(node, "value")]
    while stack:
        current, role = stack.pop()
        if role == "alias" or (isinstance(current, yaml.ScalarNode) and role == "key"):
            yield current, role
            continue
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            yield current, role
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, "value") for item in current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.append((key, "key"))
                if value.start_mark.index < key.end_mark.index:
                    stack.append((key, "alias"))
                stack.append((value, "value"))


def plan_markers(
    plan: FilePlan, text: str, documents: Sequence[yaml.Node], rules: dict[str, ImageRule]
) -> None:
    """Apply Flux setter comments, once over the whole file (linear in its size)."""
    index: _MarkerIndex | None = None
    for match in MARKER.finditer(text):
        policy_name, field_name = split_marker_policy(match.group("policy"))
        rule = rules.get(policy_name)
        if rule is None:
            continue
        index = index or _index_markers(text, documents)
        if index.in_string(match.start()):
            continue  # inside a quoted or block scalar: text, not a comment
        if match.start() > 0 and text[match.start() - 1] not in " \t\r\n\x85\u2028\u2029":
            continue  # YAML comments start after whitespace
        line = index.line_of(match.start())
        where = line + 1
        candidates = [
            (node, document)
            for node, document in index.values.get(line, [])
            if node.end_mark.index <= match.start()
        ]
        last_value = max((node.end_mark.index for node, _ in candidates), default=-1)
        if any(last_value < at < match.start() for at in index.aliases.get(line, [])):
            raise ManifestError(
                plan.path,
                where,
                "the marked value is an alias of a value elsewhere; put the marker on the anchor",
            )
        if not candidates:
            if index.keys.get(line):
                raise ManifestError(
                    plan.path,
                    where,
                    "the marker is on a key whose value is on another line; "
                    "put the value on the marker's line",
                )
            raise ManifestError(plan.path, where, "image policy marker follows no value")
        node, document = max(candidates, key=lambda pair: pair[0].end_mark.index)
        if id(node) in plan.scalar_values:
            continue
        plan.matched.add(rule.spec)
        old = str(node.value)
        new = _marker_value(plan.path, where, rule, field_name, old)
        if new == old:
            continue
        set_scalar(plan, text, node, new)
        kind, name = kind_and_name(document)
        plan.changes.append(
            Change(
                plan.path, where, kind, name, f"marker {match.group('policy')}", old, new, rule.spec
            )
        )


def split_marker_policy(text: str) -> tuple[str, str]:
    """``ns:name:tag`` -> (``ns:name``, ``tag``); ``ns:name`` -> (``ns:name``, ``image``)."""
    parts = text.split(":")
    if len(parts) == 3 and parts[2] in _MARKER_FIELDS:
        return f"{parts[0]}:{parts[1]}", parts[2]
    return text, "image"


def _marker_value(path: str, line: int, rule: ImageRule, field_name: str, old: str) -> str:
    new = rule.new
    if field_name == "image":
        try:
            return str(rule.applied_to(ImageRef.parse(old)))
        except InvalidReference:
            return str(new)
    if field_name == "name":
        return new.repository
    if field_name == "tag":
        tag = new.tag or rule.requested.tag
        if tag is None:
            raise ManifestError(
                path, line, f"the marker sets a tag but --image {rule.spec} has none"
            )
        return tag
    if new.digest is None:
        raise ManifestError(
            path,
            line,
            f"the marker sets a digest but --image {rule.spec} has none "
            "(give REF@sha256:... or --resolve-digests)",
        )
    return new.digest


_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""Every line break YAML 1.1 knows (libyaml counts lines by these, not by ``\\n`` alone)."""


def _line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in _YAML_LINE_BREAK.finditer(text))]
