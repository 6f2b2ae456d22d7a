"""When is a rollout done, and when has it failed? Pure rules over plain dicts.

kstatus style: one function per kind, each a run of guard clauses over plain
fields returning a ``Verdict`` (a status, a reason constant users can grep,
and a human message); ``RULES`` maps group/kind to its function. Workloads
follow ``kubectl rollout status`` exactly (reading the live ``spec.replicas``,
so an HPA's choice counts); other kinds follow kstatus.

The second half says which pods belong to a workload's newest revision: only
they can fail a rollout (``fail_fast`` judges them). Nothing here does I/O or
reads a clock: the watch loop feeds objects in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Obj = Mapping[str, Any]


class Status(StrEnum):
    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"


# Reasons (grep-able; they appear in progress lines and in the result file).
GENERATION_LAG = "ObservedGenerationLag"
NOT_APPLIED_YET = "AppliedGenerationNotObserved"
PAUSED = "DeploymentPaused"
PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
LESS_UPDATED = "LessUpdated"
OLD_PENDING = "OldReplicasPending"
LESS_AVAILABLE = "LessAvailable"
LESS_READY = "LessReady"
PARTITION_PENDING = "PartitionRollingOut"
PARTITION_DONE = "PartitionRolledOut"
REVISION_PENDING = "UpdateRevisionPending"
ON_DELETE = "OnDeleteStrategy"
ROLLED_OUT = "RolledOut"
JOB_COMPLETE = "JobComplete"
JOB_FAILED = "JobFailed"
JOB_RUNNING = "JobRunning"
JOB_SUSPENDED = "JobSuspended"
PVC_BOUND = "Bound"
PVC_PENDING = "NotBound"
PVC_LOST = "ClaimLost"
CRD_ESTABLISHED = "Established"
CRD_NOT_ESTABLISHED = "NotEstablished"
CRD_NAMES_REJECTED = "NamesNotAccepted"
POD_READY = "PodReady"
POD_NOT_READY = "PodNotReady"
POD_SUCCEEDED = "PodSucceeded"
POD_FAILED = "PodFailed"
LB_PENDING = "LoadBalancerPending"
LB_READY = "LoadBalancerReady"
NAMESPACE_ACTIVE = "NamespaceActive"
NAMESPACE_TERMINATING = "NamespaceTerminating"
STALLED = "Stalled"
RECONCILING = "Reconciling"
NOT_READY = "NotReady"
READY = "Ready"
NO_STATUS = "NoStatus"

ROLLING_UPDATE = "RollingUpdate"
ON_DELETE_TYPE = "OnDelete"


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str
    message: str

    @property
    def done(self) -> bool:
        return self.status is Status.CURRENT


def current(reason: str, message: str) -> Verdict:
    return Verdict(Status.CURRENT, reason, message)


def in_progress(reason: str, message: str) -> Verdict:
    return Verdict(Status.IN_PROGRESS, reason, message)


def failed(reason: str, message: str) -> Verdict:
    return Verdict(Status.FAILED, reason, message)


# --------------------------------------------------------------------------- field access


def get_path(obj: Obj, *path: str, default: Any = None) -> Any:
    """``obj[path[0]][path[1]]...`` or ``default`` when anything is missing."""
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def int_field(obj: Obj, *path: str, default: int = 0) -> int:
    value = get_path(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def condition(obj: Obj, type_: str) -> Mapping[str, Any] | None:
    for cond in get_path(obj, "status", "conditions", default=[]):
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def condition_is(obj: Obj, type_: str, status: str) -> bool:
    cond = condition(obj, type_)
    return cond is not None and cond.get("status") == status


def group_kind(obj: Obj) -> tuple[str, str]:
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group, str(obj.get("kind", ""))


# --------------------------------------------------------------------------- the rules


def deployment_status(obj: Obj) -> Verdict:
    """``kubectl rollout status deployment``, plus a paused Deployment failing."""
    spec_replicas = int_field(obj, "spec", "replicas", default=1)
    updated = int_field(obj, "status", "updatedReplicas")
    replicas = int_field(obj, "status", "replicas")
    available = int_field(obj, "status", "availableReplicas")
    progressing = condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == PROGRESS_DEADLINE:
        return failed(
            PROGRESS_DEADLINE,
            f"exceeded its progress deadline: {progressing.get('message') or 'no progress'}",
        )
    complete = updated >= spec_replicas and replicas <= updated and available >= updated
    if get_path(obj, "spec", "paused") is True and not complete:
        return failed(
            PAUSED,
            f"paused with {updated} of {spec_replicas} replicas updated: "
            "the new template cannot roll out until it is resumed",
        )
    if updated < spec_replicas:
        return in_progress(LESS_UPDATED, f"{updated} of {spec_replicas} new replicas updated")
    if replicas > updated:
        return in_progress(OLD_PENDING, f"{replicas - updated} old replicas pending termination")
    if available < updated:
        return in_progress(LESS_AVAILABLE, f"{available} of {updated} updated replicas available")
    return current(ROLLED_OUT, f"{available} of {spec_replicas} updated replicas available")


def statefulset_status(obj: Obj) -> Verdict:
    """``kubectl rollout status statefulset``; OnDelete is done once its pods are ready."""
    spec_replicas = int_field(obj, "spec", "replicas", default=1)
    ready = int_field(obj, "status", "readyReplicas")
    updated = int_field(obj, "status", "updatedReplicas")
    strategy = get_path(obj, "spec", "updateStrategy", "type", default=ROLLING_UPDATE)
    if ready < spec_replicas:
        return in_progress(LESS_READY, f"{ready} of {spec_replicas} pods ready")
    if strategy == ON_DELETE_TYPE:
        return current(
            ON_DELETE,
            f"{ready} of {spec_replicas} pods ready, {updated} at the update revision "
            "(OnDelete: the others update when deleted)",
        )
    rolling = get_path(obj, "spec", "updateStrategy", "rollingUpdate")
    if isinstance(rolling, Mapping):
        partition = int_field(obj, "spec", "updateStrategy", "rollingUpdate", "partition")
        wanted = spec_replicas - partition
        if updated < wanted:
            return in_progress(
                PARTITION_PENDING,
                f"{updated} of {wanted} new pods updated (partition {partition})",
            )
        return current(PARTITION_DONE, f"{updated} new pods updated (partition {partition})")
    update_revision = get_path(obj, "status", "updateRevision", default="")
    if update_revision != get_path(obj, "status", "currentRevision", default=""):
        return in_progress(
            REVISION_PENDING, f"{updated} of {spec_replicas} pods at revision {update_revision}"
        )
    current_replicas = int_field(obj, "status", "currentReplicas")
    return current(ROLLED_OUT, f"{current_replicas} pods at revision {update_revision}")


def daemonset_status(obj: Obj) -> Verdict:
    """``kubectl rollout status daemonset``; OnDelete is done once its pods are available."""
    desired = int_field(obj, "status", "desiredNumberScheduled")
    updated = int_field(obj, "status", "updatedNumberScheduled")
    available = int_field(obj, "status", "numberAvailable")
    strategy = get_path(obj, "spec", "updateStrategy", "type", default=ROLLING_UPDATE)
    if strategy == ON_DELETE_TYPE:
        if available < desired:
            return in_progress(LESS_AVAILABLE, f"{available} of {desired} pods available")
        return current(
            ON_DELETE,
            f"{available} of {desired} pods available, {updated} updated "
            "(OnDelete: the others update when deleted)",
        )
    if updated < desired:
        return in_progress(LESS_UPDATED, f"{updated} of {desired} new pods updated")
    if available < desired:
        return in_progress(LESS_AVAILABLE, f"{available} of {desired} updated pods available")
    return current(ROLLED_OUT, f"{available} of {desired} updated pods available")


def job_status(obj: Obj) -> Verdict:
    succeeded = int_field(obj, "status", "succeeded")
    completions = int_field(obj, "spec", "completions", default=1)
    failed_cond = condition(obj, "Failed")
    if failed_cond is not None and failed_cond.get("status") == "True":
        detail = failed_cond.get("message") or failed_cond.get("reason") or "failed"
        return failed(JOB_FAILED, f"failed: {detail}")
    if condition_is(obj, "Complete", "True"):
        return current(JOB_COMPLETE, f"complete: {succeeded} of {completions} succeeded")
    if get_path(obj, "spec", "suspend") is True:
        return current(JOB_SUSPENDED, "suspended")
    active = int_field(obj, "status", "active")
    return in_progress(JOB_RUNNING, f"{succeeded} of {completions} succeeded, {active} active")


def pvc_status(obj: Obj) -> Verdict:
    phase = get_path(obj, "status", "phase", default="Pending")
    if phase == "Bound":
        return current(PVC_BOUND, "bound")
    if phase == "Lost":
        return failed(PVC_LOST, "lost its volume")
    return in_progress(PVC_PENDING, f"{phase.lower()}, not bound yet")


def crd_status(obj: Obj) -> Verdict:
    if condition_is(obj, "NamesAccepted", "False"):
        cond = condition(obj, "NamesAccepted") or {}
        return failed(CRD_NAMES_REJECTED, f"names not accepted: {cond.get('message', '')}")
    if condition_is(obj, "Established", "True"):
        return current(CRD_ESTABLISHED, "established")
    return in_progress(CRD_NOT_ESTABLISHED, "not established yet")


def pod_status(obj: Obj) -> Verdict:
    phase = get_path(obj, "status", "phase", default="Pending")
    if phase == "Succeeded":
        return current(POD_SUCCEEDED, "succeeded")
    if phase == "Failed":
        return failed(POD_FAILED, f"failed: {get_path(obj, 'status', 'message', default='')}")
    if condition_is(obj, "Ready", "True"):
        return current(POD_READY, "ready")
    return in_progress(POD_NOT_READY, f"{phase.lower()}, not ready")


def namespace_status(obj: Obj) -> Verdict:
    if get_path(obj, "status", "phase") == "Terminating":
        return in_progress(NAMESPACE_TERMINATING, "terminating")
    return current(NAMESPACE_ACTIVE, "active")


def service_status(obj: Obj, *, wait_load_balancer: bool = False) -> Verdict:
    if get_path(obj, "spec", "type") != "LoadBalancer" or not wait_load_balancer:
        return current(NO_STATUS, "applied")
    ingress = get_path(obj, "status", "loadBalancer", "ingress", default=[])
    if not ingress:
        return in_progress(LB_PENDING, "waiting for a load balancer address")
    first = ingress[0] if isinstance(ingress[0], Mapping) else {}
    address = first.get("ip") or first.get("hostname") or "?"
    return current(LB_READY, f"load balancer at {address}")


def generic_status(obj: Obj) -> Verdict:
    """kstatus for kinds we do not know: the standard Stalled/Reconciling/Ready conditions."""
    if condition_is(obj, "Stalled", "True"):
        cond = condition(obj, "Stalled") or {}
        return failed(STALLED, f"stalled: {cond.get('message') or cond.get('reason', '')}")
    if condition_is(obj, "Reconciling", "True"):
        cond = condition(obj, "Reconciling") or {}
        return in_progress(RECONCILING, f"reconciling: {cond.get('message', '')}".rstrip(": "))
    ready = condition(obj, "Ready")
    if ready is not None and ready.get("status") == "False":
        return in_progress(NOT_READY, f"not ready: {ready.get('message', '')}".rstrip(": "))
    if ready is not None:
        return current(READY, "ready")
    return current(NO_STATUS, "applied")


Rule = Callable[[Obj], Verdict]

RULES: dict[tuple[str, str], Rule] = {
    ("apps", "Deployment"): deployment_status,
    ("apps", "StatefulSet"): statefulset_status,
    ("apps", "DaemonSet"): daemonset_status,
    ("batch", "Job"): job_status,
    ("", "PersistentVolumeClaim"): pvc_status,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd_status,
    ("", "Pod"): pod_status,
    ("", "Namespace"): namespace_status,
    ("", "Service"): service_status,
}

WORKLOADS = {("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet")}
"""Kinds whose status is meaningless until ``status.observedGeneration`` is written."""


def status_of(
    obj: Obj, *, applied_generation: int | None = None, wait_load_balancer: bool = False
) -> Verdict:
    """The verdict for one live object, once its controller has seen what we applied."""
    key = group_kind(obj)
    generation = int_field(obj, "metadata", "generation")
    observed = get_path(obj, "status", "observedGeneration")
    if isinstance(observed, int) or key in WORKLOADS:
        seen = observed if isinstance(observed, int) else 0
        if applied_generation is not None and seen < applied_generation:
            return in_progress(
                NOT_APPLIED_YET,
                f"waiting for the controller to observe generation {applied_generation}",
            )
        if seen < generation:
            return in_progress(
                GENERATION_LAG, f"waiting for the controller to observe generation {generation}"
            )
    if key == ("", "Service"):
        return service_status(obj, wait_load_balancer=wait_load_balancer)
    return RULES.get(key, generic_status)(obj)


# --------------------------------------------------------------------------- pods


REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH_LABEL = "pod-template-hash"
CONTROLLER_REVISION_LABEL = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"


def uid(obj: Obj) -> str:
    return str(get_path(obj, "metadata", "uid", default=""))


def owned_by(obj: Obj, owner_uid: str) -> bool:
    if not owner_uid:
        return False
    refs = get_path(obj, "metadata", "ownerReferences", default=[])
    return any(isinstance(r, Mapping) and r.get("uid") == owner_uid for r in refs)


def new_replicaset(deployment: Obj, replicasets: Iterable[Obj]) -> Obj | None:
    """The ReplicaSet of the Deployment's current revision (None until it exists).

    Matched by the revision annotation when the Deployment carries one, else,
    as kubectl does, by a pod template equal to the Deployment's.
    """
    owned = [rs for rs in replicasets if owned_by(rs, uid(deployment))]
    revision = get_path(deployment, "metadata", "annotations", REVISION_ANNOTATION)
    if revision is not None:
        for rs in owned:
            if get_path(rs, "metadata", "annotations", REVISION_ANNOTATION) == revision:
                return rs
    template = without_template_hash(get_path(deployment, "spec", "template", default={}))
    for rs in owned:
        if without_template_hash(get_path(rs, "spec", "template", default={})) == template:
            return rs
    return None


def without_template_hash(template: Any) -> Any:
    """A pod template without the ``pod-template-hash`` label the controller adds."""
    if not isinstance(template, Mapping):
        return template
    metadata = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != TEMPLATE_HASH_LABEL}
    metadata["labels"] = labels
    for key in ("creationTimestamp",):
        metadata.pop(key, None)
    return {**template, "metadata": metadata}


def _owned_pods(workload: Obj, pods: Sequence[Obj], replicasets: Sequence[Obj]) -> list[Obj]:
    owner = uid(workload)
    return [p for p in pods if owned_by(p, owner)]


def _pod_itself(workload: Obj, pods: Sequence[Obj], replicasets: Sequence[Obj]) -> list[Obj]:
    return [workload]


def _deployment_pods(workload: Obj, pods: Sequence[Obj], replicasets: Sequence[Obj]) -> list[Obj]:
    rs = new_replicaset(workload, replicasets)
    if rs is None:
        return []
    rs_uid = uid(rs)
    return [p for p in pods if owned_by(p, rs_uid)]


def _statefulset_pods(workload: Obj, pods: Sequence[Obj], replicasets: Sequence[Obj]) -> list[Obj]:
    revision = get_path(workload, "status", "updateRevision")
    if not revision:
        return []
    owned = _owned_pods(workload, pods, replicasets)
    return [p for p in owned if pod_label(p, CONTROLLER_REVISION_LABEL) == revision]


def _daemonset_pods(workload: Obj, pods: Sequence[Obj], replicasets: Sequence[Obj]) -> list[Obj]:
    owned = _owned_pods(workload, pods, replicasets)
    generation = str(int_field(workload, "metadata", "generation"))
    labelled = [p for p in owned if pod_label(p, TEMPLATE_GENERATION_LABEL) is not None]
    if labelled:
        return [p for p in labelled if pod_label(p, TEMPLATE_GENERATION_LABEL) == generation]
    return owned


@dataclass(frozen=True)
class PodOwner:
    """How to find a kind's newest pods, for fail-fast (one row a kind in ``POD_OWNERS``)."""

    new_pods: Callable[[Obj, Sequence[Obj], Sequence[Obj]], list[Obj]]
    """(workload, pods, replicasets) -> the pods of its newest revision."""
    via_replicasets: bool = False
    """Its pods belong to a ReplicaSet it owns: watch ReplicaSets, and FailedCreate
    events name the new ReplicaSet, not the workload."""


