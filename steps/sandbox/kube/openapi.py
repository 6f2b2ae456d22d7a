"""OpenAPI v3 documents for every served kind, as ``/openapi/v3`` serves them.

kubectl reads these to decide how to validate (it asks the server to when a
group-version's PATCH operations take ``fieldValidation``), for ``explain``,
and for client-side apply's strategic merge metadata. Built-in schemas come
from the official Python client's models (generated from the real server's
OpenAPI, so field names, types, descriptions and required lists agree);
custom resources use their CRD's ``openAPIV3Schema``, as the real server does.

Documents are built when first asked for and cached until the served kinds
change; the root lists each group-version with a content hash, which kubectl
uses as its cache key.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

from steps.sandbox.kube.merge import MERGE_KEYS, SET_LISTS
from steps.sandbox.kube.resources import ResourceType

__all__ = ["OpenApi"]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# Python client classes that live in apimachinery, not in an API group.
_META_CLASSES = frozenset(
    [
        "ObjectMeta",
        "ListMeta",
        "LabelSelector",
        "LabelSelectorRequirement",
        "OwnerReference",
        "ManagedFieldsEntry",
        "Condition",
        "Status",
        "StatusDetails",
        "StatusCause",
        "DeleteOptions",
        "Preconditions",
    ]
)
_VERSIONED = re.compile(r"^(?:[A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(\w+)$")
_QUERY = {
    "dryRun": "When present, indicates that modifications should not be persisted.",
    "fieldManager": "a name associated with the actor or entity that is making these changes.",
    "fieldValidation": "instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown or duplicate fields: Ignore, Warn or Strict.",
    "force": "Force is going to force Apply requests.",
}
# Whose ``ports`` lists merge by key: containers' by containerPort, Services' by port.
PORT_KEYS = {
    "Container": ("containerPort", "protocol"),
    "EphemeralContainer": ("containerPort", "protocol"),
    "ServiceSpec": ("port", "protocol"),
}
# Fields whose value is a resource quantity ("500m", "1Gi") in the real schema.
_QUANTITY_MAPS = frozenset({"limits", "requests", "capacity", "allocatable", "hard", "used"})


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _models() -> Any:
    import kubernetes.client.models as models  # heavy: only when a client asks

    return models


class _Book:
    """The ``components.schemas`` of one document, filled as references are followed."""

    def __init__(self, group: str, kinds: set[str]) -> None:
        self.group = group
        self.kinds = kinds  # the group's kinds: their own types live in the group
        self.schemas: dict[str, Any] = {}

    def name_of(self, cls_name: str, owner_group: str | None = None) -> str:
        match = _VERSIONED.match(cls_name)
        version, bare = (match.group(1).lower(), match.group(2)) if match else ("v1", cls_name)
        if bare in _META_CLASSES:
            return META + bare
        own = owner_group and any(bare.startswith(kind) for kind in self.kinds)
        short = owner_group.split(".")[0] if owner_group and own else "core"
        return f"io.k8s.api.{short}.{version}.{bare}"

    def model(self, cls_name: str, owner_group: str | None = None) -> str:
        """Add the schema of a Python client model class; return its component name."""
        name = self.name_of(cls_name, owner_group)
        if name in self.schemas:
            return name
        cls = getattr(_models(), cls_name)
        self.schemas[name] = {}  # placeholder: models refer to themselves (JSONSchemaProps)
        doc = (cls.__doc__ or "").split("Attributes:")[0].strip()
        properties: dict[str, Any] = {}
        required: list[str] = []
        for attr, type_name in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            field = cls.model_fields.get(attr)
            prop = self._type(type_name, json_name, owner_group)
            description = getattr(field, "description", None)
            if description:
                prop = (
                    {**prop, "description": description}
                    if "$ref" not in prop
                    else {
                        "allOf": [prop],
                        "description": description,
                    }
                )
            _patch_extensions(cls_name, json_name, prop)
            properties[json_name] = prop
            if field is not None and field.is_required():
                required.append(json_name)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if doc:
            schema["description"] = " ".join(doc.split())
        if required:
            schema["required"] = required
        self.schemas[name] = schema
        return name

    def _type(self, type_name: str, json_name: str, owner_group: str | None) -> dict[str, Any]:
        simple = {
            "str": {"type": "string"},
            "int": {"type": "integer", "format": "int32"},
            "float": {"type": "number", "format": "double"},
            "bool": {"type": "boolean"},
            "datetime": {"type": "string", "format": "date-time"},
            "date": {"type": "string", "format": "date"},
        }
        if type_name in simple:
            return dict(simple[type_name])
        if type_name == "object":
            if json_name in ("maxSurge", "maxUnavailable", "port", "targetPort", "minAvailable"):
                self.schemas.setdefault(
                    INT_OR_STRING,
                    {
                        "type": "string",
                        "format": "int-or-string",
                        "x-kubernetes-int-or-string": True,
                    },
                )
                return _ref(INT_OR_STRING)
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if type_name == "bytes":
            return {"type": "string", "format": "byte"}
        if type_name.startswith("List[") and type_name.endswith("]"):
            return {"type": "array", "items": self._type(type_name[5:-1], "", owner_group)}
        if type_name.startswith("Dict[str, ") and type_name.endswith("]"):
            value = type_name[len("Dict[str, ") : -1]
            if value == "str" and json_name in _QUANTITY_MAPS:
                self.schemas.setdefault(QUANTITY, {"type": "string", "format": "quantity"})
                return {"type": "object", "additionalProperties": _ref(QUANTITY)}
            return {"type": "object", "additionalProperties": self._type(value, "", owner_group)}
        return _ref(self.model(type_name, owner_group))


def _patch_extensions(owner: str, json_name: str, prop: dict[str, Any]) -> None:
    """Strategic-merge metadata kubectl's client-side apply reads (as the real schema has)."""
    if prop.get("type") != "array":
        return
    keys = MERGE_KEYS.get(json_name)
    if json_name == "ports":  # keyed as the server merges them (merge.list_keys)
        keys = PORT_KEYS.get(_VERSIONED.sub(r"\2", owner))
    if keys:
        prop["x-kubernetes-patch-merge-key"] = keys[0]
        prop["x-kubernetes-patch-strategy"] = "merge"
        prop["x-kubernetes-list-type"] = "map"
        prop["x-kubernetes-list-map-keys"] = list(keys)
    elif json_name in SET_LISTS:
        prop["x-kubernetes-patch-strategy"] = "merge"


