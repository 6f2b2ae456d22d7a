"""Lossless image pinning in YAML text (pure: text in, text out).

Why not round-trip through a YAML library: every round-tripping updater
rewrites something the user did not ask to change (indentation, quotes, a
leading ``---``, a missing final newline...). Instead we *locate* the scalars
to change with PyYAML's composer (which records where each node starts and
ends in the text), describe each change as data, and splice only those
characters. Every byte outside the replaced values stays as it was.

A second parse of the result then proves that the new text means exactly the
old one plus the intended changes, before anything is written.

The flow for one file:
``plan_file`` -> ``FilePlan(changes, edits)`` -> ``apply_edits`` -> ``verify_plan``.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from steps.lib.errors import ManifestError, UsageError
from steps.lib.imageref import ImageRef, InvalidReference, canonical
from steps.lib.pod_specs import CONTAINER_LISTS, POD_SPEC_PATHS

try:  # libyaml is ten times faster; the pure-Python loader gives the same marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - wheels ship libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR_TAG = "tag:yaml.org,2002:str"

KUSTOMIZATION_FILENAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})

# Flux image-automation setter: `image: x # {"$imagepolicy": "ns:name[:tag|:name|:digest]"}`.
# On one line: searched over the whole text at once, ``\s`` would join two lines.
MARKER = re.compile(r'#[ \t]*\{[ \t]*"\$imagepolicy"[ \t]*:[ \t]*"(?P<policy>[^"\r\n]+)"[ \t]*\}')
MARKER_NEEDLE = b'"$imagepolicy"'
_POLICY_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_MARKER_FIELDS = ("tag", "name", "digest")

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


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class ImageRule:
    """One ``--image`` flag: what it matches and what it sets.

    ``requested`` is the reference as given; ``target`` is what is written,
    which differs from ``requested`` once its tag is resolved to a digest.
    A target without tag or digest renames the repository and keeps the rest.
    """

    spec: str
    requested: ImageRef
    match: str | None = None
    policy: str | None = None
    target: ImageRef | None = None

    @property
    def new(self) -> ImageRef:
        return self.target or self.requested

    @property
    def repositories(self) -> tuple[str, ...]:
        """Canonical repositories this rule applies to.

        A renaming rule (``OLD=NEW``) also applies to images already renamed,
        so that running the same build again is a no-op rather than an error.
        """
        if self.match is None:
            return ()
        renamed = canonical(self.new.repository)
        return (self.match,) if renamed == self.match else (self.match, renamed)

    @property
    def needles(self) -> tuple[bytes, ...]:
        """Text every file that this rule can change must contain."""
        if self.policy:
            return (MARKER_NEEDLE,)
        return tuple(repo.rsplit("/", 1)[-1].encode() for repo in self.repositories)

    def resolved(self, target: ImageRef) -> ImageRule:
        return replace(self, target=target)

    def applied_to(self, old: ImageRef) -> ImageRef:
        """The reference a container holding ``old`` gets from this rule."""
        new = self.new
        if new.tag is None and new.digest is None:
            return ImageRef(new.repository, old.tag, old.digest)
        return new


def parse_image_rule(spec: str) -> ImageRule:
    """Parse ``REF``, ``OLD=REF`` or ``ns:name=REF`` (a Flux image policy)."""
    old, sep, new = spec.partition("=")
    if not sep:
        old, new = "", spec
    elif not old:
        raise UsageError(f"--image {spec}: nothing before '=' (give OLD=REF, or just REF)")
    elif not new:
        raise UsageError(f"--image {spec}: nothing after '=' (give OLD=REF)")
    try:
        requested = ImageRef.parse(new)
    except InvalidReference as exc:
        raise UsageError(f"--image {spec}: {exc}") from None
    if not old:
        if requested.tag is None and requested.digest is None:
            raise UsageError(
                f"--image {spec}: give a tag or a digest (for example {new}:v1), "
                "or OLD=NEW to rename a repository"
            )
        return ImageRule(spec, requested, match=canonical(requested.repository))
    if _POLICY_NAME.match(old):
        return ImageRule(spec, requested, policy=old)
    try:
        old_ref = ImageRef.parse(old)
    except InvalidReference as exc:
        raise UsageError(f"--image {spec}: {exc}") from None
    if old_ref.tag or old_ref.digest:
        raise UsageError(f"--image {spec}: OLD must be a repository without a tag or digest")
    return ImageRule(spec, requested, match=canonical(old_ref.repository))


def check_rules_distinct(rules: Sequence[ImageRule]) -> None:
    """Two rules for the same image would make the result depend on order."""
    seen: dict[str, str] = {}
    for rule in rules:
        for key in (rule.policy,) if rule.policy else rule.repositories:
            if key in seen and seen[key] != rule.spec:
                raise UsageError(f"--image {rule.spec} and --image {seen[key]} both set {key}")
            seen[key] = rule.spec


# --------------------------------------------------------------------------- changes


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


# --------------------------------------------------------------------------- parsing


MAX_DEPTH = 200
"""Nesting deeper than this is refused: no manifest needs it, and recursion would."""
MAX_EXPANDED_NODES = 200_000
"""Nodes a document may have once every alias is expanded (an alias bomb has billions)."""


def compose_documents(path: str, text: str) -> list[yaml.Node]:
    """Parse ``text`` into node trees, turning YAML errors into ManifestError.

    Each tree is also measured, so that nothing later (verification,
    construction, JSON for the API server) expands an alias bomb or recurses
    past the interpreter's limit.
    """
    try:
        documents = [node for node in yaml.compose_all(text, Loader=_Loader) if node is not None]
    except RecursionError:
        raise ManifestError(path, None, f"nested more than {MAX_DEPTH} levels deep") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ManifestError(path, line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(path, None, f"invalid YAML: {exc}") from None
    for document in documents:
        check_document_size(path, document)
    return documents


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def check_document_size(path: str, document: yaml.Node) -> None:
    """Refuse recursive aliases, nesting past MAX_DEPTH and alias bombs (linear time).

    Sizes and heights are computed once per node (an alias is the same node
    object as its anchor), so measuring a bomb costs what its text costs.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, height)
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(document, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if finished:
            on_path.discard(key)
            kids = [measured[id(kid)] for kid in _children(node)]
            size = 1 + sum(kid[0] for kid in kids)
            height = 1 + max((kid[1] for kid in kids), default=0)
            if height > MAX_DEPTH:
                raise ManifestError(path, line, f"nested more than {MAX_DEPTH} levels deep")
            if size > MAX_EXPANDED_NODES:
                raise ManifestError(
                    path,
                    line,
                    f"aliases here expand to more than {MAX_EXPANDED_NODES:,} nodes "
                    "(an alias bomb?)",
                )
            measured[key] = (size, height)
            continue
        if key in measured:
            continue
        if key in on_path:
            raise ManifestError(path, line, "an alias refers to a node that contains it")
        on_path.add(key)
        if isinstance(node, yaml.MappingNode):
            check_unique_keys(path, node)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in measured)


