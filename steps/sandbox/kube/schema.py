"""What the server knows about each kind: its fields, its defaults, its validation.

The field tables cover the kinds we serve down to the container level, so
``fieldValidation=Strict`` names unknown fields at ``.spec.*`` and inside pod
templates as the real server does. ``None`` means "any value" (scalars, label
maps, and sub-objects we do not model); a one-element list means "a list of
these"; ``{"*": s}`` means "a map of these".
"""

from __future__ import annotations

import base64
import re
from typing import Any

from steps.sandbox.kube.resources import ResourceType

Schema = Any


def _words(text: str) -> list[str]:
    return text.split()


OBJECT_META: Schema = dict.fromkeys(
    _words(
        "name generateName namespace selfLink uid resourceVersion generation creationTimestamp "
        "deletionTimestamp deletionGracePeriodSeconds labels annotations ownerReferences "
        "finalizers managedFields"
    )
)


def _fields(names: str, **sub: Schema) -> dict[str, Schema]:
    out: dict[str, Schema] = dict.fromkeys(names.split())
    out.update(sub)
    return out


PROBE = _fields(
    "exec httpGet tcpSocket grpc initialDelaySeconds timeoutSeconds periodSeconds "
    "successThreshold failureThreshold terminationGracePeriodSeconds"
)
CONTAINER = _fields(
    "name image command args workingDir envFrom resizePolicy restartPolicy volumeDevices "
    "lifecycle terminationMessagePath terminationMessagePolicy imagePullPolicy securityContext "
    "stdin stdinOnce tty",
    ports=[_fields("containerPort hostPort hostIP name protocol")],
    env=[_fields("name value valueFrom")],
    resources=_fields("limits requests claims"),
    volumeMounts=[
        _fields("name mountPath readOnly subPath subPathExpr mountPropagation recursiveReadOnly")
    ],
    livenessProbe=PROBE,
    readinessProbe=PROBE,
    startupProbe=PROBE,
)
POD_SPEC = _fields(
    "volumes restartPolicy terminationGracePeriodSeconds activeDeadlineSeconds dnsPolicy "
    "nodeSelector serviceAccountName serviceAccount automountServiceAccountToken nodeName "
    "hostNetwork hostPID hostIPC shareProcessNamespace securityContext imagePullSecrets "
    "hostname subdomain affinity schedulerName tolerations hostAliases priorityClassName "
    "priority dnsConfig readinessGates runtimeClassName enableServiceLinks preemptionPolicy "
    "overhead topologySpreadConstraints setHostnameAsFQDN os hostUsers schedulingGates "
    "resourceClaims resources",
    containers=[CONTAINER],
    initContainers=[CONTAINER],
    ephemeralContainers=[CONTAINER],
)
TEMPLATE = {"metadata": OBJECT_META, "spec": POD_SPEC}
SELECTOR = _fields("matchLabels matchExpressions")

SPECS: dict[str, Schema] = {
    "Deployment": _fields(
        "replicas minReadySeconds revisionHistoryLimit paused progressDeadlineSeconds",
        selector=SELECTOR,
        template=TEMPLATE,
        strategy=_fields("type", rollingUpdate=_fields("maxUnavailable maxSurge")),
    ),
    "ReplicaSet": _fields("replicas minReadySeconds", selector=SELECTOR, template=TEMPLATE),
    "StatefulSet": _fields(
        "replicas serviceName volumeClaimTemplates podManagementPolicy revisionHistoryLimit "
        "minReadySeconds persistentVolumeClaimRetentionPolicy ordinals",
        selector=SELECTOR,
        template=TEMPLATE,
        updateStrategy=_fields("type", rollingUpdate=_fields("partition maxUnavailable")),
    ),
    "DaemonSet": _fields(
        "minReadySeconds revisionHistoryLimit",
        selector=SELECTOR,
        template=TEMPLATE,
        updateStrategy=_fields("type", rollingUpdate=_fields("maxUnavailable maxSurge")),
    ),
    "Job": _fields(
        "parallelism completions activeDeadlineSeconds podFailurePolicy successPolicy "
        "backoffLimit backoffLimitPerIndex maxFailedIndexes manualSelector "
        "ttlSecondsAfterFinished completionMode suspend podReplacementPolicy managedBy",
        selector=SELECTOR,
        template=TEMPLATE,
    ),
    "CronJob": _fields(
        "schedule timeZone startingDeadlineSeconds concurrencyPolicy suspend "
        "successfulJobsHistoryLimit failedJobsHistoryLimit",
        jobTemplate={"metadata": OBJECT_META, "spec": None},
    ),
    "Pod": POD_SPEC,
    "Service": _fields(
        "selector clusterIP clusterIPs type externalIPs sessionAffinity loadBalancerIP "
        "loadBalancerSourceRanges externalName externalTrafficPolicy healthCheckNodePort "
        "publishNotReadyAddresses sessionAffinityConfig ipFamilies ipFamilyPolicy "
        "allocateLoadBalancerNodePorts loadBalancerClass internalTrafficPolicy "
        "trafficDistribution",
        ports=[_fields("name protocol appProtocol port targetPort nodePort")],
    ),
    "PersistentVolumeClaim": _fields(
        "accessModes selector resources volumeName storageClassName volumeMode dataSource "
        "dataSourceRef volumeAttributesClassName"
    ),
    "Namespace": _fields("finalizers"),
    "Node": _fields("podCIDR podCIDRs providerID unschedulable taints configSource externalID"),
    "Lease": _fields(
        "holderIdentity leaseDurationSeconds acquireTime renewTime leaseTransitions "
        "strategy preferredHolder"
    ),
    "Ingress": _fields("ingressClassName defaultBackend tls rules"),
    "NetworkPolicy": _fields("podSelector ingress egress policyTypes"),
    "PodDisruptionBudget": _fields(
        "minAvailable maxUnavailable unhealthyPodEvictionPolicy", selector=SELECTOR
    ),
    "HorizontalPodAutoscaler": _fields("scaleTargetRef minReplicas maxReplicas metrics behavior"),
    "ResourceQuota": _fields("hard scopes scopeSelector"),
    "PersistentVolume": None,
    "CustomResourceDefinition": _fields(
        "group names scope versions conversion preserveUnknownFields"
    ),
}