def _class_for(rt: ResourceType) -> str | None:
    models = _models()
    version = rt.version[:1].upper() + rt.version[1:]
    group = rt.group.split(".")[0]
    for name in (
        f"{version}{rt.kind}",
        f"Core{version}{rt.kind}" if not rt.group else "",
        f"{group[:1].upper()}{group[1:]}{version}{rt.kind}" if group else "",
    ):
        if name and hasattr(models, name):
            return name
    return None


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _crd_component(rt: ResourceType, book: _Book) -> str:
    reversed_group = ".".join(reversed(rt.group.split(".")))
    name = f"{reversed_group}.{rt.version}.{rt.kind}"
    schema = json.loads(json.dumps(rt.schema)) if isinstance(rt.schema, dict) else {}
    schema.setdefault("type", "object")
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation "
        "of an object.",
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
    }
    meta = book.model("V1ObjectMeta")
    props["metadata"] = {"allOf": [_ref(meta)], "description": "Standard object's metadata."}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    book.schemas[name] = schema
    return name


def _operation(
    rt: ResourceType, action: str, ref: str, params: tuple[str, ...], sub: str = ""
) -> dict[str, Any]:
    verb = {"get": "read", "list": "list", "post": "create", "put": "replace", "patch": "patch"}
    op: dict[str, Any] = {
        "description": f"{action} {rt.kind}",
        "operationId": f"{verb.get(action, action)}{rt.kind}{sub.title()}",
        "parameters": [
            {"name": p, "in": "query", "description": _QUERY[p], "schema": {"type": "string"}}
            for p in params
        ],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": _ref(ref)}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rt),
    }
    if action in ("post", "put"):
        op["requestBody"] = {"content": {"*/*": {"schema": _ref(ref)}}, "required": True}
    if action == "patch":
        op["requestBody"] = {
            "content": {
                t: {"schema": {"type": "object"}}
                for t in (
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                )
            },
            "required": True,
        }
    return op


