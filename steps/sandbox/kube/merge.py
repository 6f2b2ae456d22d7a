"""Patches and field ownership: JSON merge, strategic merge, JSON patch, server-side apply.

Field sets use the ``fieldsV1`` vocabulary (``f:name``, ``k:{"name":"app"}``,
``v:"x"``, ``.``) so managedFields read like the real server's. Lists of
objects with a merge key (containers by name, ports by containerPort and
protocol, ...) merge item by item; other lists are atomic, as in the API's
schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from steps.sandbox.kube.store import clone

Path = tuple[str, ...]  # field names, without list positions
FieldPath = tuple[str, ...]  # fieldsV1 tokens

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
SET_LISTS = frozenset({"finalizers"})


def list_keys(path: Path, builtin: bool = True) -> tuple[str, ...] | None:
    """The merge key of the list at ``path`` (field names), or None when atomic."""
    if not path or not builtin:
        return None
    name = path[-1]
    if name == "ports":
        if len(path) >= 2 and path[-2] in _CONTAINER_LISTS:
            return ("containerPort", "protocol")
        if path[:2] == ("spec", "ports"):
            return ("port", "protocol")
        return None
    return MERGE_KEYS.get(name)


def _item_key(item: Any, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    values = []
    for key in keys:
        value = item.get(key)
        if value is None and key == "protocol":
            value = "TCP"
        values.append(value)
    return tuple(values)


def _key_token(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    parts = {}
    for key in keys:
        value = item.get(key)
        if value is None and key == "protocol":
            value = "TCP"
        if value is not None:
            parts[key] = value
    return "k:" + json.dumps(parts, separators=(",", ":"), sort_keys=True)


# -- JSON merge patch (RFC 7386) ------------------------------------------------


def json_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge(result.get(key), value)
    return result


# -- strategic merge patch ------------------------------------------------------


def strategic_merge(target: Any, patch: Any, path: Path = ()) -> Any:
    """Merge like ``kubectl patch --type strategic`` for the directives we use."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return {k: clone(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = (*path, key)
        keys = list_keys(sub)
        if isinstance(value, list) and keys:
            result[key] = _merge_keyed(result.get(key) or [], value, sub, keys)
        elif isinstance(value, list) and key in SET_LISTS:
            merged = list(result.get(key) or [])
            merged += [v for v in value if v not in merged]
            result[key] = merged
        elif isinstance(value, dict):
            merged_value = strategic_merge(result.get(key), value, sub)
            if merged_value is None:
                result.pop(key, None)
            else:
                result[key] = merged_value
        else:
            result[key] = clone(value)
    return result