# Top-level fields beyond apiVersion/kind/metadata.
TOP_LEVEL: dict[str, tuple[str, ...]] = {
    "ConfigMap": ("data", "binaryData", "immutable"),
    "Secret": ("data", "stringData", "type", "immutable"),
    "ServiceAccount": ("secrets", "imagePullSecrets", "automountServiceAccountToken"),
    "Event": tuple(
        _words(
            "involvedObject reason message source firstTimestamp lastTimestamp count type "
            "eventTime series action related reportingComponent reportingInstance"
        )
    ),
    "Endpoints": ("subsets",),
    "EndpointSlice": ("addressType", "endpoints", "ports"),
    "ControllerRevision": ("data", "revision"),
    "StorageClass": tuple(
        _words(
            "provisioner parameters reclaimPolicy mountOptions allowVolumeExpansion "
            "volumeBindingMode allowedTopologies"
        )
    ),
    "Role": ("rules",),
    "ClusterRole": ("rules", "aggregationRule"),
    "RoleBinding": ("subjects", "roleRef"),
    "ClusterRoleBinding": ("subjects", "roleRef"),
    "PriorityClass": ("value", "globalDefault", "description", "preemptionPolicy"),
}


def schema_for(rt: ResourceType) -> Schema:
    """The known-field tree for a whole object of this kind (None: anything goes)."""
    if rt.custom:
        return _crd_schema(rt.schema)
    top: dict[str, Schema] = {"apiVersion": None, "kind": None, "metadata": OBJECT_META}
    if rt.kind == "ReplicationController":  # no controller runs them; only kept
        top["spec"] = top["status"] = None
    if rt.kind in SPECS:
        top["spec"] = SPECS[rt.kind]
        top["status"] = None
    for name in TOP_LEVEL.get(rt.kind, ()):
        top[name] = None
    return top


def _crd_schema(openapi: Any) -> Schema:
    """A structural schema's properties as a known-field tree."""
    if not isinstance(openapi, dict) or openapi.get("x-kubernetes-preserve-unknown-fields"):
        return None
    if openapi.get("type") == "array":
        item = _crd_schema(openapi.get("items"))
        return None if item is None else [item]
    if "additionalProperties" in openapi:
        value = _crd_schema(openapi["additionalProperties"])
        return None if value is None else {"*": value}
    props = openapi.get("properties")
    if not isinstance(props, dict):
        return None if openapi.get("type") != "object" else {}
    out = {name: _crd_schema(sub) for name, sub in props.items()}
    out.setdefault("apiVersion", None)
    out.setdefault("kind", None)
    out["metadata"] = OBJECT_META
    return out


def unknown_fields(obj: Any, schema: Schema, path: str = "") -> list[str]:
    """Dotted paths (``spec.template.spec.containers[0].imagee``) not in the schema."""
    found: list[str] = []
    if schema is None:
        return found
    if isinstance(schema, list):
        if isinstance(obj, list):
            for index, item in enumerate(obj):
                found += unknown_fields(item, schema[0], f"{path}[{index}]")
        return found
    if not isinstance(obj, dict):
        return found
    if "*" in schema and len(schema) == 1:
        for key, value in obj.items():
            found += unknown_fields(value, schema["*"], f"{path}.{key}" if path else key)
        return found
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            found.append(where)
        else:
            found += unknown_fields(value, schema[key], where)
    return found


