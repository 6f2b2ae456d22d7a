"""Server-side printing: the ``Table`` kubectl asks for with ``Accept: ...;as=Table``.

One function per kind turns an object into its row, with the columns the real
server prints (kubernetes ``pkg/printers/internalversion/printers.go``);
custom resources use their CRD's ``additionalPrinterColumns``. Pure: the
caller passes ``now``.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Callable
from typing import Any

from steps.sandbox.kube.resources import ResourceType

__all__ = ["Column", "human_duration", "table", "wants_table"]

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority (1: only with -o wide)
Row = list[Any]


def wants_table(accept: str) -> str | None:
    """The Table apiVersion an Accept header asks for (``meta.k8s.io/v1``), or None."""
    for part in accept.split(","):
        params = dict(p.strip().partition("=")[::2] for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            version = params.get("v", "v1")
            if version in ("v1", "v1beta1"):
                return f"meta.k8s.io/{version}"
    return None


def human_duration(seconds: float) -> str:
    """Ages as ``kubectl get`` prints them: 45s, 5m3s, 3h20m, 4d2h, 1y30d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return float(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def _age(stamp: str | None, now: float) -> str:
    at = _epoch(stamp)
    return "<unknown>" if at is None else human_duration(now - at)


def _created(obj: Obj, now: float) -> str:
    return _age(obj["metadata"].get("creationTimestamp"), now)


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _selector(selector: Any) -> str:
    if not isinstance(selector, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        op = expr.get("operator", "")
        key = expr.get("key", "")
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _containers(template: Any) -> tuple[str, str]:
    spec = (template or {}).get("spec") or {}
    containers = spec.get("containers") or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


# -- one row function per kind ---------------------------------------------------


def _deployment(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(spec.get("template"))
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _created(obj, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _replicaset(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(spec.get("template"))
    return [
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _created(obj, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _statefulset(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(spec.get("template"))
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        _created(obj, now),
        names,
        images,
    ]


def _daemonset(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(spec.get("template"))
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>",
        _created(obj, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _job_status(obj: Obj) -> str:
    conditions = {c.get("type"): c.get("status") for c in _status(obj).get("conditions") or []}
    if conditions.get("Complete") == "True":
        return "Complete"
    if conditions.get("Failed") == "True":
        return "Failed"
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if conditions.get("FailureTarget") == "True":
        return "FailureTarget"
    if conditions.get("SuccessCriteriaMet") == "True":
        return "SuccessCriteriaMet"
    if conditions.get("Suspended") == "True":
        return "Suspended"
    return "Running"


def _job(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers(spec.get("template"))
    completions = spec.get("completions")
    succeeded = status.get("succeeded", 0)
    if completions is not None:
        done = f"{succeeded}/{completions}"
    else:
        parallelism = spec.get("parallelism", 1)
        done = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start, end = _epoch(status.get("startTime")), _epoch(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    return [
        _job_status(obj),
        done,
        duration,
        _created(obj, now),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _cronjob(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    names, images = _containers(template)
    last = status.get("lastScheduleTime")
    return [
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or []),
        _age(last, now) if last else "<none>",
        _created(obj, now),
        names,
        images,
        _selector((spec.get("jobTemplate") or {}).get("spec", {}).get("selector")),
    ]


def _pod_status(pod: Obj) -> tuple[str, int, str, str]:
    """(STATUS, restarts, last restart age source, READY) as kubectl prints a pod."""
    spec, status = _spec(pod), _status(pod)
    reason = status.get("reason") or status.get("phase") or "Pending"
    restarts, last_restart = 0, ""
    statuses = status.get("containerStatuses") or []
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    init_count = len(spec.get("initContainers") or [])
    for index, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        restarts += cs.get("restartCount", 0)
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"Signal:{terminated.get('signal', 0)}")
        elif waiting and waiting.get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{init_count}"
        initializing = True
        break
    ready = 0
    if not initializing:
        restarts = 0
        has_running = False
        for cs in reversed(statuses):
            state = cs.get("state") or {}
            restarts += cs.get("restartCount", 0)
            last_term = (cs.get("lastState") or {}).get("terminated") or {}
            if last_term.get("finishedAt") and last_term["finishedAt"] > last_restart:
                last_restart = last_term["finishedAt"]
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                signal = terminated.get("signal")
                reason = (
                    f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
                )
            elif "running" in state and cs.get("ready"):
                has_running = True
                ready += 1
            elif "running" in state:
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
            for cond in status.get("conditions") or []:
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    break
            else:
                reason = "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    total = len(spec.get("containers") or [])
    return reason, restarts, last_restart, f"{ready}/{total}"


def _pod(obj: Obj, now: float) -> Row:
    reason, restarts, last_restart, ready = _pod_status(obj)
    shown = f"{restarts} ({_age(last_restart, now)} ago)" if last_restart and restarts else restarts
    status = _status(obj)
    gates = _spec(obj).get("readinessGates") or []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_text = (
        f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}/{len(gates)}"
        if gates
        else "<none>"
    )
    return [
        ready,
        reason,
        shown,
        _created(obj, now),
        status.get("podIP") or "<none>",
        _spec(obj).get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _ports(ports: list[Obj]) -> str:
    out = []
    for port in ports:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        out.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _service(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    kind = spec.get("type", "ClusterIP")
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    external = [i.get("ip") or i.get("hostname") or "" for i in ingress]
    external += spec.get("externalIPs") or []
    if kind == "ExternalName":
        external_text = spec.get("externalName") or "<none>"
    elif kind == "LoadBalancer":
        external_text = ",".join(external) or "<pending>"
    else:
        external_text = ",".join(external) or "<none>"
    selector = spec.get("selector") or {}
    return [
        kind,
        spec.get("clusterIP") or "<none>",
        external_text,
        _ports(spec.get("ports") or []),
        _created(obj, now),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
    ]


def _configmap(obj: Obj, now: float) -> Row:
    return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _created(obj, now)]


def _secret(obj: Obj, now: float) -> Row:
    return [obj.get("type", "Opaque"), len(obj.get("data") or {}), _created(obj, now)]


def _namespace(obj: Obj, now: float) -> Row:
    return [_status(obj).get("phase", "Active"), _created(obj, now)]


def _node(obj: Obj, now: float) -> Row:
    status = _status(obj)
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if _spec(obj).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        state,
        ",".join(roles) or "<none>",
        _created(obj, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>",
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _event(obj: Obj, now: float) -> Row:
    involved = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    source = obj.get("source") or {}
    return [
        _age(last, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        ", ".join(v for v in (source.get("component"), source.get("host")) if v),
        obj.get("message", ""),
        _age(first, now),
        obj.get("count", 1),
        obj["metadata"].get("name", ""),
    ]


def _controllerrevision(obj: Obj, now: float) -> Row:
    owner = next(
        (r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None
    )
    controller = "<none>"
    if owner:
        group = owner.get("apiVersion", "").rpartition("/")[0]
        kind = owner.get("kind", "").lower() + (f".{group}" if group else "")
        controller = f"{kind}/{owner.get('name', '')}"
    return [controller, obj.get("revision", 0), _created(obj, now)]


def _pvc(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    phase = status.get("phase", "Pending")
    bound = phase == "Bound"
    return [
        "Terminating" if obj["metadata"].get("deletionTimestamp") else phase,
        spec.get("volumeName", "") if bound else "",
        (status.get("capacity") or {}).get("storage", "") if bound else "",
        _access_modes(status.get("accessModes") or []) if bound else "",
        spec.get("storageClassName") or "<unset>",
        spec.get("volumeAttributesClassName") or "<unset>",
        _created(obj, now),
        "Filesystem" if not spec.get("volumeMode") else spec["volumeMode"],
    ]


def _access_modes(modes: list[str]) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(short.get(m, m) for m in modes)


def _pv(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    claim = spec.get("claimRef") or {}
    return [
        (spec.get("capacity") or {}).get("storage", ""),
        _access_modes(spec.get("accessModes") or []),
        spec.get("persistentVolumeReclaimPolicy", "Delete"),
        status.get("phase", "Available"),
        f"{claim.get('namespace')}/{claim.get('name')}" if claim else "",
        spec.get("storageClassName", ""),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        _created(obj, now),
        spec.get("volumeMode", "Filesystem"),
    ]


def _storageclass(obj: Obj, now: float) -> Row:
    return [
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy", "Delete"),
        obj.get("volumeBindingMode", "Immediate"),
        "true" if obj.get("allowVolumeExpansion") else "false",
        _created(obj, now),
    ]


def _endpoints(obj: Obj, now: float) -> Row:
    found = []
    for subset in obj.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for address in subset.get("addresses") or []:
            for port in ports:
                ip = address.get("ip", "")
                found.append(f"{ip}:{port['port']}" if port.get("port") else ip)
    shown = ",".join(found[:3]) + (f" + {len(found) - 3} more..." if len(found) > 3 else "")
    return [shown or "<none>", _created(obj, now)]


def _endpointslice(obj: Obj, now: float) -> Row:
    ports = ",".join(str(p.get("port")) for p in obj.get("ports") or []) or "<unset>"
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addresses[:3]) + (
        f" + {len(addresses) - 3} more..." if len(addresses) > 3 else ""
    )
    return [obj.get("addressType", ""), ports, shown or "<unset>", _created(obj, now)]


def _serviceaccount(obj: Obj, now: float) -> Row:
    return [len(obj.get("secrets") or []), _created(obj, now)]


def _lease(obj: Obj, now: float) -> Row:
    return [_spec(obj).get("holderIdentity") or "", _created(obj, now)]


def _created_at(obj: Obj, now: float) -> Row:
    return [obj["metadata"].get("creationTimestamp", "")]


def _resourcequota(obj: Obj, now: float) -> Row:
    """``pods: 0/2, cpu: 0/1`` requests apart from ``limits.*`` (printResourceQuota)."""
    hard, used = _spec(obj).get("hard") or {}, _status(obj).get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        entry = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limits if name.startswith("limits.") else requests).append(entry)
    return [_created(obj, now), ", ".join(requests), ", ".join(limits)]


def _priorityclass(obj: Obj, now: float) -> Row:
    policy = obj.get("preemptionPolicy", "PreemptLowerPriority")
    return [obj.get("value", 0), bool(obj.get("globalDefault")), _created(obj, now), policy]


def _hpa(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    ref = spec.get("scaleTargetRef") or {}
    return [
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        "<none>" if not spec.get("metrics") else f"<unknown>/{len(spec['metrics'])} metrics",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _created(obj, now),
    ]


def _pdb(obj: Obj, now: float) -> Row:
    spec = _spec(obj)
    return [
        spec.get("minAvailable", "N/A"),
        spec.get("maxUnavailable", "N/A"),
        _status(obj).get("disruptionsAllowed", 0),
        _created(obj, now),
    ]


def _ingress(obj: Obj, now: float) -> Row:
    spec, status = _spec(obj), _status(obj)
    hosts = [r.get("host") for r in spec.get("rules") or [] if r.get("host")]
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    return [
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress),
        "80, 443" if spec.get("tls") else "80",
        _created(obj, now),
    ]


def _rolebinding(obj: Obj, now: float) -> Row:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def named(kind: str) -> str:
        return ",".join(s.get("name", "") for s in subjects if s.get("kind") == kind)

    return [
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _created(obj, now),
        named("User"),
        named("Group"),
        ",".join(
            f"{s.get('namespace', '')}/{s.get('name', '')}"
            for s in subjects
            if s.get("kind") == "ServiceAccount"
        ),
    ]


def _default(obj: Obj, now: float) -> Row:
    return [_created(obj, now)]


def _cols(spec: str) -> list[Column]:
    """Columns from ``"Ready, Up-to-date:integer, Age, Images*"``: ``*`` only with -o wide."""
    out: list[Column] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        wide = item.endswith("*")
        name, _, kind = item.rstrip("*").partition(":")
        out.append((name, kind or "string", 1 if wide else 0))
    return out


WORKLOAD_WIDE = "Containers*, Images*, Selector*"
PRINTERS: dict[str, tuple[list[Column], Callable[[Obj, float], Row]]] = {
    "Deployment": (
        _cols(f"Ready, Up-to-date:integer, Available:integer, Age, {WORKLOAD_WIDE}"),
        _deployment,
    ),
    "ReplicaSet": (
        _cols(f"Desired:integer, Current:integer, Ready:integer, Age, {WORKLOAD_WIDE}"),
        _replicaset,
    ),
    "StatefulSet": (_cols("Ready, Age, Containers*, Images*"), _statefulset),
    "DaemonSet": (
        _cols(
            f"Desired:integer, Current:integer, Ready:integer, Up-to-date:integer, "
            f"Available:integer, Node Selector, Age, {WORKLOAD_WIDE}"
        ),
        _daemonset,
    ),
    "Job": (_cols(f"Status, Completions, Duration, Age, {WORKLOAD_WIDE}"), _job),
    "CronJob": (
        _cols(
            f"Schedule, Timezone, Suspend:boolean, "
            f"Active:integer, Last Schedule, Age, {WORKLOAD_WIDE}"
        ),
        _cronjob,
    ),
    "Pod": (
        _cols("Ready, Status, Restarts, Age, IP*, Node*, Nominated Node*, Readiness Gates*"),
        _pod,
    ),
    "Service": (_cols("Type, Cluster-IP, External-IP, Port(s), Age, Selector*"), _service),
    "ConfigMap": (_cols("Data:integer, Age"), _configmap),
    "Secret": (_cols("Type, Data:integer, Age"), _secret),
    "Namespace": (_cols("Status, Age"), _namespace),
    "Node": (
        _cols(
            "Status, Roles, Age, Version, "
            "Internal-IP*, External-IP*, OS-Image*, Kernel-Version*, Container-Runtime*"
        ),
        _node,
    ),
    "Event": (
        _cols(
            "Last Seen, Type, Reason, Object, Subobject*, "
            "Source*, Message, First Seen*, Count*, Name*"
        ),
        _event,
    ),
    "ControllerRevision": (_cols("Controller, Revision:integer, Age"), _controllerrevision),
    "PersistentVolumeClaim": (
        _cols(
            "Status, Volume, Capacity, Access Modes, "
            "StorageClass, VolumeAttributesClass, Age, VolumeMode*"
        ),
        _pvc,
    ),
    "PersistentVolume": (
        _cols(
            "Capacity, Access Modes, Reclaim Policy, Status, Claim, "
            "StorageClass, VolumeAttributesClass, Reason, Age, VolumeMode*"
        ),
        _pv,
    ),
    "StorageClass": (
        _cols("Provisioner, ReclaimPolicy, VolumeBindingMode, AllowVolumeExpansion, Age"),
        _storageclass,
    ),
    "Endpoints": (_cols("Endpoints, Age"), _endpoints),
    "EndpointSlice": (_cols("AddressType, Ports, Endpoints, Age"), _endpointslice),
    "ServiceAccount": (_cols("Secrets, Age"), _serviceaccount),
    "Lease": (_cols("Holder, Age"), _lease),
    "CustomResourceDefinition": (_cols("Created At:date"), _created_at),
    "Role": (_cols("Created At:date"), _created_at),
    "ClusterRole": (_cols("Created At:date"), _created_at),
    "RoleBinding": (_cols("Role, Age, Users*, Groups*, ServiceAccounts*"), _rolebinding),
    "ClusterRoleBinding": (_cols("Role, Age, Users*, Groups*, ServiceAccounts*"), _rolebinding),
    "HorizontalPodAutoscaler": (
        _cols("Reference, Targets, MinPods, MaxPods:integer, Replicas:integer, Age"),
        _hpa,
    ),
    "PodDisruptionBudget": (
        _cols("Min Available, Max Unavailable, Allowed Disruptions:integer, Age"),
        _pdb,
    ),
    "Ingress": (_cols("Class, Hosts, Address, Ports, Age"), _ingress),
    "ResourceQuota": (_cols("Age, Request, Limit"), _resourcequota),
    "PriorityClass": (
        _cols("Value:integer, Global-Default:boolean, Age, PreemptionPolicy"),
        _priorityclass,
    ),
}


# -- custom resources: additionalPrinterColumns ----------------------------------

_JSONPATH_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\['([^']+)'\]|\[\"([^\"]+)\"\]")


def _json_path(obj: Any, path: str) -> Any:
    """A CRD printer column's simple JSONPath (``.spec.replicas``, ``.status.conditions[0]``)."""
    node = obj
    for match in _JSONPATH_PART.finditer(path.strip().strip("{}")):
        field = match.group(1) or match.group(3) or match.group(4)
        if field is not None:
            node = node.get(field) if isinstance(node, dict) else None
        else:
            index = int(match.group(2))
            node = node[index] if isinstance(node, list) and index < len(node) else None
        if node is None:
            return None
    return node


def _custom_columns(crd_columns: list[Obj]) -> tuple[list[Column], list[tuple[str, str]]]:
    columns: list[Column] = []
    paths: list[tuple[str, str]] = []
    for col in crd_columns:
        columns.append((col.get("name", ""), col.get("type", "string"), col.get("priority", 0)))
        paths.append((col.get("jsonPath", ""), col.get("type", "string")))
    return columns, paths


def _custom_cell(obj: Obj, path: str, kind: str, now: float) -> Any:
    """One cell, typed as the CRD table convertor types it (a mismatch shows as empty)."""
    value = _json_path(obj, path)
    if value is None:
        return None
    if kind == "string":
        return json.dumps(value) if isinstance(value, dict | list) else _go_print(value)
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        return _age(value, now) if _epoch(value) is not None else "<invalid>"
    return None


def _go_print(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the table --------------------------------------------------------------------


# Kinds whose table has no leading Name column (events name their object instead).
NAMELESS = frozenset({"Event"})


def _definitions(columns: list[Column], named: bool = True) -> list[Obj]:
    out = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        }
    ]
    if not named:
        out = []
    for name, kind, priority in columns:
        out.append(
            {"name": name, "type": kind, "format": "", "description": "", "priority": priority}
        )
    return out


def _name(rt: ResourceType, obj: Obj) -> str:
    """The Name cell; the default StorageClass says so in it (printStorageClass)."""
    name = str(obj["metadata"].get("name", ""))
    annotations = obj["metadata"].get("annotations") or {}
    if rt.kind == "StorageClass" and (
        annotations.get("storageclass.kubernetes.io/is-default-class") == "true"
    ):
        name += " (default)"
    return name


def _partial(obj: Obj, api_version: str, kind: str) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def table(
    rt: ResourceType,
    items: list[Obj],
    now: float,
    *,
    api_version: str = "meta.k8s.io/v1",
    include_object: str = "PartialObjectMetadata",
    list_meta: Obj | None = None,
    printer_columns: list[Obj] | None = None,
) -> Obj:
    """The Table for these objects, as ``kubectl get`` asks for it."""
    row_of: Callable[[Obj, float], Row]
    if rt.custom:
        columns, paths = _custom_columns(
            printer_columns
            if printer_columns
            else [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        )

        def custom_row(obj: Obj, now: float) -> Row:
            return [_custom_cell(obj, path, kind, now) for path, kind in paths]

        row_of = custom_row
    else:
        columns, row_of = PRINTERS.get(rt.kind, (_cols("Age"), _default))
    rows = []
    for obj in items:
        name_cell = [] if rt.kind in NAMELESS else [_name(rt, obj)]
        row: Obj = {"cells": [*name_cell, *row_of(obj, now)]}
        if include_object == "Object":
            full = dict(obj)
            full.setdefault("apiVersion", rt.api_version)
            full.setdefault("kind", rt.kind)
            row["object"] = full
        elif include_object != "None":
            row["object"] = _partial(obj, rt.api_version, rt.kind)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": list_meta or {},
        "columnDefinitions": _definitions(columns, rt.kind not in NAMELESS),
        "rows": rows,
    }