MERGE_TAG = "tag:yaml.org,2002:merge"


def check_unique_keys(path: str, mapping: yaml.MappingNode) -> None:
    """A key written twice means different things to different readers: refuse it.

    PyYAML keeps the first value, Go's YAML libraries refuse or keep the last;
    editing one of two ``image:`` lines would deploy either image.
    """
    seen: dict[tuple[str, str], int] = {}
    for key, _ in mapping.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
            continue
        line = key.start_mark.line + 1
        identity = (key.tag, key.value)
        if identity in seen:
            raise ManifestError(
                path, line, f"duplicate key {key.value!r} (first at line {seen[identity]})"
            )
        seen[identity] = line


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value_node
            return found
    return None


def _get_path(node: yaml.Node | None, path: Iterable[str]) -> yaml.Node | None:
    for key in path:
        node = _get(node, key)
    return node


def _scalar(node: yaml.Node | None) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
        return str(node.value)
    return None


def _identity(document: yaml.Node) -> tuple[str, str]:
    kind = _scalar(_get(document, "kind")) or "-"
    name = _scalar(_get_path(document, ("metadata", "name"))) or "-"
    return kind, name


def _objects(document: yaml.Node) -> Iterator[yaml.Node]:
    """The object and, for a ``List`` kind, each of its items."""
    yield document
    kind = _scalar(_get(document, "kind")) or ""
    items = _get(document, "items")
    if kind.endswith("List") and isinstance(items, yaml.SequenceNode):
        for item in items.value:
            if isinstance(item, yaml.MappingNode):
                yield from _objects(item)


# --------------------------------------------------------------------------- planning


