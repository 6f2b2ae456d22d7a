"""Controllers that behave like kube-controller-manager's, on a fixed tick.

Each ``sync_*`` reads the store, decides, and writes through ``Cluster`` so
every change gets a resourceVersion and a watch event. The Deployment logic
follows the real controller's rolling-update arithmetic (surge first, then
scale down old ReplicaSets as far as ``maxUnavailable`` allows) and its
Progressing/Available conditions, because the stage judges rollouts on them.
"""

from __future__ import annotations

import time
from typing import Any

from steps.sandbox.kube.api import CONTROLLER, Cluster, now
from steps.sandbox.kube.controller_base import owned_by, owner_ref, resolve, semantic, template_hash
from steps.sandbox.kube.crds import sync_crds
from steps.sandbox.kube.cronjobs import sync_cronjobs
from steps.sandbox.kube.events import EventRecorder
from steps.sandbox.kube.kubelet import Kubelet, random_pod_name
from steps.sandbox.kube.network import sync_endpoints
from steps.sandbox.kube.resources import ResourceType
from steps.sandbox.kube.selectors import selector_matches
from steps.sandbox.kube.store import clone
from steps.sandbox.kube.timings import Timings
from steps.sandbox.kube.workloads import Workloads

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DEFAULT_STORAGE_CLASS = "standard-rwo"  # GKE's default StorageClass
PROVISIONER = "pd.csi.storage.gke.io"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
HPA_REPLICAS = "sandbox.gitops-steps.dev/replicas"  # an HPA's wanted size, in tests
IDLE_TICKS = 5  # while nothing changes, controllers look again every this many ticks
ROOT_CA = "-----BEGIN CERTIFICATE-----\nc2FuZGJveA==\n-----END CERTIFICATE-----\n"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(
    status: dict[str, Any],
    type_: str,
    value: str,
    reason: str,
    message: str,
    keep_transition: bool = True,
) -> None:
    """Set a condition; lastUpdateTime moves on every change, transition on flips."""
    stamp = now()
    conditions = status.setdefault("conditions", [])
    for existing in conditions:
        if existing["type"] == type_:
            if (existing["status"], existing.get("reason"), existing.get("message")) == (
                value,
                reason,
                message,
            ):
                return
            if existing["status"] != value or not keep_transition:
                existing["lastTransitionTime"] = stamp
            existing.update(status=value, reason=reason, message=message, lastUpdateTime=stamp)
            return
    conditions.append(
        {
            "type": type_,
            "status": value,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
    )


class Controllers:
    """All controllers, run one after another on every tick."""

    def __init__(
        self, cluster: Cluster, kubelet: Kubelet, events: EventRecorder, timings: Timings
    ) -> None:
        self.cluster = cluster
        self.kubelet = kubelet
        self.events = events
        self.timings = timings
        self._seen_generation: dict[str, tuple[int, float]] = {}
        self._progress_at: dict[str, float] = {}
        self._timers: dict[str, float] = {}
        self.create_failures: dict[str, str] = {}  # owner uid -> why its last pod was refused
        self._quiet_at = -1  # the resourceVersion after the last pass that changed nothing
        self._last_pass = 0.0
        self._pod_index: tuple[int, dict[str, list[dict[str, Any]]]] = (-1, {})
        self.workloads = Workloads(self)

    def rt(self, group: str, plural: str, version: str = "v1") -> ResourceType:
        found = self.cluster.registry.lookup(group, version, plural)
        assert found is not None, plural
        return found

    def tick(self, force: bool = False) -> None:
        """One pass of every controller; skipped while nothing changed and no timer is due.

        A pass that wrote something is followed by another on the next tick, as
        one change often needs several controllers in turn; timers (minReadySeconds,
        deadlines, bind and establish delays) are checked at least every few ticks.
        """
        store = self.cluster.store
        started = store.resource_version
        now = time.monotonic()
        idle = started == self._quiet_at and now - self._last_pass < self.timings.tick * IDLE_TICKS
        if idle and not force:
            return
        self._last_pass = now
        for sync in (
            self.sync_namespaces,
            self.sync_garbage,
            self.sync_deployments,
            self.sync_replicasets,
            self.workloads.sync_statefulsets,
            self.workloads.sync_daemonsets,
            self.workloads.sync_jobs,
            self.sync_autoscalers,
            self.sync_disruption_budgets,
            self.sync_claims,
            self.sync_volumes,
            self.sync_services,
            self.sync_endpoints,
            self.sync_cronjobs,
            self.sync_crds,
        ):
            with self.cluster.lock:
                sync()
        self._quiet_at = started if store.resource_version == started else -1

    # -- helpers ----------------------------------------------------------------

    def observed(self, obj: dict[str, Any]) -> bool:
        """False while the configured observedGeneration lag for this generation runs."""
        lag = self.timings.observe_lag
        if lag <= 0:
            return True
        uid, generation = obj["metadata"]["uid"], int(obj["metadata"].get("generation", 1))
        seen = self._seen_generation.get(uid)
        if seen is None or seen[0] != generation:
            self._seen_generation[uid] = (generation, time.monotonic())
            return False
        return time.monotonic() - seen[1] >= lag

    def after(self, key: str, delay: float) -> bool:
        """True once ``delay`` has passed since the first call for ``key``."""
        start = self._timers.setdefault(key, time.monotonic())
        return time.monotonic() - start >= delay

    def pods_of(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        """The owner's pods, as stored: read them, never change them in place."""
        rv, index = self._pod_index
        if rv != self.cluster.store.resource_version:
            index = {}
            for pod in self.cluster.store.items(("", "pods")):
                for ref in pod["metadata"].get("ownerReferences") or []:
                    if ref.get("controller"):
                        index.setdefault(ref.get("uid", ""), []).append(pod)
            self._pod_index = (self.cluster.store.resource_version, index)
        return list(index.get(owner["metadata"]["uid"], []))

    def pod_ready(self, pod: dict[str, Any]) -> bool:
        ready = condition(pod.get("status") or {}, "Ready")
        return bool(ready and ready["status"] == "True") and not pod["metadata"].get(
            "deletionTimestamp"
        )

    def pod_available(self, pod: dict[str, Any], min_ready: int) -> bool:
        if not self.pod_ready(pod):
            return False
        since = self.kubelet.ready_since.get(pod["metadata"]["uid"])
        return since is not None and time.monotonic() - since >= min_ready

    def create_pod(
        self,
        owner: dict[str, Any],
        template: dict[str, Any],
        name: str,
        extra_labels: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        meta = clone(template.get("metadata") or {})
        labels = {**(meta.get("labels") or {}), **(extra_labels or {})}
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": owner["metadata"].get("namespace"),
                "labels": labels,
                "annotations": meta.get("annotations") or {},
                "ownerReferences": [owner_ref(owner)],
            },
            "spec": clone(template.get("spec") or {}),
        }
        if not pod["metadata"]["annotations"]:
            pod["metadata"].pop("annotations")
        refused = self._admission(pod, owner, name)
        owner_uid = owner["metadata"]["uid"]
        if refused is not None:
            self.create_failures[owner_uid] = refused
            self.events.record(owner, "Warning", "FailedCreate", refused, self.component(owner))
            return None
        self.create_failures.pop(owner_uid, None)
        created = self.cluster.controller_create(self.rt("", "pods"), pod)
        if created is not None:
            self.events.record(
                owner, "Normal", "SuccessfulCreate", f"Created pod: {name}", self.component(owner)
            )
        return created

    def _admission(self, pod: dict[str, Any], owner: dict[str, Any], name: str) -> str | None:
        """Why admission would refuse the pod (a missing ServiceAccount), or None."""
        spec, ns = pod["spec"], pod["metadata"]["namespace"]
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if not account or account == "default":
            return None
        if self.cluster.store.get(("", "serviceaccounts"), ns, account) is not None:
            return None
        generated = owner.get("kind") in ("ReplicaSet", "DaemonSet", "Job")
        shown = name.rsplit("-", 1)[0] + "-" if generated else name
        return (
            f'Error creating: pods "{shown}" is forbidden: error looking up service account '
            f'{ns}/{account}: serviceaccount "{account}" not found'
        )

    def delete_pod(self, owner: dict[str, Any], pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.cluster.delete(self.rt("", "pods"), meta["namespace"], meta["name"])
        except Exception:  # already gone
            return
        self.events.record(
            owner,
            "Normal",
            "SuccessfulDelete",
            f"Deleted pod: {meta['name']}",
            self.component(owner),
        )

    @staticmethod
    def component(owner: dict[str, Any]) -> str:
        return {
            "ReplicaSet": "replicaset-controller",
            "Deployment": "deployment-controller",
            "StatefulSet": "statefulset-controller",
            "DaemonSet": "daemonset-controller",
            "Job": "job-controller",
        }.get(owner.get("kind", ""), CONTROLLER)

    # -- namespaces -------------------------------------------------------------

    def sync_namespaces(self) -> None:
        ns_rt = self.rt("", "namespaces")
        for ns in [clone(n) for n in self.cluster.store.items(ns_rt.key)]:
            name = ns["metadata"]["name"]
            if ns["metadata"].get("deletionTimestamp"):
                remaining = 0
                for rt in self.cluster.registry.all():
                    if not rt.namespaced:
                        continue
                    for obj in list(self.cluster.store.items(rt.key, name)):
                        remaining += 1
                        if not obj["metadata"].get("deletionTimestamp"):
                            try:
                                self.cluster.delete(rt, name, obj["metadata"]["name"])
                            except Exception:
                                continue
                if remaining == 0:
                    self.cluster.store.remove(ns_rt.key, "", name)
                continue
            self._namespace_defaults(name)

    def _namespace_defaults(self, namespace: str) -> None:
        sa = self.rt("", "serviceaccounts")
        if self.cluster.store.get(sa.key, namespace, "default") is None:
            self.cluster.controller_create(
                sa,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": namespace},
                },
            )
        cm = self.rt("", "configmaps")
        if self.cluster.store.get(cm.key, namespace, "kube-root-ca.crt") is None:
            self.cluster.controller_create(
                cm,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": "kube-root-ca.crt",
                        "namespace": namespace,
                        "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
                    },
                    "data": {"ca.crt": ROOT_CA},
                },
            )

    # -- garbage collection -----------------------------------------------------

    def sync_garbage(self) -> None:
        """Delete dependents whose owners are gone; finish foreground and orphan deletions."""
        store = self.cluster.store
        everything: list[tuple[ResourceType, dict[str, Any]]] = []
        for rt in self.cluster.registry.all():
            everything += [(rt, o) for o in store.items(rt.key)]
        uids = {o["metadata"]["uid"]: o for _, o in everything}
        dependents: dict[str, list[tuple[ResourceType, dict[str, Any]]]] = {}
        for rt, obj in everything:
            refs = obj["metadata"].get("ownerReferences") or []
            for ref in refs:
                dependents.setdefault(ref.get("uid", ""), []).append((rt, obj))
            if (
                refs
                and not any(ref.get("uid") in uids for ref in refs)
                and not obj["metadata"].get("deletionTimestamp")
            ):
                self._delete(rt, obj)
        for rt, obj in everything:
            meta = obj["metadata"]
            finalizers = meta.get("finalizers") or []
            if not meta.get("deletionTimestamp"):
                continue
            mine = dependents.get(meta["uid"], [])
            if "foregroundDeletion" in finalizers:
                blocking = [(drt, d) for drt, d in mine if self._blocks(d, meta["uid"])]
                for drt, dependent in blocking:
                    if not dependent["metadata"].get("deletionTimestamp"):
                        self._delete(drt, dependent, "Foreground")
                if not blocking:
                    self._drop_finalizer(rt, obj, "foregroundDeletion")
            elif "orphan" in finalizers:
                for drt, dependent in mine:
                    copy_ = clone(dependent)
                    copy_["metadata"]["ownerReferences"] = [
                        r
                        for r in dependent["metadata"].get("ownerReferences") or []
                        if r.get("uid") != meta["uid"]
                    ]
                    if not copy_["metadata"]["ownerReferences"]:
                        copy_["metadata"].pop("ownerReferences")
                    self.cluster.write(drt, copy_, manager=CONTROLLER)
                self._drop_finalizer(rt, obj, "orphan")

    @staticmethod
    def _blocks(dependent: dict[str, Any], uid: str) -> bool:
        return any(
            r.get("uid") == uid and r.get("blockOwnerDeletion")
            for r in dependent["metadata"].get("ownerReferences") or []
        )

    def _delete(
        self, rt: ResourceType, obj: dict[str, Any], propagation: str | None = None
    ) -> None:
        meta = obj["metadata"]
        try:
            self.cluster.delete(
                rt, meta.get("namespace", ""), meta["name"], propagation=propagation
            )
        except Exception:
            return

    def _drop_finalizer(self, rt: ResourceType, obj: dict[str, Any], finalizer: str) -> None:
        updated = clone(obj)
        updated["metadata"]["finalizers"] = [
            f for f in obj["metadata"].get("finalizers") or [] if f != finalizer
        ]
        if not updated["metadata"]["finalizers"]:
            updated["metadata"].pop("finalizers")
        self.cluster.write(rt, updated, manager=CONTROLLER)

    # -- ReplicaSets ------------------------------------------------------------

    def sync_replicasets(self) -> None:
        rt = self.rt("apps", "replicasets")
        for rs in [clone(r) for r in self.cluster.store.items(rt.key)]:
            if rs["metadata"].get("deletionTimestamp"):
                continue
            spec = rs["spec"]
            pods = [p for p in self.pods_of(rs)]
            active = [
                p
                for p in pods
                if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            want = int(spec.get("replicas", 1))
            if len(active) < want:
                prefix = rs["metadata"]["name"]
                for _ in range(want - len(active)):
                    self.create_pod(rs, spec["template"], random_pod_name(prefix))
            elif len(active) > want:
                for pod in sorted(active, key=self._deletion_rank)[: len(active) - want]:
                    self.delete_pod(rs, pod)
            pods = [p for p in self.pods_of(rs) if not p["metadata"].get("deletionTimestamp")]
            min_ready = int(spec.get("minReadySeconds") or 0)
            labels_ok = [
                p
                for p in pods
                if selector_matches(spec.get("selector"), p["metadata"].get("labels") or {})
            ]
            # no terminatingReplicas: alpha (off) in 1.33, newer than the 1.32 we claim
            status = {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(labels_ok),
                "readyReplicas": sum(1 for p in pods if self.pod_ready(p)),
                "availableReplicas": sum(1 for p in pods if self.pod_available(p, min_ready)),
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            failure = self.create_failures.get(rs["metadata"]["uid"])
            previous = condition(rs.get("status") or {}, "ReplicaFailure")
            if failure is not None:
                status["conditions"] = [clone(previous)] if previous else []
                set_condition(status, "ReplicaFailure", "True", "FailedCreate", failure)
                status["conditions"][0].pop("lastUpdateTime", None)
            for key in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
                if not status[key]:
                    status.pop(key)
            if status != rs.get("status"):
                rs["status"] = status
                self.cluster.write(rt, rs, subresource="status", manager=CONTROLLER)

    def _deletion_rank(self, pod: dict[str, Any]) -> tuple[int, int, float, str]:
        """Which pods a ReplicaSet deletes first: unscheduled, pending, unready, then newest."""
        status = pod.get("status") or {}
        scheduled = 1 if pod["spec"].get("nodeName") else 0
        running = 1 if status.get("phase") == "Running" else 0
        ready = 1 if self.pod_ready(pod) else 0
        since = self.kubelet.ready_since.get(pod["metadata"]["uid"], 0.0)
        return (
            scheduled + running + ready,
            ready,
            -since,
            pod["metadata"].get("creationTimestamp", ""),
        )

    # -- Deployments ------------------------------------------------------------

    def sync_deployments(self) -> None:
        rt = self.rt("apps", "deployments")
        for deployment in [clone(d) for d in self.cluster.store.items(rt.key)]:
            if deployment["metadata"].get("deletionTimestamp") or not self.observed(deployment):
                continue
            self._sync_deployment(rt, deployment)

    def _sync_deployment(self, rt: ResourceType, d: dict[str, Any]) -> None:
        rs_rt = self.rt("apps", "replicasets")
        spec, meta = d["spec"], d["metadata"]
        ns = meta["namespace"]
        all_rs = [clone(r) for r in self.cluster.store.items(rs_rt.key, ns) if owned_by(r, d)]
        all_rs.sort(key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))
        new_rs = next(
            (r for r in all_rs if _same_template(r["spec"]["template"], spec["template"])), None
        )
        old_rs = [r for r in all_rs if r is not new_rs]
        replicas = int(spec.get("replicas", 1))
        previous_status = clone(d.get("status") or {})
        progress_note: tuple[str, str] | None = None
        if spec.get("paused"):
            self._deployment_status(rt, d, new_rs, all_rs, previous_status, paused=True)
            return
        max_revision = max(
            (int(r["metadata"].get("annotations", {}).get(REVISION, 0)) for r in old_rs), default=0
        )
        if new_rs is None:
            new_rs = self._new_replicaset(d, old_rs, max_revision + 1)
            if new_rs is None:
                return
            all_rs.append(new_rs)
            progress_note = (
                "NewReplicaSetCreated",
                f'Created new replica set "{new_rs["metadata"]["name"]}"',
            )
        elif int(new_rs["metadata"].get("annotations", {}).get(REVISION, 0)) <= max_revision:
            # An old ReplicaSet back in use (rollout undo): it takes the next revision and
            # remembers the ones it had, as the real controller's revision-history does.
            annotations = new_rs["metadata"].setdefault("annotations", {})
            old_revision = annotations.get(REVISION)
            if old_revision:
                history = [h for h in (annotations.get(REVISION_HISTORY) or "").split(",") if h]
                annotations[REVISION_HISTORY] = ",".join([*history, old_revision])
            annotations[REVISION] = str(max_revision + 1)
            new_rs = self.cluster.write(rs_rt, new_rs, manager=CONTROLLER)
            progress_note = (
                "FoundNewReplicaSet",
                f'Found new replica set "{new_rs["metadata"]["name"]}"',
            )
        revision = new_rs["metadata"].get("annotations", {}).get(REVISION)
        if revision and (meta.get("annotations") or {}).get(REVISION) != revision:
            d.setdefault("metadata", {}).setdefault("annotations", {})[REVISION] = revision
            d = self.cluster.write(rt, d, manager=CONTROLLER)
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            self._recreate(d, new_rs, old_rs, replicas)
        else:
            self._rolling(d, new_rs, old_rs, replicas, strategy.get("rollingUpdate") or {})
        self._cleanup(d, old_rs)
        refreshed = [clone(r) for r in self.cluster.store.items(rs_rt.key, ns) if owned_by(r, d)]
        new_now = next(
            (r for r in refreshed if r["metadata"]["uid"] == new_rs["metadata"]["uid"]), new_rs
        )
        self._deployment_status(rt, d, new_now, refreshed, previous_status, note=progress_note)

    def _new_replicaset(
        self, d: dict[str, Any], old_rs: list[dict[str, Any]], revision: int
    ) -> dict[str, Any] | None:
        spec = d["spec"]
        collisions = int((d.get("status") or {}).get("collisionCount", 0))
        pod_hash = template_hash(spec["template"], collisions)
        template = clone(spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = clone(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        replicas = int(spec.get("replicas", 1))
        strategy = spec.get("strategy") or {}
        surge = resolve((strategy.get("rollingUpdate") or {}).get("maxSurge"), replicas, True)
        if strategy.get("type") == "Recreate":
            initial = (
                0 if any(int(r["spec"].get("replicas", 0)) for r in old_rs) or old_rs else replicas
            )
        else:
            current = sum(int(r["spec"].get("replicas", 0)) for r in old_rs)
            initial = replicas if not old_rs else max(0, min(replicas, replicas + surge - current))
        name = f"{d['metadata']['name']}-{pod_hash}"
        rs: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d["metadata"]["namespace"],
                "labels": clone(template["metadata"]["labels"]),
                "annotations": {
                    DESIRED: str(replicas),
                    MAX_REPLICAS: str(replicas + surge),
                    REVISION: str(revision),
                },
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {"replicas": initial, "selector": selector, "template": template},
        }
        if d["spec"].get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = d["spec"]["minReadySeconds"]
        created = self.cluster.controller_create(self.rt("apps", "replicasets"), rs)
        if created is None:
            return None
        if initial:
            self.events.record(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {initial}",
                "deployment-controller",
            )
        return created

    def _scale(self, d: dict[str, Any], rs: dict[str, Any], replicas: int) -> dict[str, Any]:
        old = int(rs["spec"].get("replicas", 0))
        annotations = rs["metadata"].setdefault("annotations", {})
        total = int(d["spec"].get("replicas", 1))
        surge = resolve(
            ((d["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge"),
            total,
            True,
        )
        if old == replicas and annotations.get(DESIRED) == str(total):
            return rs
        rs["spec"]["replicas"] = replicas
        annotations[DESIRED] = str(total)
        annotations[MAX_REPLICAS] = str(total + surge)
        written = self.cluster.write(self.rt("apps", "replicasets"), rs, manager=CONTROLLER)
        if old != replicas:
            direction = "up" if replicas > old else "down"
            self.events.record(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} from {old} to {replicas}",
                "deployment-controller",
            )
        return written

    def _recreate(
        self, d: dict[str, Any], new_rs: dict[str, Any], old_rs: list[dict[str, Any]], replicas: int
    ) -> None:
        waiting = False
        for rs in old_rs:
            if int(rs["spec"].get("replicas", 0)) > 0:
                self._scale(d, rs, 0)
                waiting = True
        if waiting or any(self.pods_of(rs) for rs in old_rs):
            return
        self._scale(d, new_rs, replicas)

    def _rolling(
        self,
        d: dict[str, Any],
        new_rs: dict[str, Any],
        old_rs: list[dict[str, Any]],
        replicas: int,
        rolling: dict[str, Any],
    ) -> None:
        surge = resolve(rolling.get("maxSurge", "25%"), replicas, True)
        unavailable = resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        all_rs = [new_rs, *old_rs]
        # scale up the new ReplicaSet as far as maxSurge allows
        new_count = int(new_rs["spec"].get("replicas", 0))
        if new_count < replicas:
            current = sum(int(r["spec"].get("replicas", 0)) for r in all_rs)
            up = min(replicas + surge - current, replicas - new_count)
            if up > 0:
                new_rs = self._scale(d, new_rs, new_count + up)
        elif new_count > replicas:
            new_rs = self._scale(d, new_rs, replicas)
        # scale down old ReplicaSets as far as maxUnavailable allows
        old_count = sum(int(r["spec"].get("replicas", 0)) for r in old_rs)
        if old_count == 0:
            return
        all_rs = [new_rs, *old_rs]
        all_count = sum(int(r["spec"].get("replicas", 0)) for r in all_rs)
        min_available = replicas - unavailable
        new_status = new_rs.get("status") or {}
        new_unavailable = int(new_rs["spec"].get("replicas", 0)) - int(
            new_status.get("availableReplicas", 0)
        )
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return
        cleaned = 0
        for rs in old_rs:  # first the old ReplicaSets' unhealthy replicas
            if cleaned >= max_down:
                break
            count = int(rs["spec"].get("replicas", 0))
            healthy = int((rs.get("status") or {}).get("availableReplicas", 0))
            down = min(count - healthy, max_down - cleaned)
            if down > 0:
                self._scale(d, rs, count - down)
                rs["spec"]["replicas"] = count - down
                cleaned += down
        available = sum(int((r.get("status") or {}).get("availableReplicas", 0)) for r in all_rs)
        budget = min(available - min_available, max_down - cleaned)
        for rs in old_rs:  # oldest first
            if budget <= 0:
                break
            count = int(rs["spec"].get("replicas", 0))
            down = min(count, budget)
            if down > 0:
                self._scale(d, rs, count - down)
                budget -= down

    def _cleanup(self, d: dict[str, Any], old_rs: list[dict[str, Any]]) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        idle = [
            r
            for r in old_rs
            if not int(r["spec"].get("replicas", 0)) and not (r.get("status") or {}).get("replicas")
        ]
        idle.sort(key=lambda r: int(r["metadata"].get("annotations", {}).get(REVISION, 0)))
        for rs in idle[: max(0, len(idle) - limit)]:
            self._delete(self.rt("apps", "replicasets"), rs)

    def _deployment_status(
        self,
        rt: ResourceType,
        d: dict[str, Any],
        new_rs: dict[str, Any] | None,
        all_rs: list[dict[str, Any]],
        previous: dict[str, Any],
        paused: bool = False,
        note: tuple[str, str] | None = None,
    ) -> None:
        spec, uid = d["spec"], d["metadata"]["uid"]
        replicas = int(spec.get("replicas", 1))
        statuses = [r.get("status") or {} for r in all_rs]
        new_status = (new_rs or {}).get("status") or {}
        status: dict[str, Any] = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": sum(int(s.get("replicas", 0)) for s in statuses),
            "updatedReplicas": int(new_status.get("replicas", 0)),
            "readyReplicas": sum(int(s.get("readyReplicas", 0)) for s in statuses),
            "availableReplicas": sum(int(s.get("availableReplicas", 0)) for s in statuses),
        }
        total = sum(int(r["spec"].get("replicas", 0)) for r in all_rs)
        status["unavailableReplicas"] = max(total - status["availableReplicas"], 0)
        if previous.get("collisionCount"):
            status["collisionCount"] = previous["collisionCount"]
        status["conditions"] = clone(previous.get("conditions") or [])
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            max_unavailable = 0
        if status["availableReplicas"] >= replicas - max_unavailable:
            set_condition(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            set_condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        rs_name = (new_rs or {}).get("metadata", {}).get("name", "")
        progressing = condition(status, "Progressing")
        deadline = spec.get("progressDeadlineSeconds")
        if paused:
            set_condition(
                status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif progressing is not None and progressing.get("reason") == "DeploymentPaused":
            set_condition(
                status, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"
            )
            self._progress_at[uid] = time.monotonic()
        elif (
            status["updatedReplicas"] == replicas
            and status["replicas"] == replicas
            and status["availableReplicas"] == replicas
            and new_rs is not None
        ):
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
            self._progress_at[uid] = time.monotonic()
        elif note is not None:
            set_condition(status, "Progressing", "True", note[0], note[1])
            self._progress_at[uid] = time.monotonic()
        elif _made_progress(previous, status):
            message = f'ReplicaSet "{rs_name}" is progressing.'
            if progressing is None or progressing.get("status") != "True":
                set_condition(status, "Progressing", "True", "ReplicaSetUpdated", message)
            else:
                progressing.update(
                    reason="ReplicaSetUpdated", message=message, lastUpdateTime=now()
                )
            self._progress_at[uid] = time.monotonic()
        elif (
            deadline is not None
            and progressing is not None
            and progressing.get("reason") != "ProgressDeadlineExceeded"
        ):
            started = self._progress_at.setdefault(uid, time.monotonic())
            if time.monotonic() - started > float(deadline):
                set_condition(
                    status,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                )
        if progressing is None and condition(status, "Progressing") is None and new_rs is not None:
            set_condition(
                status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
            )
            self._progress_at[uid] = time.monotonic()
        failure = condition((new_rs or {}).get("status") or {}, "ReplicaFailure")
        if failure is not None:
            set_condition(status, "ReplicaFailure", "True", "FailedCreate", failure["message"])
        else:
            status["conditions"] = [
                c for c in status["conditions"] if c["type"] != "ReplicaFailure"
            ]
        order = {"Available": 0, "Progressing": 1}
        status["conditions"].sort(key=lambda c: order.get(c["type"], 2))
        for key in (
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "replicas",
            "updatedReplicas",
        ):
            if not status.get(key):
                status.pop(key, None)
        if status != previous:
            d["status"] = status
            self.cluster.write(rt, d, subresource="status", manager=CONTROLLER)

    # -- small controllers ------------------------------------------------------

    def sync_claims(self) -> None:
        rt = self.rt("", "persistentvolumeclaims")
        for claim in [clone(c) for c in self.cluster.store.items(rt.key)]:
            if (claim.get("status") or {}).get("phase") == "Bound" or claim["metadata"].get(
                "deletionTimestamp"
            ):
                continue
            if not self.after(claim["metadata"]["uid"], self.timings.pvc_bind):
                continue
            spec = claim["spec"]
            spec.setdefault("volumeName", f"pvc-{claim['metadata']['uid']}")
            spec.setdefault("storageClassName", DEFAULT_STORAGE_CLASS)
            claim = self.cluster.write(rt, claim, manager=CONTROLLER)
            self._provision(claim)
            claim["status"] = {
                "phase": "Bound",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {
                    "storage": ((spec.get("resources") or {}).get("requests") or {}).get(
                        "storage", "1Gi"
                    )
                },
            }
            annotations = claim["metadata"].setdefault("annotations", {})
            annotations["pv.kubernetes.io/bind-completed"] = "yes"
            self.cluster.write(rt, claim, subresource="status", manager=CONTROLLER)

    def _provision(self, claim: dict[str, Any]) -> None:
        """The PersistentVolume a dynamic provisioner would make for a claim, already Bound."""
        spec, meta = claim["spec"], claim["metadata"]
        rt = self.rt("", "persistentvolumes")
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": spec["volumeName"],
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                "finalizers": ["kubernetes.io/pv-protection"],
            },
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName", DEFAULT_STORAGE_CLASS),
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "apiVersion": "v1",
                },
                "csi": {"driver": PROVISIONER, "volumeHandle": f"sandbox/{spec['volumeName']}"},
            },
        }
        created = self.cluster.controller_create(rt, volume)
        if created is not None:
            created["status"] = {"phase": "Bound"}
            self.cluster.write(rt, created, subresource="status", manager=CONTROLLER)

    def sync_volumes(self) -> None:
        """Reclaim policy Delete: a volume whose claim is gone goes too."""
        rt = self.rt("", "persistentvolumes")
        claims = {
            c["metadata"]["uid"] for c in self.cluster.store.items(("", "persistentvolumeclaims"))
        }
        for volume in [clone(v) for v in self.cluster.store.items(rt.key)]:
            ref = (volume.get("spec") or {}).get("claimRef") or {}
            if not ref.get("uid") or ref["uid"] in claims:
                continue
            if volume["metadata"].get("deletionTimestamp"):
                self._drop_finalizer(rt, volume, "kubernetes.io/pv-protection")
            elif (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
                self.cluster.delete(rt, "", volume["metadata"]["name"])

    def sync_services(self) -> None:
        rt = self.rt("", "services")
        for svc in [clone(s) for s in self.cluster.store.items(rt.key)]:
            if (svc.get("spec") or {}).get("type") != "LoadBalancer":
                continue
            if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
                continue
            if not self.after(svc["metadata"]["uid"], self.timings.load_balancer):
                continue
            last = (sum(ord(ch) for ch in svc["metadata"]["uid"]) % 200) + 20
            svc["status"] = {
                "loadBalancer": {"ingress": [{"ip": f"127.0.0.{last}", "ipMode": "VIP"}]}
            }
            self.cluster.write(rt, svc, subresource="status", manager=CONTROLLER)
            self.events.record(
                svc, "Normal", "EnsuredLoadBalancer", "Ensured load balancer", "service-controller"
            )

    def sync_endpoints(self) -> None:
        sync_endpoints(self)

    def sync_cronjobs(self) -> None:
        sync_cronjobs(self)

    def sync_autoscalers(self) -> None:
        """HPAs clamp their target's replicas to [minReplicas, maxReplicas].

        There is no metrics server, so the wanted size is the current one, or
        the HPA annotation ``sandbox.gitops-steps.dev/replicas`` (tests use it to
        play a scale-up); either way clamped, as the real controller does.
        """
        rt = self.rt("autoscaling", "horizontalpodautoscalers", "v2")
        for hpa in [clone(h) for h in self.cluster.store.items(rt.key)]:
            meta, spec = hpa["metadata"], hpa.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}.get(
                ref.get("kind", "")
            )
            target_rt = self.cluster.registry.lookup("apps", "v1", plural or "")
            target = (
                self.cluster.store.get(target_rt.key, meta["namespace"], ref.get("name", ""))
                if target_rt is not None
                else None
            )
            status = clone(hpa.get("status") or {})
            status["observedGeneration"] = meta.get("generation", 1)
            previous = {c["type"]: c for c in status.get("conditions") or []}
            if target is None or target_rt is None:
                kept = previous.get("AbleToScale") or {}
                status["conditions"] = [
                    kept
                    if kept.get("reason") == "FailedGetScale"
                    else {
                        "type": "AbleToScale",
                        "status": "False",
                        "lastTransitionTime": now(),
                        "reason": "FailedGetScale",
                        "message": f"the HPA controller was unable to get the target's current "
                        f'scale: {plural or ref.get("kind")} "{ref.get("name")}" not found',
                    }
                ]
            else:
                current = int(target["spec"].get("replicas", 1))
                wanted = int((meta.get("annotations") or {}).get(HPA_REPLICAS, current))
                low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", current))
                desired = max(low, min(high, wanted))
                if desired != current:
                    scaled = clone(target)
                    scaled["spec"]["replicas"] = desired
                    self.cluster.write(target_rt, scaled, manager=CONTROLLER)
                    reason = (
                        "Current number of replicas below Spec.MinReplicas"
                        if desired == low and wanted < low
                        else "Current number of replicas above Spec.MaxReplicas"
                        if desired == high and wanted > high
                        else "All metrics below target"
                        if desired < current
                        else "cpu resource utilization (percentage of request) above target"
                    )
                    self.events.record(
                        hpa,
                        "Normal",
                        "SuccessfulRescale",
                        f"New size: {desired}; reason: {reason}",
                        "horizontal-pod-autoscaler",
                    )
                    status["lastScaleTime"] = now()
                status["currentReplicas"] = current
                status["desiredReplicas"] = desired
                status["conditions"] = [
                    previous["AbleToScale"]
                    if previous.get("AbleToScale", {}).get("reason") == "ReadyForNewScale"
                    else {
                        "type": "AbleToScale",
                        "status": "True",
                        "lastTransitionTime": now(),
                        "reason": "ReadyForNewScale",
                        "message": "recommended size matches current size",
                    },
                    previous.get("ScalingActive")
                    or {
                        "type": "ScalingActive",
                        "status": "False",
                        "lastTransitionTime": now(),
                        "reason": "FailedGetResourceMetric",
                        "message": "the HPA was unable to compute the replica count: no metrics "
                        "returned from resource metrics API",
                    },
                ]
            if status != (hpa.get("status") or {}):
                hpa["status"] = status
                self.cluster.write(rt, hpa, subresource="status", manager=CONTROLLER)

    def sync_disruption_budgets(self) -> None:
        """PDB status from the pods its selector matches, as the disruption controller keeps it."""
        rt = self.rt("policy", "poddisruptionbudgets")
        for pdb in [clone(p) for p in self.cluster.store.items(rt.key)]:
            meta, spec = pdb["metadata"], pdb.get("spec") or {}
            pods = [
                p
                for p in self.cluster.store.items(("", "pods"), meta["namespace"])
                if selector_matches(spec.get("selector"), p["metadata"].get("labels") or {})
                and not p["metadata"].get("deletionTimestamp")
            ]
            expected, healthy = len(pods), sum(1 for p in pods if self.pod_ready(p))
            if spec.get("minAvailable") is not None:
                desired = resolve(spec["minAvailable"], expected, True)
            else:
                desired = expected - resolve(spec.get("maxUnavailable", 0), expected, True)
            allowed = max(0, healthy - desired)
            previous = clone(pdb.get("status") or {})
            status: dict[str, Any] = {
                "observedGeneration": meta.get("generation", 1),
                "disruptionsAllowed": allowed,
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
                "conditions": clone(previous.get("conditions") or []),
            }
            reason = "SufficientPods" if allowed else "InsufficientPods"
            kept = condition(status, "DisruptionAllowed")
            if kept is None or kept.get("reason") != reason:
                status["conditions"] = [
                    {
                        "type": "DisruptionAllowed",
                        "status": "True" if allowed else "False",
                        "lastTransitionTime": now(),
                        "reason": reason,
                        "message": "",
                        "observedGeneration": meta.get("generation", 1),
                    }
                ]
            if status != previous:
                pdb["status"] = status
                self.cluster.write(rt, pdb, subresource="status", manager=CONTROLLER)

    def sync_crds(self) -> None:
        sync_crds(self)


def _same_template(rs_template: dict[str, Any], template: dict[str, Any]) -> bool:
    """The deployment controller's EqualIgnoreHash: equal but for pod-template-hash."""
    a = clone(rs_template)
    labels = (a.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return bool(semantic(a) == semantic(template))


def _made_progress(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def get(s: dict[str, Any], key: str) -> int:
        return int(s.get(key, 0))

    return (
        get(new, "updatedReplicas") > get(old, "updatedReplicas")
        or get(new, "readyReplicas") > get(old, "readyReplicas")
        or get(new, "availableReplicas") > get(old, "availableReplicas")
        or get(new, "replicas") - get(new, "updatedReplicas")
        < get(old, "replicas") - get(old, "updatedReplicas")
    )
