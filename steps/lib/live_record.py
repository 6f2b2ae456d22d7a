"""What is live: the ConfigMap ``gitops-steps-NAME`` that a successful rollout writes.

verify-rollout ``--record NAME --commit SHA`` writes it after a success; it
says which candidate commit and build are running, since when, with which
images, and which objects were applied (the inventory ``--prune`` reads).
``gitops-promote --require-live NAME`` reads it with ``read_live_record``.

Pure functions build and parse the ConfigMap; the two I/O functions are thin.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steps.lib.errors import UsageError
from steps.lib.pod_specs import container_images

if TYPE_CHECKING:
    from steps.lib.kube import KubeApi

RECORD_PREFIX = "gitops-steps-"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "gitops-steps"
RECORD_LABEL = "gitops-steps.dev/record"
"""On every applied object: the inventory ``--prune`` selects by."""
LIVE_RECORD_LABEL = "gitops-steps.dev/live-record"
"""On the record ConfigMap itself (never pruned: it carries no RECORD_LABEL)."""

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 63 - len(RECORD_PREFIX)


@dataclass(frozen=True)
class InventoryItem:
    """One object a rollout applied."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    def as_dict(self) -> dict[str, str]:
        item = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            item["namespace"] = self.namespace
        return item


@dataclass(frozen=True)
class LiveRecord:
    """Which candidate commit and build are live for one record name."""

    name: str
    namespace: str
    commit: str
    build_id: str | None
    time: str
    images: tuple[str, ...] = ()
    inventory: tuple[InventoryItem, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "configmap": configmap_name(self.name),
            "commit": self.commit,
            "build_id": self.build_id,
            "time": self.time,
            "images": list(self.images),
        }


def check_record_name(name: str, flag: str = "--record") -> str:
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise UsageError(
            f"{flag} {name}: must be lowercase letters, digits and '-', "
            f"at most {MAX_NAME} characters"
        )
    return name


def configmap_name(name: str) -> str:
    return RECORD_PREFIX + name


def record_configmap(record: LiveRecord) -> dict[str, Any]:
    """The ConfigMap that holds ``record`` (pure)."""
    data = {
        "record": record.name,
        "commit": record.commit,
        "time": record.time,
        "images": "\n".join(record.images),
        "inventory": json.dumps([item.as_dict() for item in record.inventory], indent=1),
    }
    if record.build_id:
        data["build-id"] = record.build_id
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(record.name),
            "namespace": record.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, LIVE_RECORD_LABEL: record.name},
        },
        "data": data,
    }


def parse_record(configmap: Mapping[str, Any]) -> LiveRecord | None:
    """A ``LiveRecord`` from its ConfigMap; None when it holds no commit (pure)."""
    meta = configmap.get("metadata") or {}
    data = configmap.get("data") or {}
    commit = str(data.get("commit") or "").strip()
    if not commit:
        return None
    name = str(data.get("record") or str(meta.get("name", "")).removeprefix(RECORD_PREFIX))
    images = tuple(line for line in str(data.get("images") or "").splitlines() if line.strip())
    return LiveRecord(
        name=name,
        namespace=str(meta.get("namespace") or ""),
        commit=commit,
        build_id=str(data["build-id"]) if data.get("build-id") else None,
        time=str(data.get("time") or ""),
        images=images,
        inventory=tuple(parse_inventory(data.get("inventory"))),
    )


def parse_inventory(text: Any) -> Iterable[InventoryItem]:
    try:
        items = json.loads(text) if isinstance(text, str) and text.strip() else []
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("kind") and item.get("name"):
            found.append(
                InventoryItem(
                    str(item.get("apiVersion", "")),
                    str(item["kind"]),
                    str(item["namespace"]) if item.get("namespace") else None,
                    str(item["name"]),
                )
            )
    return found


def inventory_labels(record: str) -> dict[str, str]:
    """Labels put on every object applied under ``--record`` (what --prune selects by)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, RECORD_LABEL: record}


def inventory_selector(record: str) -> str:
    return ",".join(f"{key}={value}" for key, value in inventory_labels(record).items())


# --------------------------------------------------------------------------- I/O


def _path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{configmap_name(name)}"


def read_live_record(api: KubeApi, namespace: str, name: str) -> LiveRecord | None:
    """The live record ``name`` in ``namespace``, or None if none was written yet.

    For ``gitops-promote --require-live NAME``: connect with
    ``steps.lib.kube.connect(steps.lib.kube.access_from_args(args))`` and compare
    ``record.commit`` with the commit being promoted. Transient API errors are
    retried; ``ExternalError`` (exit 3) once the cluster stays unreachable.
    """
    check_record_name(name, "--require-live")
    found = api.get(_path(namespace, name))
    return None if found is None else parse_record(found)


def write_live_record(api: KubeApi, record: LiveRecord) -> dict[str, Any]:
    """Server-side apply the record's ConfigMap; the object the server returned."""
    resource = api.resource("v1", "ConfigMap")
    if resource is None:
        raise UsageError("the cluster serves no v1 ConfigMap")
    return api.apply(resource, record_configmap(record))


def images_in(objects: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Every container image in the pod specs of ``objects``, sorted (pure)."""
    found: set[str] = set()
    for obj in objects:
        found |= container_images(obj)
    return tuple(sorted(found))
