"""The emulator's controllers: rolling updates, conditions, StatefulSets, DaemonSets, Jobs, CRDs.

Rollout invariants are checked on samples of the store taken while the
rollout runs, so they hold at every moment, not just at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from test_kube_emulator import deployment, wait_rolled_out

from steps.sandbox.kube import BEHAVIOR, KubeEmulator, Timings

Sample = list[dict[str, Any]]


class Sampler:
    """Copies the pods of a namespace on every loop until stopped."""

    def __init__(self, kube: KubeEmulator, plural: str = "pods") -> None:
        self.kube = kube
        self.plural = plural
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.samples.append(self.kube.objects(self.plural, "default"))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def live(pods: Sample) -> Sample:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = obj.get("status", {}).get("conditions") or []
    found: dict[str, Any] = next((c for c in conditions if c["type"] == type_), {})
    return found


def get(kube: KubeEmulator, plural: str, name: str) -> dict[str, Any] | None:
    return next((o for o in kube.objects(plural, "default") if o["metadata"]["name"] == name), None)


def new_image(apps: client.AppsV1Api, image: str, name: str = "web") -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps.patch_namespaced_deployment(name, "default", patch)


# -- Deployments ------------------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (0, 2), ("50%", "25%")])
def test_rolling_update_stays_within_max_surge_and_max_unavailable(
    kube: KubeEmulator, kube_api: Any, surge: Any, unavailable: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    strategy = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }
    apps.create_namespaced_deployment("default", deployment(replicas=4, strategy=strategy))
    wait_rolled_out(kube)
    top = 4 + {1: 1, 0: 0, "50%": 2}[surge]
    bottom = 4 - {0: 0, 2: 2, "25%": 1}[unavailable]
    with Sampler(kube) as sampler:
        new_image(apps, "nginx:1.26")
        wait_rolled_out(kube)
        kube.wait_for(lambda: len(kube.objects("pods", "default")) == 4)
    assert len(sampler.samples) > 10
    for pods in sampler.samples:
        running = live(pods)
        assert len(running) <= top
        assert sum(1 for p in running if ready(p)) >= bottom
    hashes = {
        p["metadata"]["labels"]["pod-template-hash"] for pods in sampler.samples for p in pods
    }
    assert len(hashes) == 2


def test_recreate_removes_every_old_pod_before_starting_new_ones(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment(strategy={"type": "Recreate"}))
    wait_rolled_out(kube)
    with Sampler(kube) as sampler:
        new_image(apps, "nginx:1.26")
        wait_rolled_out(kube)
    for pods in sampler.samples:
        assert len({p["metadata"]["labels"]["pod-template-hash"] for p in pods}) <= 1


def test_paused_deployment_waits_and_resumes(kube: KubeEmulator, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment(replicas=2))
    wait_rolled_out(kube)
    apps.patch_namespaced_deployment("web", "default", {"spec": {"paused": True}})
    new_image(apps, "nginx:1.26")
    paused = kube.wait_for(
        lambda: (
            (d := get(kube, "deployments", "web"))
            and condition(d, "Progressing").get("reason") == "DeploymentPaused"
            and d
        )
    )
    assert condition(paused, "Progressing")["status"] == "Unknown"
    assert len(kube.objects("replicasets", "default")) == 1
    apps.patch_namespaced_deployment("web", "default", {"spec": {"paused": False}})
    resumed = wait_rolled_out(kube)
    assert condition(resumed, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert len(kube.objects("replicasets", "default")) == 2


def test_progress_deadline_exceeded_when_new_pods_never_become_ready(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    body = deployment(replicas=2, progressDeadlineSeconds=1)
    body["spec"]["template"]["metadata"]["annotations"] = {BEHAVIOR: "never-ready"}
    apps.create_namespaced_deployment("default", body)
    stuck = kube.wait_for(
        lambda: (
            (d := get(kube, "deployments", "web"))
            and condition(d, "Progressing").get("reason") == "ProgressDeadlineExceeded"
            and d
        )
    )
    progressing = condition(stuck, "Progressing")
    assert progressing["status"] == "False"
    assert progressing["message"].endswith("has timed out progressing.")
    assert condition(stuck, "Available")["status"] == "False"
    assert stuck["status"]["unavailableReplicas"] == 2


def test_min_ready_seconds_delays_availability(kube: KubeEmulator, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    with Sampler(kube, "deployments") as sampler:
        apps.create_namespaced_deployment("default", deployment(replicas=2, minReadySeconds=1))
        wait_rolled_out(kube)
    statuses = [d[0].get("status", {}) for d in sampler.samples if d]
    assert any(s.get("readyReplicas") == 2 and not s.get("availableReplicas") for s in statuses)


def test_observed_generation_lags_when_asked_to(kube_factory: Callable[..., KubeEmulator]) -> None:
    kube = kube_factory(timings=Timings.fast().but(observe_lag=0.3))
    apps = client.AppsV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    apps.create_namespaced_deployment("default", deployment(replicas=1))
    wait_rolled_out(kube)
    with Sampler(kube, "deployments") as sampler:
        new_image(apps, "nginx:1.26")
        wait_rolled_out(kube)
    lagging = [
        d[0]
        for d in sampler.samples
        if d and d[0]["status"]["observedGeneration"] < d[0]["metadata"]["generation"]
    ]
    assert len(lagging) > 5
    assert (
        condition(lagging[0], "Progressing")["reason"] == "NewReplicaSetAvailable"
    )  # the stale one


def test_foreground_deletion_keeps_the_owner_until_dependents_are_gone(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment(replicas=2))
    wait_rolled_out(kube)
    apps.delete_namespaced_deployment("web", "default", propagation_policy="Foreground")
    going = get(kube, "deployments", "web")
    assert going is not None and "foregroundDeletion" in going["metadata"]["finalizers"]
    kube.wait_for(lambda: get(kube, "deployments", "web") is None)
    assert kube.objects("replicasets", "default") == [] and kube.objects("pods", "default") == []


def test_orphan_deletion_keeps_the_replicaset(kube: KubeEmulator, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment(replicas=1))
    wait_rolled_out(kube)
    apps.delete_namespaced_deployment("web", "default", propagation_policy="Orphan")
    kube.wait_for(lambda: get(kube, "deployments", "web") is None)
    (rs,) = kube.objects("replicasets", "default")
    assert not rs["metadata"].get("ownerReferences")


# -- StatefulSets -------------------------------------------------------------------------


def statefulset(image: str = "redis:7", replicas: int = 3, **strategy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
            **({"updateStrategy": strategy} if strategy else {}),
        },
    }


def sts_settled(kube: KubeEmulator, updated: int | None = None) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        sts = get(kube, "statefulsets", "db")
        if sts is None:
            return None
        s = sts.get("status", {})
        want = sts["spec"]["replicas"]
        if (
            s.get("observedGeneration") != sts["metadata"]["generation"]
            or s.get("readyReplicas") != want
        ):
            return None
        if s.get("updatedReplicas", 0) != (want if updated is None else updated):
            return None
        return sts

    result: dict[str, Any] = kube.wait_for(done)
    return result


def test_statefulset_orders_pods_claims_volumes_and_honours_partition(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    with Sampler(kube) as sampler:
        apps.create_namespaced_stateful_set("default", statefulset())
        first = sts_settled(kube)
    for pods in sampler.samples:  # db-N exists only once db-(N-1) is ready
        names = {p["metadata"]["name"]: p for p in pods}
        for n in (1, 2):
            if f"db-{n}" in names:
                assert ready(names[f"db-{n - 1}"])
    status = first["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert status["currentReplicas"] == 3
    claims = kube.wait_for(
        lambda: [
            c
            for c in kube.objects("persistentvolumeclaims", "default")
            if c["status"]["phase"] == "Bound"
        ]
    )
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-db-0", "data-db-1", "data-db-2"]
    patch = {
        "spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "db", "image": "redis:8"}]}},
        }
    }
    apps.patch_namespaced_stateful_set("db", "default", patch)
    partial = sts_settled(kube, updated=1)
    status = partial["status"]
    assert status["currentRevision"] != status["updateRevision"]
    assert (status["currentReplicas"], status["updatedReplicas"]) == (2, 1)
    images = {
        p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
        for p in kube.objects("pods", "default")
    }
    assert images == {"db-0": "redis:7", "db-1": "redis:7", "db-2": "redis:8"}
    revisions = kube.objects("controllerrevisions", "default")
    assert status["updateRevision"] in {r["metadata"]["name"] for r in revisions}


def test_statefulset_on_delete_updates_only_deleted_pods(kube: KubeEmulator, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_stateful_set("default", statefulset(replicas=2, type="OnDelete"))
    sts_settled(kube)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "redis:8"}]}}}}
    apps.patch_namespaced_stateful_set("db", "default", patch)
    waiting = sts_settled(kube, updated=0)
    assert waiting["status"]["updateRevision"] != waiting["status"]["currentRevision"]
    client.CoreV1Api(apps.api_client).delete_namespaced_pod("db-0", "default")
    after = sts_settled(kube, updated=1)
    assert get(kube, "pods", "db-0")["spec"]["containers"][0]["image"] == "redis:8"  # type: ignore[index]
    assert after["status"]["currentRevision"] != after["status"]["updateRevision"]


# -- DaemonSets, Jobs, claims, services, CRDs ------------------------------------------------


def daemonset(image: str = "fluentd:1", **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": image}], **pod_spec},
            },
        },
    }


def ds_settled(kube: KubeEmulator) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        ds = get(kube, "daemonsets", "agent")
        s = (ds or {}).get("status", {})
        if ds is None or s.get("observedGeneration") != ds["metadata"]["generation"]:
            return None
        desired = s.get("desiredNumberScheduled", -1)
        if s.get("updatedNumberScheduled", 0) == desired and s.get("numberAvailable", 0) == desired:
            return ds
        return None

    result: dict[str, Any] = kube.wait_for(done)
    return result


def test_daemonset_runs_one_pod_per_node_and_rolls_them(kube: KubeEmulator, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_daemon_set("default", daemonset())
    first = ds_settled(kube)
    assert first["status"]["desiredNumberScheduled"] == 3
    nodes = sorted(p["spec"]["nodeName"] for p in kube.objects("pods", "default"))
    assert nodes == ["node-1", "node-2", "node-3"]
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "fluentd:2"}]}}}
    }
    apps.patch_namespaced_daemon_set("agent", "default", patch)
    second = ds_settled(kube)
    assert second["status"]["numberAvailable"] == 3 and not second["status"].get(
        "numberUnavailable"
    )
    kube.wait_for(lambda: len(kube.objects("pods", "default")) == 3)
    assert {p["spec"]["containers"][0]["image"] for p in kube.objects("pods", "default")} == {
        "fluentd:2"
    }


def test_daemonset_with_no_matching_node_schedules_nothing(
    kube: KubeEmulator, kube_api: Any
) -> None:
    client.AppsV1Api(kube_api).create_namespaced_daemon_set(
        "default", daemonset(node_selector={"gpu": "yes"})
    )
    ds = kube.wait_for(lambda: (d := get(kube, "daemonsets", "agent")) and d.get("status") and d)
    assert (
        ds["status"]["desiredNumberScheduled"] == 0 and ds["status"]["currentNumberScheduled"] == 0
    )


def job(name: str, behavior: str | None = None, backoff: int = 6) -> dict[str, Any]:
    annotations = {BEHAVIOR: behavior} if behavior else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "task", "image": "busybox:1"}],
                },
            },
        },
    }


def test_jobs_complete_or_fail_after_their_backoff_limit(kube: KubeEmulator, kube_api: Any) -> None:
    batch = client.BatchV1Api(kube_api)
    batch.create_namespaced_job("default", job("ok"))
    batch.create_namespaced_job("default", job("bad", "crash", backoff=1))

    def finished(name: str) -> dict[str, Any] | None:
        found = get(kube, "jobs", name)
        types = {c["type"] for c in (found or {}).get("status", {}).get("conditions") or []}
        return found if types & {"Complete", "Failed"} else None

    ok = kube.wait_for(lambda: finished("ok"))
    assert condition(ok, "Complete")["status"] == "True" and ok["status"]["succeeded"] == 1
    bad = kube.wait_for(lambda: finished("bad"))
    assert condition(bad, "Failed")["reason"] == "BackoffLimitExceeded"
    assert bad["status"]["failed"] == 2
    with pytest.raises(ApiException) as invalid:
        body = job("always")
        body["spec"]["template"]["spec"]["restartPolicy"] = "Always"
        batch.create_namespaced_job("default", body)
    assert invalid.value.status == 422


def test_claims_bind_and_load_balancers_get_an_address(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "2Gi"}},
            },
        },
    )
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    assert core.read_namespaced_service("web", "default").spec.cluster_ip.startswith("10.96.")
    claim = kube.wait_for(
        lambda: (
            (c := get(kube, "persistentvolumeclaims", "data"))
            and c["status"]["phase"] == "Bound"
            and c
        )
    )
    assert claim["status"]["capacity"] == {"storage": "2Gi"}
    service = kube.wait_for(
        lambda: (
            (s := get(kube, "services", "web")) and s["status"]["loadBalancer"].get("ingress") and s
        )
    )
    assert service["status"]["loadBalancer"]["ingress"][0]["ip"].startswith("127.0.0.")


def test_crd_becomes_established_and_its_resources_are_served(
    kube: KubeEmulator, kube_api: Any
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    dynamic = DynamicClient(kube_api)
    crds = dynamic.resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    crds.server_side_apply(body=crd, field_manager="test")
    established = kube.wait_for(
        lambda: (
            (c := kube.objects("customresourcedefinitions"))
            and condition(c[0], "Established").get("status") == "True"
        )
    )
    assert established
    widgets = dynamic.resources.get(api_version="example.com/v1", kind="Widget")  # rediscovers
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 3},
    }
    created = widgets.server_side_apply(body=widget, namespace="default", field_manager="test")
    assert created.metadata.generation == 1 and created.spec.size == 3
    wrong = {**widget, "spec": {"size": 3, "colour": "red"}}
    with pytest.raises(ApiException) as strict:
        widgets.server_side_apply(
            body=wrong,
            namespace="default",
            field_manager="test",
            query_params=[("fieldValidation", "Strict")],
        )
    assert strict.value.status == 400 and ".spec.colour" in strict.value.body
    listed = widgets.get(namespace="default")
    assert [i.metadata.name for i in listed.items] == ["w"] and listed.items[0].kind == "Widget"
    crds.delete(name="widgets.example.com")
    kube.wait_for(lambda: not kube.objects("customresourcedefinitions"))
    assert kube.objects("widgets.example.com") == []
    groups = {g.name for g in client.ApisApi(kube_api).get_api_versions().groups}
    assert "example.com" not in groups


def test_replicaset_reports_failed_create_for_a_missing_service_account(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    body = deployment(replicas=1)
    body["spec"]["template"]["spec"]["serviceAccountName"] = "deployer"
    apps.create_namespaced_deployment("default", body)

    def failing() -> dict[str, Any] | None:
        d = get(kube, "deployments", "web")
        return d if d and condition(d, "ReplicaFailure").get("reason") == "FailedCreate" else None

    failed = kube.wait_for(failing)
    assert 'serviceaccount "deployer" not found' in condition(failed, "ReplicaFailure")["message"]
    events = [e for e in kube.objects("events", "default") if e["reason"] == "FailedCreate"]
    assert (
        events
        and events[0]["involvedObject"]["kind"] == "ReplicaSet"
        and events[0]["type"] == "Warning"
    )
    client.CoreV1Api(kube_api).create_namespaced_service_account(
        "default", {"metadata": {"name": "deployer"}}
    )
    done = wait_rolled_out(kube)
    assert not condition(done, "ReplicaFailure")
    assert done["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


def test_job_past_its_active_deadline_fails(kube: KubeEmulator, kube_api: Any) -> None:
    body = job("slow", "unschedulable")
    body["spec"]["activeDeadlineSeconds"] = 1
    client.BatchV1Api(kube_api).create_namespaced_job("default", body)
    failed = kube.wait_for(
        lambda: (
            (j := get(kube, "jobs", "slow"))
            and condition(j, "Failed").get("reason") == "DeadlineExceeded"
            and j
        )
    )
    assert condition(failed, "Failed")["message"] == "Job was active longer than specified deadline"
    kube.wait_for(lambda: not kube.objects("pods", "default"))


def test_hpa_clamps_and_changes_the_live_replicas(kube: KubeEmulator, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment(replicas=1))
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 4,
        },
    }
    autoscaling = client.AutoscalingV2Api(kube_api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler("default", hpa)
    kube.wait_for(lambda: (d := get(kube, "deployments", "web")) and d["spec"]["replicas"] == 2)
    scaled = wait_rolled_out(kube)
    assert scaled["metadata"]["generation"] == 2
    managers = {m["manager"] for m in scaled["metadata"]["managedFields"]}
    # The HPA controller runs inside kube-controller-manager, whose name managedFields show.
    assert "kube-controller-manager" in managers
    autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        "web", "default", {"metadata": {"annotations": {"sandbox.gitops-steps.dev/replicas": "9"}}}
    )
    kube.wait_for(lambda: (d := get(kube, "deployments", "web")) and d["spec"]["replicas"] == 4)
    status = kube.wait_for(
        lambda: (
            (h := get(kube, "horizontalpodautoscalers", "web"))
            and h["status"].get("desiredReplicas") == 4
            and h["status"]
        )
    )
    assert condition({"status": status}, "ScalingActive")["reason"] == "FailedGetResourceMetric"
    assert any(e["reason"] == "SuccessfulRescale" for e in kube.objects("events", "default"))


def test_the_controller_loop_keeps_its_rate_whatever_a_pass_costs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Passes start a tick apart (work inside the tick is not added to it), and an
    overrun pass is followed by a whole tick's rest rather than an at-once pass.

    A fake clock: each pass costs what ``costs`` says, each wait advances the
    clock by what it was asked. A loop that slept a whole tick after every pass
    (the old one) asks for 30 ms each time and fails.
    """
    import steps.sandbox.kube as emulator_module

    clock = [100.0]
    costs = iter([0.004, 0.010, 0.045, 0.004, 0.004])
    waits: list[float] = []

    class FakeTime:
        @staticmethod
        def monotonic() -> float:
            return clock[0]

    class FakeStop:
        def wait(self, seconds: float) -> bool:
            waits.append(round(seconds, 6))
            clock[0] += seconds
            return len(waits) > 5

    def a_pass() -> None:
        clock[0] += next(costs)

    kube = KubeEmulator(timings=Timings(tick=0.03))
    monkeypatch.setattr(emulator_module, "time", FakeTime)
    monkeypatch.setattr(kube, "_stopping", FakeStop())
    monkeypatch.setattr(kube.kubelet, "tick", a_pass)
    monkeypatch.setattr(kube.controllers, "tick", lambda: None)
    kube._loop()
    # 30 ms, then 30 ms less each pass's cost; the 45 ms pass overran: a full tick.
    assert waits == [0.03, 0.026, 0.02, 0.03, 0.026, 0.026]
