"""Core v1 Events, recorded and aggregated the way kubelet and controllers do."""

from __future__ import annotations

import secrets
from typing import Any

from steps.sandbox.kube.api import Cluster, now


class EventRecorder:
    """Writes Events about objects; a repeat of the same reason and message bumps ``count``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._seen: dict[tuple[str, str, str, str], str] = {}

    def record(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        component: str,
        host: str | None = None,
        field_path: str | None = None,
    ) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        involved: dict[str, Any] = {
            "kind": obj.get("kind"),
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "uid": meta.get("uid"),
            "apiVersion": obj.get("apiVersion"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if not meta.get("namespace"):
            involved.pop("namespace")
        if field_path:
            involved["fieldPath"] = field_path
        key = (str(meta.get("uid")), reason, message, field_path or "")
        rt = self.cluster.registry.lookup("", "v1", "events")
        assert rt is not None
        with self.cluster.lock:
            existing_name = self._seen.get(key)
            existing = self.cluster.find(rt, namespace, existing_name) if existing_name else None
            stamp = now()
            if existing is not None:
                existing["count"] = int(existing.get("count", 1)) + 1
                existing["lastTimestamp"] = stamp
                self.cluster.write(rt, existing, manager=component)
                return
            name = f"{meta['name']}.{secrets.token_hex(8)}"
            source: dict[str, Any] = {"component": component}
            if host:
                source["host"] = host
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "type": type_,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": host or "",
            }
            if self.cluster.controller_create(rt, event, manager=component) is not None:
                self._seen[key] = name
