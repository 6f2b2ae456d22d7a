"""YAML read as node trees, within bounds, and the accessors that read them.

``compose_documents`` keeps PyYAML's marks (where each node starts and ends
in the text: what a splice needs) and measures every tree once, in linear
time, so that alias bombs, recursive aliases, deep nesting and duplicate keys
are refused before anything expands them. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import yaml

from steps.lib.errors import ManifestError

try:  # libyaml is ten times faster; the pure-Python loader gives the same marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - wheels ship libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR_TAG = "tag:yaml.org,2002:str"


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


def get_key(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value_node
            return found
    return None


def get_path(node: yaml.Node | None, path: Iterable[str]) -> yaml.Node | None:
    for key in path:
        node = get_key(node, key)
    return node


def str_value(node: yaml.Node | None) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
        return str(node.value)
    return None


def kind_and_name(document: yaml.Node) -> tuple[str, str]:
    kind = str_value(get_key(document, "kind")) or "-"
    name = str_value(get_path(document, ("metadata", "name"))) or "-"
    return kind, name


def objects_in(document: yaml.Node) -> Iterator[yaml.Node]:
    """The object and, for a ``List`` kind, each of its items."""
    yield document
    kind = str_value(get_key(document, "kind")) or ""
    items = get_key(document, "items")
    if kind.endswith("List") and isinstance(items, yaml.SequenceNode):
        for item in items.value:
            if isinstance(item, yaml.MappingNode):
                yield from objects_in(item)