def _paths(rt: ResourceType, ref: str) -> dict[str, Any]:
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else "/api/v1"
    scoped = (
        f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else (f"{base}/{rt.plural}")
    )
    writes = ("dryRun", "fieldManager", "fieldValidation")
    paths: dict[str, Any] = {
        scoped: {
            "get": _operation(rt, "list", ref, ()),
            "post": _operation(rt, "post", ref, writes),
        },
        f"{scoped}/{{name}}": {
            "get": _operation(rt, "get", ref, ()),
            "put": _operation(rt, "put", ref, writes),
            "patch": _operation(rt, "patch", ref, (*writes, "force")),
            "delete": _operation(rt, "delete", ref, ("dryRun",)),
        },
    }
    for sub in rt.subresources:
        if sub in ("status", "scale"):
            paths[f"{scoped}/{{name}}/{sub}"] = {
                "get": _operation(rt, "get", ref, (), sub),
                "put": _operation(rt, "put", ref, writes, sub),
                "patch": _operation(rt, "patch", ref, (*writes, "force"), sub),
            }
    if rt.namespaced:
        paths[f"{base}/{rt.plural}"] = {"get": _operation(rt, "list", ref, ())}
    return paths


def build_document(types: list[ResourceType]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version."""
    first = types[0]
    book = _Book(first.group, {rt.kind for rt in types})
    paths: dict[str, Any] = {}
    for rt in sorted(types, key=lambda t: t.plural):
        if rt.custom:
            ref = _crd_component(rt, book)
        else:
            cls = _class_for(rt)
            if cls is None:
                continue
            ref = book.model(cls, rt.group)
            book.schemas[ref]["x-kubernetes-group-version-kind"] = [_gvk(rt)]
        paths.update(_paths(rt, ref))
    title = "Kubernetes"
    return {
        "openapi": "3.0.0",
        "info": {"title": title, "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": book.schemas},
    }


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


class OpenApi:
    """Builds and caches the v3 documents for the registry's current kinds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[Any, ...], bytes, str]] = {}

    def _types_by_path(self, types: list[ResourceType]) -> dict[str, list[ResourceType]]:
        out: dict[str, list[ResourceType]] = {}
        for rt in types:
            out.setdefault(gv_path(rt.group, rt.version), []).append(rt)
        return out

    def document(self, types: list[ResourceType], path: str) -> tuple[bytes, str] | None:
        """(JSON bytes, hash) of the document at ``api/v1`` / ``apis/G/V``; None if unknown."""
        served = self._types_by_path(types).get(path)
        if not served:
            return None
        key = _key(served)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
            data = json.dumps(build_document(served), separators=(",", ":")).encode()
            digest = _digest(key)
            self._cache[path] = (key, data, digest)
            return data, digest

    def root(self, types: list[ResourceType]) -> dict[str, Any]:
        """Every group-version's document URL; the hash changes when its kinds do."""
        paths: dict[str, Any] = {}
        for path, served in sorted(self._types_by_path(types).items()):
            digest = _digest(_key(served))
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
        return {"paths": paths}


def _key(served: list[ResourceType]) -> tuple[Any, ...]:
    return tuple(
        sorted((rt.plural, rt.kind, json.dumps(rt.schema, sort_keys=True)) for rt in served)
    )


def _digest(key: tuple[Any, ...]) -> str:
    return hashlib.sha512(repr(key).encode()).hexdigest()[:32].upper()
