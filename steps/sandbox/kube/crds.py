"""CustomResourceDefinitions: Established after a short delay, then served.

An Established CRD adds its served versions to the registry, so discovery and
the URL space grow exactly when the real server's would; deleting it removes
its custom resources first (the cleanup finalizer), then the types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steps.sandbox.kube.resources import ResourceType
from steps.sandbox.kube.store import clone

if TYPE_CHECKING:
    from steps.sandbox.kube.controller_base import ControllerHost

CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


def resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = tuple(
            name for name in ("status", "scale") if name in (version.get("subresources") or {})
        )
        openapi = (version.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version.get("name", "v1"),
                kind=names.get("kind", ""),
                plural=names.get("plural", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                subresources=subresources,
                custom=True,
                schema=openapi,
                categories=tuple(names.get("categories") or ()),
            )
        )
    return out


def sync_crds(c: ControllerHost) -> None:
    cluster = c.cluster
    rt = c.rt("apiextensions.k8s.io", "customresourcedefinitions")
    for crd in [clone(x) for x in cluster.store.items(rt.key)]:
        meta, spec = crd["metadata"], crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural = spec.get("group", ""), names.get("plural", "")
        if meta.get("deletionTimestamp"):
            remaining = 0
            for served in resource_types(crd):
                for obj in list(cluster.store.items((group, plural))):
                    remaining += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        try:
                            cluster.delete(
                                served,
                                obj["metadata"].get("namespace", ""),
                                obj["metadata"]["name"],
                            )
                        except Exception:
                            continue
                break
            if remaining == 0:
                cluster.registry.remove_group_plural(group, plural)
                crd["metadata"]["finalizers"] = [
                    f for f in meta.get("finalizers") or [] if f != CLEANUP
                ]
                cluster.write(rt, crd, manager="kube-apiserver")
            continue
        established = any(
            x.get("type") == "Established" and x.get("status") == "True"
            for x in (crd.get("status") or {}).get("conditions") or []
        )
        if established:
            cluster.registry.remove_group_plural(group, plural)
            for served in resource_types(crd):
                cluster.registry.add(served)
            continue
        if not c.after(meta["uid"], c.timings.crd_establish):
            continue
        if CLEANUP not in (meta.get("finalizers") or []):
            crd["metadata"]["finalizers"] = [*(meta.get("finalizers") or []), CLEANUP]
            crd = cluster.write(rt, crd, manager="kube-apiserver")
        stamp = _now()
        storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "v1")
        crd["status"] = {
            "acceptedNames": clone(names),
            "storedVersions": [storage],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "lastTransitionTime": stamp,
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                },
                {
                    "type": "Established",
                    "status": "True",
                    "lastTransitionTime": stamp,
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                },
            ],
        }
        for served in resource_types(crd):
            cluster.registry.add(served)
        cluster.write(rt, crd, subresource="status", manager="kube-apiserver")


def _now() -> str:
    from steps.sandbox.kube.api import now

    return now()
