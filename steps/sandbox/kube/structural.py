"""Validating custom resources against their CRD's ``openAPIV3Schema``.

What the apiextensions server checks and how it words it
(``k8s.io/apiextensions-apiserver/pkg/apiserver/validation``, built on
kube-openapi's validators): types, ``required``, ``minimum``/``maximum``,
``enum``, string and list lengths, ``pattern``, and ``x-kubernetes-list-type:
set``/``map`` uniqueness. Pure: objects in, causes out.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["validate_custom"]

Cause = tuple[str, str, str]  # field, reason, message

_TYPES = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def validate_custom(schema: Any, obj: dict[str, Any]) -> list[Cause]:
    """Causes for a custom resource; metadata, apiVersion and kind are the server's own."""
    if not isinstance(schema, dict):
        return []
    props = schema.get("properties") or {}
    causes: list[Cause] = []
    for name in schema.get("required") or []:
        if name not in obj and name not in ("metadata", "apiVersion", "kind"):
            causes.append((name, "FieldValueRequired", "Required value"))
    for name, value in obj.items():
        if name in ("metadata", "apiVersion", "kind") or name not in props:
            continue
        causes += _check(props[name], value, name)
    return causes


def _check(schema: Any, value: Any, path: str) -> list[Cause]:
    if not isinstance(schema, dict):
        return []
    if value is None:
        if schema.get("nullable"):
            return []
        kind = schema.get("type")
        return (
            [
                (
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {path} in body must be of type {kind}: "null"',
                )
            ]
            if kind
            else []
        )
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [
                (
                    path,
                    "FieldValueTypeInvalid",
                    f"Invalid value: {_shown(value)}: {path} in body must be of type "
                    f"integer,string: {_shown(value)}",
                )
            ]
        return []
    kind = schema.get("type")
    if kind and not _type_ok(value, kind):
        got = _json_type(value)
        return [
            (
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: "{got}": {path} in body must be of type {kind}: "{got}"',
            )
        ]
    causes: list[Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_shown(v) for v in schema["enum"])
        causes.append(
            (
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {_shown(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        causes += _bounds(schema, value, path)
    if isinstance(value, str):
        causes += _string(schema, value, path)
    if isinstance(value, list):
        causes += _array(schema, value, path)
    if isinstance(value, dict):
        causes += _object(schema, value, path)
    return causes


def _json_type(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _type_ok(value, name):
            return name
    return "null"


def _bounds(schema: dict[str, Any], value: float, path: str) -> list[Cause]:
    causes: list[Cause] = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        exclusive = schema.get("exclusiveMinimum") is True
        if value < low or (exclusive and value == low):
            word = "greater than" if exclusive else "greater than or equal to"
            causes.append(
                (
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {_shown(value)}: {path} in body should be {word} {low}",
                )
            )
    if high is not None:
        exclusive = schema.get("exclusiveMaximum") is True
        if value > high or (exclusive and value == high):
            word = "less than" if exclusive else "less than or equal to"
            causes.append(
                (
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {_shown(value)}: {path} in body should be {word} {high}",
                )
            )
    return causes


def _string(schema: dict[str, Any], value: str, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if schema.get("maxLength") is not None and len(value) > schema["maxLength"]:
        causes.append(
            (
                path,
                "FieldValueTooLong",
                f"Too long: may not be more than {schema['maxLength']} bytes",
            )
        )
    if schema.get("minLength") is not None and len(value) < schema["minLength"]:
        causes.append(
            (
                path,
                "FieldValueInvalid",
                f"Invalid value: {_shown(value)}: {path} in body should be at least "
                f"{schema['minLength']} chars long",
            )
        )
    pattern = schema.get("pattern")
    if pattern:
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True
        if not matched:
            causes.append(
                (
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {_shown(value)}: {path} in body should match '{pattern}'",
                )
            )
    return causes


def _array(schema: dict[str, Any], value: list[Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    if schema.get("maxItems") is not None and len(value) > schema["maxItems"]:
        causes.append(
            (
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if schema.get("minItems") is not None and len(value) < schema["minItems"]:
        causes.append(
            (
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                causes.append(
                    (f"{path}[{index}]", "FieldValueDuplicate", f"Duplicate value: {_shown(item)}")
                )
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[Any] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys}
            if key in seen_keys:
                causes.append(
                    (f"{path}[{index}]", "FieldValueDuplicate", f"Duplicate value: {_shown(key)}")
                )
            else:
                seen_keys.append(key)
    items = schema.get("items")
    for index, item in enumerate(value):
        causes += _check(items, item, f"{path}[{index}]")
    return causes


def _object(schema: dict[str, Any], value: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for name in schema.get("required") or []:
        if name not in value:
            causes.append((f"{path}.{name}", "FieldValueRequired", "Required value"))
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for name, item in value.items():
        if name in props:
            causes += _check(props[name], item, f"{path}.{name}")
        elif isinstance(extra, dict):
            causes += _check(extra, item, f"{path}.{name}")
    if schema.get("maxProperties") is not None and len(value) > schema["maxProperties"]:
        causes.append(
            (
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
    return causes
