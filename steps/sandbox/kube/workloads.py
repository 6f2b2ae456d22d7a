"""StatefulSet, DaemonSet and Job controllers, with the status fields the stage reads.

StatefulSets create and update pods in ordinal order (partition and OnDelete
respected) and track ``currentRevision``/``updateRevision`` through
ControllerRevisions; DaemonSets run one pod per matching node with a
``maxUnavailable`` budget; Jobs retry failed pods up to ``backoffLimit``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from steps.sandbox.kube.api import CONTROLLER, now
from steps.sandbox.kube.controller_base import owner_ref, resolve, template_hash
from steps.sandbox.kube.kubelet import random_pod_name, target_node
from steps.sandbox.kube.store import clone

if TYPE_CHECKING:
    from steps.sandbox.kube.controller_base import ControllerHost

REVISION_LABEL = "controller-revision-hash"


class Workloads:
    def __init__(self, controllers: ControllerHost) -> None:
        self.c = controllers
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self._job_retry_at: dict[str, float] = {}
        self._job_started: dict[str, float] = {}

    # -- ControllerRevisions ------------------------------------------------------

    def _revision(self, owner: dict[str, Any], template: dict[str, Any]) -> str:
        pod_hash = template_hash(template)
        name = f"{owner['metadata']['name']}-{pod_hash}"
        self.templates[(owner["metadata"]["uid"], name)] = clone(template)
        rt = self.c.rt("apps", "controllerrevisions")
        ns = owner["metadata"]["namespace"]
        existing = [
            r
            for r in self.c.cluster.store.items(rt.key, ns)
            if any(
                ref.get("uid") == owner["metadata"]["uid"]
                for ref in r["metadata"].get("ownerReferences") or []
            )
        ]
        latest = max((int(r.get("revision", 0)) for r in existing), default=0)
        found = self.c.cluster.store.get(rt.key, ns, name)
        if found is not None and int(found.get("revision", 0)) < latest:
            # Back to an earlier template (rollout undo): the real controller renumbers
            # that revision as the newest, so history and a second undo see it last.
            renumbered = clone(found)
            renumbered["revision"] = latest + 1
            self.c.cluster.write(rt, renumbered, manager=CONTROLLER)
        elif found is None:
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            labels[REVISION_LABEL] = pod_hash
            self.c.cluster.controller_create(
                rt,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ControllerRevision",
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [owner_ref(owner)],
                    },
                    "data": {"spec": {"template": {**clone(template), "$patch": "replace"}}},
                    "revision": latest + 1,
                },
            )
        return name

    # -- StatefulSets -------------------------------------------------------------

    def sync_statefulsets(self) -> None:
        rt = self.c.rt("apps", "statefulsets")
        for sts in [clone(s) for s in self.c.cluster.store.items(rt.key)]:
            if sts["metadata"].get("deletionTimestamp") or not self.c.observed(sts):
                continue
            self._sync_statefulset(rt, sts)

    def _sync_statefulset(self, rt: Any, sts: dict[str, Any]) -> None:
        c = self.c
        spec, meta = sts["spec"], sts["metadata"]
        name = meta["name"]
        replicas = int(spec.get("replicas", 1))
        previous = clone(sts.get("status") or {})
        update_revision = self._revision(sts, spec["template"])
        current_revision = previous.get("currentRevision") or update_revision
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0)) if rolling else 0
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods: dict[int, dict[str, Any]] = {}
        for pod in c.pods_of(sts):
            suffix = pod["metadata"]["name"].rsplit("-", 1)[-1]
            if suffix.isdigit():
                pods[int(suffix)] = pod
        self._claims(sts, replicas)

        def healthy(pod: dict[str, Any]) -> bool:
            return (pod.get("status") or {}).get("phase") == "Running" and c.pod_ready(pod)

        blocked = False
        for ordinal in range(replicas):
            slot = pods.get(ordinal)
            if slot is None:
                revision = current_revision if rolling and ordinal < partition else update_revision
                self._create_ordinal(sts, ordinal, revision)
                if ordered:
                    blocked = True
                    break
            elif ordered and (slot["metadata"].get("deletionTimestamp") or not healthy(slot)):
                blocked = True
                break
        extra = sorted((o for o in pods if o >= replicas), reverse=True)
        if not blocked and extra:
            for ordinal in extra[:1] if ordered else extra:
                if not pods[ordinal]["metadata"].get("deletionTimestamp"):
                    c.delete_pod(sts, pods[ordinal])
        if rolling and not blocked and not extra:
            live = [pods.get(o) for o in range(replicas)]
            if all(p is not None and healthy(p) for p in live):
                for ordinal in range(replicas - 1, partition - 1, -1):
                    pod = pods[ordinal]
                    if _revision_of(pod, name) != update_revision:
                        c.delete_pod(sts, pod)
                        break
        current = [
            p for o, p in c_pods(c, sts).items() if not p["metadata"].get("deletionTimestamp")
        ]
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(current),
            "readyReplicas": sum(1 for p in current if c.pod_ready(p)),
            "availableReplicas": sum(
                1 for p in current if c.pod_available(p, int(spec.get("minReadySeconds") or 0))
            ),
            "currentReplicas": sum(1 for p in current if _revision_of(p, name) == current_revision),
            "updatedReplicas": sum(1 for p in current if _revision_of(p, name) == update_revision),
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
        }
        if (
            rolling
            and status["updatedReplicas"]
            == replicas
            == status["replicas"]
            == status["readyReplicas"]
        ):
            status["currentRevision"] = update_revision
            status["currentReplicas"] = status["updatedReplicas"]
        for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not status[key]:
                status.pop(key)
        if status != previous:
            sts["status"] = status
            c.cluster.write(rt, sts, subresource="status", manager=CONTROLLER)

    def _create_ordinal(self, sts: dict[str, Any], ordinal: int, revision: str) -> None:
        name = sts["metadata"]["name"]
        template = clone(
            self.templates.get((sts["metadata"]["uid"], revision), sts["spec"]["template"])
        )
        pod_name = f"{name}-{ordinal}"
        spec = template.setdefault("spec", {})
        spec["hostname"] = pod_name
        if sts["spec"].get("serviceName"):
            spec["subdomain"] = sts["spec"]["serviceName"]
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            claim_name = claim.get("metadata", {}).get("name", "data")
            volumes = spec.setdefault("volumes", [])
            if not any(v.get("name") == claim_name for v in volumes):
                volumes.append(
                    {
                        "name": claim_name,
                        "persistentVolumeClaim": {"claimName": f"{claim_name}-{pod_name}"},
                    }
                )
        labels = {
            REVISION_LABEL: revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal),
        }
        self.c.create_pod(sts, template, pod_name, labels)

    def _claims(self, sts: dict[str, Any], replicas: int) -> None:
        rt = self.c.rt("", "persistentvolumeclaims")
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            claim_name = claim.get("metadata", {}).get("name", "data")
            for ordinal in range(replicas):
                full = f"{claim_name}-{name}-{ordinal}"
                if self.c.cluster.store.get(rt.key, ns, full) is None:
                    labels = dict((sts["spec"].get("selector") or {}).get("matchLabels") or {})
                    self.c.cluster.controller_create(
                        rt,
                        {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "metadata": {"name": full, "namespace": ns, "labels": labels},
                            "spec": clone(claim.get("spec") or {}),
                        },
                    )

    # -- DaemonSets ---------------------------------------------------------------

    def sync_daemonsets(self) -> None:
        rt = self.c.rt("apps", "daemonsets")
        for ds in [clone(d) for d in self.c.cluster.store.items(rt.key)]:
            if ds["metadata"].get("deletionTimestamp") or not self.c.observed(ds):
                continue
            self._sync_daemonset(rt, ds)

    def _sync_daemonset(self, rt: Any, ds: dict[str, Any]) -> None:
        c = self.c
        spec, meta = ds["spec"], ds["metadata"]
        template = spec["template"]
        selector = (template.get("spec") or {}).get("nodeSelector") or {}
        nodes = [
            n["metadata"]["name"]
            for n in c.cluster.store.items(("", "nodes"))
            if all((n["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]
        self._revision(ds, template)
        pod_hash = template_hash(template)
        min_ready = int(spec.get("minReadySeconds") or 0)
        by_node: dict[str, list[dict[str, Any]]] = {}
        for pod in c.pods_of(ds):
            if not pod["metadata"].get("deletionTimestamp"):
                by_node.setdefault(target_node(pod) or "", []).append(pod)
        for node in nodes:
            if not by_node.get(node):
                self._create_daemon_pod(ds, node, pod_hash)
        for node, pods in by_node.items():
            if node not in nodes:
                for pod in pods:
                    c.delete_pod(ds, pod)
            for pod in pods[1:]:
                c.delete_pod(ds, pod)
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            budget = (
                resolve(
                    (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1), len(nodes), True
                )
                or 1
            )
            unavailable = sum(
                1
                for n in nodes
                if not any(c.pod_available(p, min_ready) for p in by_node.get(n, []))
            )
            for node in nodes:
                for pod in by_node.get(node, [])[:1]:
                    if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) == pod_hash:
                        continue
                    if not c.pod_available(pod, min_ready):
                        c.delete_pod(ds, pod)
                    elif unavailable < budget:
                        c.delete_pod(ds, pod)
                        unavailable += 1
        pods = [p for p in c.pods_of(ds) if not p["metadata"].get("deletionTimestamp")]
        scheduled = {target_node(p) for p in pods}
        available = sum(
            1
            for n in nodes
            if any(c.pod_available(p, min_ready) for p in pods if target_node(p) == n)
        )
        status: dict[str, Any] = {
            "currentNumberScheduled": len(scheduled & set(nodes)),
            "numberMisscheduled": len(scheduled - set(nodes)),
            "desiredNumberScheduled": len(nodes),
            "numberReady": sum(1 for p in pods if c.pod_ready(p)),
            "observedGeneration": meta.get("generation", 1),
            "updatedNumberScheduled": sum(
                1
                for p in pods
                if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == pod_hash
            ),
            "numberAvailable": available,
            "numberUnavailable": len(nodes) - available,
        }
        for key in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
            if not status[key]:
                status.pop(key)
        if status != (ds.get("status") or {}):
            ds["status"] = status
            c.cluster.write(rt, ds, subresource="status", manager=CONTROLLER)

    def _create_daemon_pod(self, ds: dict[str, Any], node: str, pod_hash: str) -> None:
        template = clone(ds["spec"]["template"])
        spec = template.setdefault("spec", {})
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            }
        }
        labels = {
            REVISION_LABEL: pod_hash,
            "pod-template-generation": str(ds["metadata"].get("generation", 1)),
        }
        self.c.create_pod(ds, template, random_pod_name(ds["metadata"]["name"]), labels)

    # -- Jobs -----------------------------------------------------------------------

    def sync_jobs(self) -> None:
        rt = self.c.rt("batch", "jobs")
        for job in [clone(j) for j in self.c.cluster.store.items(rt.key)]:
            if job["metadata"].get("deletionTimestamp"):
                continue
            self._sync_job(rt, job)

    def _sync_job(self, rt: Any, job: dict[str, Any]) -> None:
        c = self.c
        spec, meta = job["spec"], job["metadata"]
        previous = clone(job.get("status") or {})
        status = clone(previous)
        if any(
            x.get("type") in ("Complete", "Failed") and x.get("status") == "True"
            for x in status.get("conditions") or []
        ):
            return
        if spec.get("suspend"):
            return
        pods = c.pods_of(job)
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        restarts = sum(
            int(cs.get("restartCount", 0))
            for p in active
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        )
        completions = int(spec.get("completions", 1) or 1)
        parallelism = int(spec.get("parallelism", 1))
        backoff_limit = int(spec.get("backoffLimit", 6))
        status.setdefault("startTime", now())
        stamp = now()
        failures = failed + (
            restarts if spec["template"]["spec"].get("restartPolicy") == "OnFailure" else 0
        )
        deadline = spec.get("activeDeadlineSeconds")
        started = self._job_started.setdefault(meta["uid"], time.monotonic())
        if failures > backoff_limit:
            why = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and time.monotonic() - started > float(deadline):
            why = ("DeadlineExceeded", "Job was active longer than specified deadline")
        else:
            why = None
        if why is not None:
            for pod in active:
                c.delete_pod(job, pod)
            active = []
            for type_ in ("FailureTarget", "Failed"):
                status.setdefault("conditions", []).append(
                    {
                        "type": type_,
                        "status": "True",
                        "lastProbeTime": stamp,
                        "lastTransitionTime": stamp,
                        "reason": why[0],
                        "message": why[1],
                    }
                )
            c.events.record(job, "Warning", why[0], why[1], "job-controller")
        elif succeeded >= completions:
            for type_ in ("SuccessCriteriaMet", "Complete"):
                status.setdefault("conditions", []).append(
                    {
                        "type": type_,
                        "status": "True",
                        "lastProbeTime": stamp,
                        "lastTransitionTime": stamp,
                        "reason": "CompletionsReached",
                        "message": "Reached expected number of succeeded pods",
                    }
                )
            status["completionTime"] = stamp
            c.events.record(job, "Normal", "Completed", "Job completed", "job-controller")
        else:
            want = min(parallelism, completions - succeeded)
            retry_at = self._job_retry_at.get(meta["uid"], 0.0)
            if failed and len(active) < want and time.monotonic() >= retry_at:
                known = self._job_retry_at.get(meta["uid"] + "/failed")
                if known != failed:
                    delay = min(c.timings.backoff * 2 ** max(failed - 1, 0), c.timings.backoff_cap)
                    self._job_retry_at[meta["uid"]] = time.monotonic() + delay
                    self._job_retry_at[meta["uid"] + "/failed"] = failed
                    retry_at = self._job_retry_at[meta["uid"]]
            if time.monotonic() >= retry_at:
                for _ in range(want - len(active)):
                    created = c.create_pod(job, spec["template"], random_pod_name(meta["name"]))
                    if created is not None:
                        active.append(created)
        status["active"] = len(active)
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["ready"] = sum(1 for p in active if c.pod_ready(p))
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                status.pop(key)
        if status != previous:
            job["status"] = status
            c.cluster.write(rt, job, subresource="status", manager=CONTROLLER)


def _revision_of(pod: dict[str, Any], name: str) -> str:
    return str((pod["metadata"].get("labels") or {}).get(REVISION_LABEL, ""))


def c_pods(c: ControllerHost, sts: dict[str, Any]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for pod in c.pods_of(sts):
        suffix = pod["metadata"]["name"].rsplit("-", 1)[-1]
        if suffix.isdigit():
            out[int(suffix)] = pod
    return out
