"""Where Kubernetes serves its GA built-in kinds: known without asking (pure).

Discovery answers "which kinds does this group version serve, under which
resource name, namespaced or not". For the built-in kinds below the answer
is part of the Kubernetes API itself, the same on every cluster since 1.23
(the newest of them, ``autoscaling/v2``, went GA then; GKE supports none
older), so asking costs a round trip before the dry run and tells nothing.
Kinds of any other group version (CRDs, aggregated APIs, beta versions) are
still discovered, and so are the few GA kinds the emulator does not serve
(LimitRange, PodTemplate, IngressClass): ``tests/test_builtin_kinds.py``
checks every row against the emulator's discovery, which the real kubectl
checks in turn, so a row is here only once it can be checked.
"""

from __future__ import annotations

NAMESPACED = True
CLUSTER = False

BUILT_IN: dict[str, dict[str, tuple[str, bool]]] = {
    "v1": {
        "ConfigMap": ("configmaps", NAMESPACED),
        "Endpoints": ("endpoints", NAMESPACED),
        "Namespace": ("namespaces", CLUSTER),
        "PersistentVolume": ("persistentvolumes", CLUSTER),
        "PersistentVolumeClaim": ("persistentvolumeclaims", NAMESPACED),
        "Pod": ("pods", NAMESPACED),
        "ReplicationController": ("replicationcontrollers", NAMESPACED),
        "ResourceQuota": ("resourcequotas", NAMESPACED),
        "Secret": ("secrets", NAMESPACED),
        "Service": ("services", NAMESPACED),
        "ServiceAccount": ("serviceaccounts", NAMESPACED),
    },
    "apps/v1": {
        "ControllerRevision": ("controllerrevisions", NAMESPACED),
        "DaemonSet": ("daemonsets", NAMESPACED),
        "Deployment": ("deployments", NAMESPACED),
        "ReplicaSet": ("replicasets", NAMESPACED),
        "StatefulSet": ("statefulsets", NAMESPACED),
    },
    "batch/v1": {
        "CronJob": ("cronjobs", NAMESPACED),
        "Job": ("jobs", NAMESPACED),
    },
    "autoscaling/v2": {
        "HorizontalPodAutoscaler": ("horizontalpodautoscalers", NAMESPACED),
    },
    "networking.k8s.io/v1": {
        "Ingress": ("ingresses", NAMESPACED),
        "NetworkPolicy": ("networkpolicies", NAMESPACED),
    },
    "policy/v1": {
        "PodDisruptionBudget": ("poddisruptionbudgets", NAMESPACED),
    },
    "rbac.authorization.k8s.io/v1": {
        "ClusterRole": ("clusterroles", CLUSTER),
        "ClusterRoleBinding": ("clusterrolebindings", CLUSTER),
        "Role": ("roles", NAMESPACED),
        "RoleBinding": ("rolebindings", NAMESPACED),
    },
    "storage.k8s.io/v1": {
        "StorageClass": ("storageclasses", CLUSTER),
    },
    "scheduling.k8s.io/v1": {
        "PriorityClass": ("priorityclasses", CLUSTER),
    },
    "coordination.k8s.io/v1": {
        "Lease": ("leases", NAMESPACED),
    },
    "apiextensions.k8s.io/v1": {
        "CustomResourceDefinition": ("customresourcedefinitions", CLUSTER),
    },
}
"""apiVersion -> kind -> (resource name, namespaced)."""


def built_in(api_version: str, kind: str) -> tuple[str, bool] | None:
    """The resource name and scope of a GA built-in kind; None for any other kind."""
    return BUILT_IN.get(api_version, {}).get(kind)