def drop_fields(obj: Any, paths: list[str]) -> None:
    """Remove the given dotted paths (as ``unknown_fields`` spells them) from ``obj``."""
    for path in paths:
        node = obj
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node.get(part)
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(parts[-1], None)


# -- defaulting -----------------------------------------------------------------


def default_pod_spec(spec: dict[str, Any], restart_policy: str | None = "Always") -> None:
    if restart_policy:
        spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            image = str(container.get("image", ""))
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            latest = not tagged or image.endswith(":latest")
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _default_template(spec: dict[str, Any], restart_policy: str | None = "Always") -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"], restart_policy)


def _drop_empty_maps(meta: Any) -> None:
    """Empty label/annotation maps are omitted when the server serialises (omitempty)."""
    if isinstance(meta, dict):
        for key in ("labels", "annotations"):
            if meta.get(key) == {}:
                del meta[key]


def apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """The defaults the real server fills in for the fields the controllers read."""
    spec = obj.get("spec")
    kind = rt.kind
    _drop_empty_maps(obj.get("metadata"))
    if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        _drop_empty_maps(spec["template"].get("metadata"))
    if kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]
        return
    if kind == "Secret":
        obj.setdefault("type", "Opaque")
        # stringData is write-only: the server folds it into data, base64-encoded
        plain = obj.pop("stringData", None)
        if isinstance(plain, dict):
            data = obj.setdefault("data", {})
            for key, value in plain.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    if not isinstance(spec, dict):
        return
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec)
    elif kind == "ReplicaSet":
        spec.setdefault("replicas", 1)
        _default_template(spec)
    elif kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy",
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        )
        _default_template(spec)
    elif kind == "DaemonSet":
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        _default_template(spec)
    elif kind == "Job":
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        _default_template(spec, None)
    elif kind == "CronJob":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    elif kind == "Pod":
        default_pod_spec(spec)
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
    elif kind == "PersistentVolumeClaim":
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("storageClassName", "standard-rwo")  # the DefaultStorageClass admission


# -- validation -----------------------------------------------------------------

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME_KINDS = frozenset({"Namespace", "Service", "Deployment", "StatefulSet", "DaemonSet"})

Cause = tuple[str, str, str]  # field, reason, message


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """The validation errors the real server would give for the fields we model."""
    causes: list[Cause] = []
    name = obj.get("metadata", {}).get("name", "")
    pattern = _LABEL if rt.kind in LABEL_NAME_KINDS else _SUBDOMAIN
    if rt.kind not in ("Event",) and (not pattern.match(name) or len(name) > 253):
        what = "RFC 1123 label" if pattern is _LABEL else "RFC 1123 subdomain"
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    spec = obj.get("spec")
    if rt.custom:
        from steps.sandbox.kube.structural import validate_custom

        causes += validate_custom(rt.schema, obj)
    if rt.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        causes += _validate_workload(rt, spec if isinstance(spec, dict) else {}, old)
    elif rt.kind == "Pod":
        causes += _validate_pod_spec(spec if isinstance(spec, dict) else {}, "spec")
    elif (
        rt.kind == "ConfigMap"
        and old is not None
        and old.get("immutable")
        and (obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"))
    ):
        causes.append(
            (
                "data",
                "FieldValueForbidden",
                "Forbidden: field is immutable when `immutable` is set",
            )
        )
    return causes


def _validate_workload(
    rt: ResourceType, spec: dict[str, Any], old: dict[str, Any] | None
) -> list[Cause]:
    causes: list[Cause] = []
    from steps.sandbox.kube.selectors import selector_matches

    selector = spec.get("selector")
    template: dict[str, Any] = spec["template"] if isinstance(spec.get("template"), dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if rt.kind != "Job":
        if not selector:
            causes.append(("spec.selector", "FieldValueRequired", "Required value"))
        elif not selector_matches(selector, labels):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    "FieldValueInvalid",
                    f"Invalid value: {labels!r}: `selector` does not match template `labels`",
                )
            )
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        causes.append(
            (
                "spec.replicas",
                "FieldValueInvalid",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        )
    pod_spec: dict[str, Any] = template["spec"] if isinstance(template.get("spec"), dict) else {}
    causes += _validate_pod_spec(pod_spec, "spec.template.spec")
    restart = pod_spec.get("restartPolicy")
    if rt.kind == "Job" and restart not in ("Never", "OnFailure"):
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
            )
        )
    elif rt.kind != "Job" and restart not in (None, "Always"):
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{restart}": supported values: "Always"',
            )
        )
    if old is not None and rt.kind != "Job" and old.get("spec", {}).get("selector") != selector:
        causes.append(
            (
                "spec.selector",
                "FieldValueInvalid",
                f"Invalid value: {selector!r}: field is immutable",
            )
        )
    return causes