def _merge_keyed(
    target: list[Any], patch: list[Any], path: Path, keys: tuple[str, ...]
) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [clone(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    result = clone(target)
    for item in patch:
        key = _item_key(item, keys)
        index = next((i for i, t in enumerate(result) if _item_key(t, keys) == key), None)
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(strategic_merge({}, item, path))
        else:
            result[index] = strategic_merge(result[index], item, path)
    return result


# -- JSON patch (RFC 6902) ------------------------------------------------------


class PatchError(ValueError):
    """A JSON patch that cannot be applied."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise PatchError(f"path /{'/'.join(parts)} not found")
    return node


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = clone(doc)
    for op in operations:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _get_pointer(doc, source)
            if kind == "move":
                doc = _remove_pointer(doc, source)
            doc = _add_pointer(doc, parts, clone(value))
        elif kind == "add":
            doc = _add_pointer(doc, parts, clone(op.get("value")))
        elif kind == "remove":
            doc = _remove_pointer(doc, parts)
        elif kind == "replace":
            doc = _remove_pointer(doc, parts)
            doc = _add_pointer(doc, parts, clone(op.get("value")))
        elif kind == "test":
            if _get_pointer(doc, parts) != op.get("value"):
                raise PatchError(f"testing value {op.get('path')} failed")
        else:
            raise PatchError(f"unexpected kind of operation {kind!r}")
    return doc


def _get_pointer(doc: Any, parts: list[str]) -> Any:
    node = doc
    try:
        for part in parts:
            node = node[int(part)] if isinstance(node, list) else node[part]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"path /{'/'.join(parts)} not found") from None
    return node


def _add_pointer(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index > len(parent):
            raise PatchError("index out of range")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"path /{'/'.join(parts)} not found")
    return doc


def _remove_pointer(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    last = parts[-1] if parts else ""
    try:
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"path /{'/'.join(parts)} not found") from None
    return doc


# -- field sets (fieldsV1) ------------------------------------------------------

_OWNED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def owned_view(obj: dict[str, Any], subresource: str | None, has_status: bool) -> dict[str, Any]:
    """The part of an object whose fields managers own (no identity, no server metadata)."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    view: dict[str, Any] = {}
    meta = obj.get("metadata") or {}
    owned_meta = {k: meta[k] for k in _OWNED_METADATA if k in meta}
    if owned_meta:
        view["metadata"] = owned_meta
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key == "status" and has_status:
            continue
        view[key] = value
    return view


def leaves(obj: Any, builtin: bool = True) -> dict[FieldPath, Any]:
    """Every owned path of ``obj`` and its value (None for list-item markers)."""
    out: dict[FieldPath, Any] = {}
    _walk(obj, (), (), out, builtin)
    return out


def _walk(
    node: Any, tokens: FieldPath, names: Path, out: dict[FieldPath, Any], builtin: bool
) -> None:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            _walk(value, (*tokens, f"f:{key}"), (*names, key), out, builtin)
        return
    if isinstance(node, list) and node and tokens:
        keys = list_keys(names, builtin)
        if keys and all(isinstance(i, dict) for i in node):
            for item in node:
                token = (*tokens, _key_token(item, keys))
                out[(*token, ".")] = None
                _walk(item, token, names, out, builtin)
            return
        if builtin and names and names[-1] in SET_LISTS:
            for item in node:
                out[(*tokens, "v:" + json.dumps(item))] = item
            return
    if tokens and node is not None:  # null means unset: nobody owns it
        out[tokens] = node


def to_fields_v1(paths: Iterable[FieldPath]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for token in path:
            node = node.setdefault(token, {})
    return root


def from_fields_v1(fields: dict[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    for token, child in fields.items():
        path = (*prefix, token)
        if isinstance(child, dict) and child:
            out |= from_fields_v1(child, path)
        else:
            out.add(path)
    return out


def value_at(obj: Any, path: FieldPath) -> tuple[bool, Any]:
    """(found, value) of a field path in an object."""
    node = obj
    for token in path:
        if token == ".":
            continue
        if token.startswith("f:") and isinstance(node, dict) and token[2:] in node:
            node = node[token[2:]]
        elif token.startswith("k:") and isinstance(node, list):
            wanted = json.loads(token[2:])
            node = next((i for i in node if _matches(i, wanted)), _MISSING)
            if node is _MISSING:
                return False, None
        elif token.startswith("v:") and isinstance(node, list):
            wanted = json.loads(token[2:])
            if wanted not in node:
                return False, None
            node = wanted
        else:
            return False, None
    return True, node


_MISSING = object()


def _matches(item: Any, wanted: dict[str, Any]) -> bool:
    if not isinstance(item, dict):
        return False
    for key, value in wanted.items():
        have = item.get(key)
        if have is None and key == "protocol":
            have = "TCP"
        if have != value:
            return False
    return True


def remove_at(obj: Any, path: FieldPath) -> None:
    """Remove a field (or list item, for a ``.`` path) and the maps it leaves empty."""
    if path and path[-1] == ".":
        path = path[:-1]
    if not path:
        return
    chain: list[tuple[Any, str]] = []
    node = obj
    for token in path[:-1]:
        found, child = value_at(node, (token,))
        if not found:
            return
        chain.append((node, token))
        node = child
    _remove_child(node, path[-1])
    # prune maps this removal emptied
    for parent, token in reversed(chain):
        found, child = value_at(parent, (token,))
        if found and isinstance(child, dict | list) and not child:
            _remove_child(parent, token)
        else:
            break


def _remove_child(node: Any, token: str) -> None:
    if token.startswith("f:") and isinstance(node, dict):
        node.pop(token[2:], None)
    elif token.startswith("k:") and isinstance(node, list):
        wanted = json.loads(token[2:])
        node[:] = [i for i in node if not _matches(i, wanted)]
    elif token.startswith("v:") and isinstance(node, list):
        wanted = json.loads(token[2:])
        node[:] = [i for i in node if i != wanted]


# -- server-side apply ----------------------------------------------------------


def apply_merge(live: Any, config: Any, path: Path = (), builtin: bool = True) -> Any:
    """Merge an applied configuration into the live object (maps and keyed lists merge)."""
    if isinstance(config, dict) and isinstance(live, dict):
        result = clone(live)
        for key, value in config.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = apply_merge(result[key], value, (*path, key), builtin)
            else:
                result[key] = clone(value)
        return result
    if isinstance(config, list) and isinstance(live, list):
        keys = list_keys(path, builtin)
        if keys and all(isinstance(i, dict) for i in config + live):
            merged = clone(live)
            for item in config:
                key = _item_key(item, keys)
                index = next((i for i, t in enumerate(merged) if _item_key(t, keys) == key), None)
                if index is None:
                    merged.append(clone(item))
                else:
                    merged[index] = apply_merge(merged[index], item, path, builtin)
            return merged
        if builtin and path and path[-1] in SET_LISTS:
            return list(live) + [v for v in config if v not in live]
    return clone(config)


def removal_order(paths: Iterable[FieldPath]) -> list[FieldPath]:
    """Whole list items first (outermost first), then fields deepest first.

    Removing an item's key field before the item would leave a keyless husk.
    """
    items = sorted((p for p in paths if p[-1] == "."), key=len)
    fields = sorted((p for p in paths if p[-1] != "."), key=len, reverse=True)
    return items + fields


def is_key_field(path: FieldPath) -> bool:
    """Whether ``path`` is a merge-key field of a keyed list item (it goes with the item)."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def format_path(path: FieldPath) -> str:
    """``.spec.template.spec.containers[name="app"].image``, as conflict messages say it."""
    out = ""
    for token in path:
        if token == ".":
            continue
        if token.startswith("f:"):
            out += "." + token[2:]
        elif token.startswith("k:"):
            inner = ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(token[2:]).items())
            out += f"[{inner}]"
        elif token.startswith("v:"):
            out += f"[={token[2:]}]"
    return out
