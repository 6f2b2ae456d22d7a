"""The endpoints and endpointslice controllers, and the ``kubernetes`` Service.

For every Service with a selector, an Endpoints object of the same name and
one EndpointSlice (``kubernetes.io/service-name``) list the matching pods
that have an IP: Ready ones as addresses, the others as not ready, with
target ports resolved against the pods' named container ports. Objects are
written only when their content changes, as the real controllers do.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from steps.sandbox.kube.api import CONTROLLER
from steps.sandbox.kube.selectors import selector_matches
from steps.sandbox.kube.store import clone

if TYPE_CHECKING:
    from steps.sandbox.kube.controller_base import ControllerHost

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"


def _target_port(port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for named in container.get("ports") or []:
            if named.get("name") == target:
                return int(named.get("containerPort", 0)) or None
    return None


def _owner(svc: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": svc["metadata"]["name"],
        "uid": svc["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _pods_for(c: ControllerHost, svc: dict[str, Any]) -> list[dict[str, Any]]:
    selector = (svc.get("spec") or {}).get("selector") or {}
    ns = svc["metadata"]["namespace"]
    return sorted(
        (
            p
            for p in c.cluster.store.items(("", "pods"), ns)
            if (p.get("status") or {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")
            and selector_matches({"matchLabels": selector}, p["metadata"].get("labels") or {})
        ),
        key=lambda p: p["metadata"]["name"],
    )


def _address(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "ip": pod["status"]["podIP"],
        "nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "targetRef": {
            "kind": "Pod",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    }


def _endpoints(c: ControllerHost, svc: dict[str, Any], pods: list[dict[str, Any]]) -> Any:
    ports = (svc.get("spec") or {}).get("ports") or []
    subsets: dict[tuple[Any, ...], dict[str, Any]] = {}
    for pod in pods:
        resolved = []
        for port in ports:
            number = _target_port(port, pod)
            if number is not None:
                entry = {"port": number, "protocol": port.get("protocol", "TCP")}
                if port.get("name"):
                    entry["name"] = port["name"]
                resolved.append(entry)
        key = tuple(sorted((p.get("name", ""), p["port"]) for p in resolved))
        subset = subsets.setdefault(key, {"ports": resolved} if resolved else {})
        which = "addresses" if c.pod_ready(pod) else "notReadyAddresses"
        subset.setdefault(which, []).append(_address(pod))
    return [s for s in subsets.values() if s.get("addresses") or s.get("notReadyAddresses")]


def _slice_endpoints(c: ControllerHost, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pod in pods:
        ready = c.pod_ready(pod)
        address = _address(pod)
        out.append(
            {
                "addresses": [address["ip"]],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": address["nodeName"],
                "targetRef": address["targetRef"],
            }
        )
    return out


def _slice_ports(svc: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for port in (svc.get("spec") or {}).get("ports") or []:
        number = _target_port(port, pods[0]) if pods else None
        entry: dict[str, Any] = {
            "name": port.get("name", ""),
            "protocol": port.get("protocol", "TCP"),
        }
        if number is not None:
            entry["port"] = number
        out.append(entry)
    return out


def _put(c: ControllerHost, group: str, plural: str, wanted: dict[str, Any]) -> None:
    """Create ``wanted`` or bring the stored one to it; nothing when already so."""
    rt = c.rt(group, plural)
    meta = wanted["metadata"]
    current = c.cluster.store.get(rt.key, meta["namespace"], meta["name"])
    if current is None:
        c.cluster.controller_create(rt, wanted)
        return
    fields = [k for k in wanted if k not in ("metadata", "apiVersion", "kind")]
    labels = meta.get("labels") or {}
    if all(current.get(k) == wanted.get(k) for k in fields) and all(
        (current["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items()
    ):
        return
    updated = clone(current)
    for key in fields:
        if wanted.get(key) is None:
            updated.pop(key, None)
        else:
            updated[key] = wanted[key]
    updated["metadata"].setdefault("labels", {}).update(labels)
    c.cluster.write(rt, updated, manager=CONTROLLER)


def sync_endpoints(c: ControllerHost) -> None:
    """Endpoints and EndpointSlices for every Service with a selector."""
    for svc in list(c.cluster.store.items(("", "services"))):
        spec = svc.get("spec") or {}
        meta = svc["metadata"]
        if not spec.get("selector") or meta.get("deletionTimestamp"):
            continue
        pods = _pods_for(c, svc)
        ns, name = meta["namespace"], meta["name"]
        endpoints: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(meta.get("labels") or {}),
            },
            "subsets": _endpoints(c, svc, pods) or None,
        }
        _put(c, "", "endpoints", endpoints)
        suffix = hashlib.sha256(meta["uid"].encode()).hexdigest()[:5]
        slice_: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-{suffix}"[:63],
                "namespace": ns,
                "labels": {
                    **(meta.get("labels") or {}),
                    SERVICE_NAME: name,
                    MANAGED_BY: "endpointslice-controller.k8s.io",
                },
                "ownerReferences": [_owner(svc)],
            },
            "addressType": "IPv4",
            "endpoints": _slice_endpoints(c, pods) or None,
            "ports": _slice_ports(svc, pods) or None,
        }
        _put(c, "discovery.k8s.io", "endpointslices", slice_)


def api_service(c: ControllerHost, port: int) -> None:
    """The ``default/kubernetes`` Service, its Endpoints and EndpointSlice: this server."""
    labels = {"component": "apiserver", "provider": "kubernetes"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.1",
            "clusterIPs": ["10.96.0.1"],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    }
    if c.cluster.store.get(("", "services"), "default", "kubernetes") is None:
        c.cluster.controller_create(c.rt("", "services"), service, manager="kube-apiserver")
    address = {"ip": "127.0.0.1"}
    _put(
        c,
        "",
        "endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {}},
            "subsets": [
                {
                    "addresses": [address],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ],
        },
    )
    _put(
        c,
        "discovery.k8s.io",
        "endpointslices",
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {
                    SERVICE_NAME: "kubernetes",
                    MANAGED_BY: "endpointslice-controller.k8s.io",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    )
