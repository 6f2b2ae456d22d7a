"""The API's resource types and the discovery documents that describe them.

One table of built-in kinds; custom resources join it when their CRD is
Established. Discovery is computed from the table, so a kind served is a kind
discovered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")

# Kinds whose metadata.generation the server maintains (bumped on spec changes).
GENERATION_KINDS = frozenset(
    {
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "CustomResourceDefinition",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
)


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the URL space and what it is called."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    custom: bool = False
    schema: Any = field(default=None, compare=False, hash=False)
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` / ``pods``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """``Deployment.apps`` / ``Pod``: how validation errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def has_generation(self) -> bool:
        return self.custom or self.kind in GENERATION_KINDS

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _rt(
    group: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = ("status",),
    version: str = "v1",
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group, version, kind, plural, namespaced, short, sub, False, None, categories
    )


BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "Namespace", "namespaces", False, ("ns",), ("status", "finalize")),
    _rt("", "Node", "nodes", False, ("no",)),
    _rt("", "ConfigMap", "configmaps", True, ("cm",), ()),
    _rt("", "Secret", "secrets", True, (), ()),
    _rt("", "Service", "services", True, ("svc",), ("status",), categories=("all",)),
    _rt("", "Pod", "pods", True, ("po",), ("status", "log"), categories=("all",)),
    _rt("", "Event", "events", True, ("ev",), ()),
    _rt("", "ServiceAccount", "serviceaccounts", True, ("sa",), ("token",)),
    _rt("", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",)),
    _rt("", "Endpoints", "endpoints", True, ("ep",), ()),
    _rt(
        "apps", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), "v1", ("all",)
    ),
    _rt("apps", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), "v1", ("all",)),
    _rt("apps", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"), "v1", ("all",)),
    _rt("apps", "DaemonSet", "daemonsets", True, ("ds",), ("status",), "v1", ("all",)),
    _rt("apps", "ControllerRevision", "controllerrevisions", True, (), ()),
    _rt("batch", "Job", "jobs", True, (), ("status",), "v1", ("all",)),
    _rt("batch", "CronJob", "cronjobs", True, ("cj",), ("status",), "v1", ("all",)),
    _rt("coordination.k8s.io", "Lease", "leases", True, (), ()),
    _rt(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
    ),
    _rt("networking.k8s.io", "Ingress", "ingresses", True, ("ing",)),
    _rt("networking.k8s.io", "NetworkPolicy", "networkpolicies", True, ("netpol",), ()),
    _rt("policy", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",)),
    _rt(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        version="v2",
        categories=("all",),
    ),
    _rt(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        version="v1",
        categories=("all",),
    ),
    _rt("discovery.k8s.io", "EndpointSlice", "endpointslices", True, (), ()),
    _rt("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", False, (), ()),
    _rt("authentication.k8s.io", "TokenReview", "tokenreviews", False, (), ()),
    _rt(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        (),
        (),
    ),
    _rt(
        "",
        "ReplicationController",
        "replicationcontrollers",
        True,
        ("rc",),
        ("status", "scale"),
        categories=("all",),
    ),
    _rt("", "PersistentVolume", "persistentvolumes", False, ("pv",)),
    _rt("storage.k8s.io", "StorageClass", "storageclasses", False, ("sc",), ()),
    _rt("rbac.authorization.k8s.io", "Role", "roles", True, (), ()),
    _rt("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", True, (), ()),
    _rt("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", False, (), ()),
    _rt("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", False, (), ()),
    # Stored and listed; no quota controller counts usage and nothing is enforced.
    _rt("", "ResourceQuota", "resourcequotas", True, ("quota",)),
    _rt("scheduling.k8s.io", "PriorityClass", "priorityclasses", False, ("pc",), ()),
)


# Kinds the server computes an answer for and never stores (POST only).
REVIEWS = frozenset({"SelfSubjectReview", "TokenReview", "SelfSubjectAccessReview"})


class Registry:
    """The resource types being served: built-ins plus Established custom resources."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in BUILTIN:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove_group_plural(self, group: str, plural: str) -> None:
        for key in [k for k in self._types if k[0] == group and k[2] == plural]:
            del self._types[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions (the first is preferred)."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            if rt.group:
                versions = out.setdefault(rt.group, [])
                if rt.version not in versions:
                    versions.append(rt.version)
        return out

    # -- discovery documents --------------------------------------------------

    def core_versions(self, address: str) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.groups().get(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def group_list(self) -> dict[str, Any]:
        groups = [self.api_group(g) for g in self.groups()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = [rt for rt in self._types.values() if (rt.group, rt.version) == (group, version)]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rt in sorted(types, key=lambda t: t.plural):
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["create"] if rt.kind in REVIEWS else list(ALL_VERBS),
                "storageVersionHash": "",
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in rt.subresources:
                resources.append(_subresource(rt, sub))
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }


def _subresource(rt: ResourceType, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{rt.plural}/{sub}",
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(STATUS_VERBS),
    }
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "log":
        entry.update(kind="Pod", verbs=["get"])
    elif sub == "finalize":
        entry.update(verbs=["update"])
    elif sub == "token":
        entry.update(
            group="authentication.k8s.io", version="v1", kind="TokenRequest", verbs=["create"]
        )
    return entry


VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-gitops-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