POD_OWNERS: dict[tuple[str, str], PodOwner] = {
    ("apps", "Deployment"): PodOwner(_deployment_pods, via_replicasets=True),
    ("apps", "StatefulSet"): PodOwner(_statefulset_pods),
    ("apps", "DaemonSet"): PodOwner(_daemonset_pods),
    ("batch", "Job"): PodOwner(_owned_pods),
    ("", "Pod"): PodOwner(_pod_itself),
}
"""Kinds whose pods we watch for fail-fast reasons. Adding a kind: its rule in
``RULES`` and a row here."""


def new_revision_pods(
    workload: Obj, pods: Iterable[Obj], replicasets: Iterable[Obj] = ()
) -> list[Obj]:
    """The pods of the workload's newest revision: only they can fail a rollout."""
    owner = POD_OWNERS.get(group_kind(workload))
    find = owner.new_pods if owner is not None else _owned_pods
    return find(workload, list(pods), list(replicasets))


def pod_controllers(workload: Obj, replicasets: Iterable[Obj]) -> list[str]:
    """The uids of what creates the newest pods (the new ReplicaSet for a Deployment):
    the objects a ``FailedCreate`` event is about."""
    owner = POD_OWNERS.get(group_kind(workload))
    if owner is not None and owner.via_replicasets:
        rs = new_replicaset(workload, replicasets)
        return [uid(rs)] if rs is not None else []
    return [uid(workload)]


def pod_label(pod: Obj, name: str) -> str | None:
    value = get_path(pod, "metadata", "labels", name)
    return None if value is None else str(value)
