"""Where each kind keeps its pod spec, and which lists in it hold containers (pure).

One table (kstatus style: a row a kind), read by update-manifest (which image
values to pin, on YAML nodes) and by the live record (which images went live,
on plain dicts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
TEMPLATE_SPEC_PATH = POD_SPEC_PATHS["Deployment"]
"""Where a kind not in the table (a custom workload) usually keeps one."""


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's pod spec: by its kind's row, else at ``spec.template.spec``."""
    node: Any = obj
    for key in POD_SPEC_PATHS.get(str(obj.get("kind")), TEMPLATE_SPEC_PATH):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def container_images(obj: Mapping[str, Any]) -> set[str]:
    """Every image named in the object's pod spec (init and ephemeral containers too)."""
    spec = pod_spec(obj)
    if spec is None:
        return set()
    return {
        str(container["image"])
        for key in CONTAINER_LISTS
        for container in spec.get(key) or []
        if isinstance(container, Mapping) and container.get("image")
    }