def _validate_pod_spec(spec: dict[str, Any], where: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        return [(f"{where}.containers", "FieldValueRequired", "Required value")]
    seen: set[str] = set()
    for index, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        at = f"{where}.containers[{index}]"
        name = container.get("name")
        if not name:
            causes.append((f"{at}.name", "FieldValueRequired", "Required value"))
        elif name in seen:
            causes.append((f"{at}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        else:
            seen.add(str(name))
        if not container.get("image"):
            causes.append((f"{at}.image", "FieldValueRequired", "Required value"))
    return causes


# -- types of the scalar fields manifests most often get wrong -------------------------

INT_FIELDS = frozenset(
    _words(
        "replicas minReadySeconds revisionHistoryLimit progressDeadlineSeconds containerPort "
        "hostPort backoffLimit completions parallelism partition terminationGracePeriodSeconds "
        "activeDeadlineSeconds initialDelaySeconds periodSeconds timeoutSeconds successThreshold "
        "failureThreshold leaseDurationSeconds leaseTransitions ttlSecondsAfterFinished "
        "startingDeadlineSeconds successfulJobsHistoryLimit failedJobsHistoryLimit"
    )
)
STRING_FIELDS = frozenset(
    _words("image imagePullPolicy restartPolicy serviceAccountName schedule dnsPolicy")
)
BOOL_FIELDS = frozenset(_words("paused suspend immutable hostNetwork readOnly"))
STRING_MAPS = frozenset(_words("labels annotations nodeSelector matchLabels data stringData"))


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def type_errors(obj: Any, path: str = "") -> list[tuple[str, str, str]]:
    """(path, expected, got) for scalar fields of the wrong JSON type."""
    found: list[tuple[str, str, str]] = []
    if isinstance(obj, list):
        for index, item in enumerate(obj):
            found += type_errors(item, f"{path}[{index}]")
        return found
    if not isinstance(obj, dict):
        return found
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        got = _kind_of(value)
        if value is None:
            continue
        if key in INT_FIELDS and (got != "number" or isinstance(value, float)):
            found.append((where, "int32", got))
        elif key in STRING_FIELDS and got != "string":
            found.append((where, "string", got))
        elif key in BOOL_FIELDS and got != "bool":
            found.append((where, "bool", got))
        elif key in STRING_MAPS and isinstance(value, dict):
            for name, item in value.items():
                if not isinstance(item, str):
                    found.append((f"{where}.{name}", "string", _kind_of(item)))
        elif isinstance(value, dict | list):
            found += type_errors(value, where)
    return found


# -- what fails decoding before validation: base64, quantities ----------------------

QUANTITY_PATTERN = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(
    r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_QUANTITY_MAPS = frozenset(_words("limits requests hard capacity allocatable"))
_B64 = re.compile(r"[A-Za-z0-9+/]")


def _base64_error(text: str) -> str | None:
    """Go's encoding/base64 complaint (StdEncoding) for a Secret's data value, or None."""
    at, end = 0, len(text)

    def skip_newlines(index: int) -> int:
        while index < end and text[index] in "\r\n":
            index += 1
        return index

    while True:
        quantum = 0
        while quantum < 4:
            if at == end:
                return None if quantum == 0 else f"illegal base64 data at input byte {at - quantum}"
            char = text[at]
            at += 1
            if char in "\r\n":
                continue
            if char == "=":
                if quantum < 2:
                    return f"illegal base64 data at input byte {at - 1}"
                if quantum == 2:  # a second "=" must follow
                    at = skip_newlines(at)
                    if at == end:
                        return f"illegal base64 data at input byte {end}"
                    if text[at] != "=":
                        return f"illegal base64 data at input byte {at - 1}"
                    at += 1
                at = skip_newlines(at)
                return None if at == end else f"illegal base64 data at input byte {at}"
            if not _B64.match(char):
                return f"illegal base64 data at input byte {at - 1}"
            quantum += 1


def _bad_quantity(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return False
    return not isinstance(value, str) or not _QUANTITY.match(value.strip())


def _quantity_errors(value: Any) -> bool:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _QUANTITY_MAPS and isinstance(item, dict):
                if any(_bad_quantity(q) for q in item.values()):
                    return True
            elif _quantity_errors(item):
                return True
    elif isinstance(value, list):
        return any(_quantity_errors(v) for v in value)
    return False


def decode_error(rt: ResourceType, obj: dict[str, Any]) -> str | None:
    """Why the real server could not even decode this object (400), or None."""
    if rt.custom:
        return None
    if rt.kind == "Secret" and isinstance(obj.get("data"), dict):
        for value in obj["data"].values():
            problem = _base64_error(value) if isinstance(value, str) else None
            if problem:
                return problem
    if _quantity_errors(obj.get("spec")):
        return f"quantities must match the regular expression '{QUANTITY_PATTERN}'"
    return None