def plan_file(
    path: str,
    text: str,
    rules: Sequence[ImageRule],
    *,
    kustomization: bool = False,
) -> FilePlan:
    """Work out every change ``rules`` make to one file, without writing."""
    documents = compose_documents(path, text)
    plan = FilePlan(path, documents)
    image_rules = [rule for rule in rules if rule.match]
    policy_rules = {rule.policy: rule for rule in rules if rule.policy}
    for document in documents:
        if image_rules:
            for obj in _objects(document):
                _plan_containers(plan, text, obj, image_rules)
                is_kustomization = _is_kustomization(obj) or (
                    kustomization and obj is document and _get(obj, "kind") is None
                )
                if is_kustomization:
                    _plan_kustomization(plan, text, obj, image_rules)
    if policy_rules and MARKER_NEEDLE.decode() in text:
        _plan_markers(plan, text, documents, policy_rules)
    plan.edits.sort(key=lambda edit: edit.start)
    plan.changes.sort(key=lambda change: change.line)
    return plan


def _is_kustomization(obj: yaml.Node) -> bool:
    """A Kustomization, or a kustomize Component (its ``images:`` mean the same)."""
    kind = _scalar(_get(obj, "kind"))
    if kind == "Kustomization":
        return True
    api_version = _scalar(_get(obj, "apiVersion")) or ""
    return kind == "Component" and api_version.startswith("kustomize.config.k8s.io/")


def _plan_containers(plan: FilePlan, text: str, obj: yaml.Node, rules: Sequence[ImageRule]) -> None:
    kind, name = _identity(obj)
    spec_path = POD_SPEC_PATHS.get(kind)
    if spec_path is None:
        return
    pod_spec = _get_path(obj, spec_path)
    for list_key in CONTAINER_LISTS:
        containers = _get(pod_spec, list_key)
        if not isinstance(containers, yaml.SequenceNode):
            continue
        for container in containers.value:
            image_node = _get(container, "image")
            value = _scalar(image_node)
            if image_node is None or value is None:
                continue
            try:
                old = ImageRef.parse(value)
            except InvalidReference:
                continue
            rule = _rule_for(rules, old.repository)
            if rule is None:
                continue
            plan.matched.add(rule.spec)
            new = str(rule.applied_to(old))
            container_name = _scalar(_get(container, "name")) or "?"
            label = "container" if list_key == "containers" else list_key[:-1]
            if new != value:
                assert isinstance(image_node, yaml.ScalarNode)
                _set_scalar(plan, text, image_node, new)
                plan.changes.append(
                    Change(
                        plan.path,
                        image_node.start_mark.line + 1,
                        kind,
                        name,
                        f"{label} {container_name}",
                        value,
                        new,
                        rule.spec,
                    )
                )


def _rule_for(rules: Sequence[ImageRule], repository: str) -> ImageRule | None:
    wanted = canonical(repository)
    return next((rule for rule in rules if wanted in rule.repositories), None)


def _plan_kustomization(
    plan: FilePlan, text: str, obj: yaml.Node, rules: Sequence[ImageRule]
) -> None:
    images = _get(obj, "images")
    if not isinstance(images, yaml.SequenceNode):
        return
    for entry in images.value:
        name = _scalar(_get(entry, "name"))
        if not isinstance(entry, yaml.MappingNode) or name is None:
            continue
        try:
            ImageRef.parse(name)
        except InvalidReference:
            continue
        rule = _rule_for(rules, name)
        if rule is None:
            continue
        plan.matched.add(rule.spec)
        current = {key: _scalar(_get(entry, key)) for key in ("newName", "newTag", "digest")}
        old = ImageRef(current["newName"] or name, current["newTag"], current["digest"])
        new = rule.applied_to(old)
        wanted: dict[str, str | None] = {"newTag": new.tag, "digest": new.digest}
        if current["newName"] is not None or canonical(new.repository) != canonical(name):
            wanted["newName"] = new.repository
        updates = {key: value for key, value in wanted.items() if current.get(key) != value}
        if not updates:
            continue
        for key in ("newName", "newTag", "digest"):
            if key in updates:
                _update_mapping_key(plan, text, entry, key, updates[key])
        plan.mapping_updates[id(entry)] = updates
        plan.changes.append(
            Change(
                plan.path,
                entry.start_mark.line + 1,
                "Kustomization",
                _identity(obj)[1],
                f"images[{name}]",
                str(old),
                str(new),
                rule.spec,
            )
        )


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


def _plan_markers(
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
        _set_scalar(plan, text, node, new)
        kind, name = _identity(document)
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


# --------------------------------------------------------------------------- text edits


def _set_scalar(plan: FilePlan, text: str, node: yaml.ScalarNode, value: str) -> None:
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


def _update_mapping_key(
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
            _set_scalar(plan, text, value_node, value)
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
