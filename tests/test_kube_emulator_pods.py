"""The emulator's fake kubelet and faults, seen through the official client.

Each behaviour annotation must look, in pod status, events and logs, the way
the real failure looks, since verify-rollout recognises failures from those.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from fixtures_registry import ImagePusher
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from steps.sandbox.kube import BEHAVIOR, KubeEmulator
from steps.sandbox.registry import LocalRegistry


def pod(
    name: str, behavior: str | None = None, image: str = "nginx:1.25", **spec: Any
) -> dict[str, Any]:
    annotations = {BEHAVIOR: behavior} if behavior else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": image}], **spec},
    }


def live_pod(kube: KubeEmulator, name: str) -> dict[str, Any] | None:
    return next((p for p in kube.objects("pods", "default") if p["metadata"]["name"] == name), None)


def wait_pod(
    kube: KubeEmulator, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        current = live_pod(kube, name)
        return current if current is not None and check(current) else None

    result: dict[str, Any] = kube.wait_for(found, timeout)
    return result


def container(p: dict[str, Any]) -> dict[str, Any]:
    statuses = p.get("status", {}).get("containerStatuses") or [{}]
    first: dict[str, Any] = statuses[0]
    return first


def waiting_reason(p: dict[str, Any]) -> str | None:
    reason: str | None = container(p).get("state", {}).get("waiting", {}).get("reason")
    return reason


def conditions(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in p.get("status", {}).get("conditions") or []}


def event_reasons(kube: KubeEmulator, name: str) -> set[str]:
    return {
        e["reason"]
        for e in kube.objects("events", "default")
        if e["involvedObject"]["name"] == name
    }


def test_healthy_pod_is_scheduled_started_and_ready_with_events(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("ok"))
    ready = wait_pod(kube, "ok", lambda p: conditions(p).get("Ready", {}).get("status") == "True")
    assert ready["status"]["phase"] == "Running"
    assert ready["spec"]["nodeName"] in ("node-1", "node-2", "node-3")
    assert set(conditions(ready)) >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    state = container(ready)
    assert state["ready"] is True and state["started"] is True and state["restartCount"] == 0
    assert "running" in state["state"] and state["containerID"].startswith("containerd://")
    assert {"Scheduled", "Pulling", "Pulled", "Created", "Started"} <= event_reasons(kube, "ok")
    events = core.list_namespaced_event(
        "default", field_selector="involvedObject.name=ok,reason=Scheduled"
    )
    (scheduled,) = events.items
    assert (
        scheduled.involved_object.kind == "Pod"
        and scheduled.source.component == "default-scheduler"
    )
    log = core.read_namespaced_pod_log("ok", "default", container="app", tail_lines=2)
    assert "ready to serve requests" in log and len(log.splitlines()) == 2


def test_crash_loops_with_climbing_restarts_and_crash_logs(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("crash", "crash"))
    looping = wait_pod(
        kube,
        "crash",
        lambda p: (
            container(p).get("restartCount", 0) >= 2 and waiting_reason(p) == "CrashLoopBackOff"
        ),
    )
    state = container(looping)
    assert state["ready"] is False
    assert state["lastState"]["terminated"]["exitCode"] == 1
    assert state["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off" in state["state"]["waiting"]["message"]
    assert looping["status"]["phase"] == "Running"
    assert conditions(looping)["Ready"]["status"] == "False"
    assert "BackOff" in event_reasons(kube, "crash")
    log = core.read_namespaced_pod_log("crash", "default", container="app", previous=True)
    assert "panic:" in log


def test_oom_kills_with_exit_137(kube: KubeEmulator) -> None:
    kube_api = config.new_client_from_config(str(kube.kubeconfig))
    client.CoreV1Api(kube_api).create_namespaced_pod("default", pod("oom", "oom"))
    killed = wait_pod(kube, "oom", lambda p: container(p).get("restartCount", 0) >= 1)
    last = container(killed)["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)


def test_never_ready_and_slow_start(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("never", "never-ready"))
    core.create_namespaced_pod("default", pod("slow", "slow-start"))
    running = wait_pod(kube, "never", lambda p: "Unhealthy" in event_reasons(kube, "never"))
    assert container(running)["started"] is True and container(running)["ready"] is False
    assert conditions(running)["Ready"]["reason"] == "ContainersNotReady"
    slow = wait_pod(kube, "slow", lambda p: container(p).get("started") is True)
    assert container(slow)["ready"] is False  # started, not yet ready
    wait_pod(kube, "slow", lambda p: container(p).get("ready") is True)
    assert container(live_pod(kube, "never") or {})["ready"] is False


def test_unschedulable_stays_pending_with_failed_scheduling(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("stuck", "unschedulable"))
    core.create_namespaced_pod("default", pod("nowhere", node_selector={"disk": "ssd"}))
    for name in ("stuck", "nowhere"):
        pending = wait_pod(kube, name, lambda p: "PodScheduled" in conditions(p))
        scheduled = conditions(pending)["PodScheduled"]
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert scheduled["message"].startswith("0/3 nodes are available")
        assert pending["status"]["phase"] == "Pending" and "nodeName" not in pending["spec"]
        assert "FailedScheduling" in event_reasons(kube, name)


def test_deleted_pods_terminate_gracefully(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("bye"))
    wait_pod(kube, "bye", lambda p: container(p).get("ready") is True)
    answer = json.loads(core.delete_namespaced_pod("bye", "default", _preload_content=False).data)
    assert answer["metadata"]["deletionTimestamp"]
    kube.wait_for(lambda: live_pod(kube, "bye") is None)
    assert "Killing" in event_reasons(kube, "bye")


def test_image_missing_from_the_registry_backs_off(
    kube_factory: Callable[..., KubeEmulator], registry: LocalRegistry, images: ImagePusher
) -> None:
    kube = kube_factory(registry=registry.address)
    images.push("web", "1")
    core = client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    core.create_namespaced_pod("default", pod("present", image=f"{images.repository('web')}:1"))
    core.create_namespaced_pod("default", pod("absent", image=f"{images.repository('web')}:2"))
    core.create_namespaced_pod("default", pod("elsewhere", image="example.com/not/there:9"))
    seen: set[str] = set()

    def backed_off(p: dict[str, Any]) -> bool:
        seen.add(waiting_reason(p) or "")
        return waiting_reason(p) == "ImagePullBackOff"

    absent = wait_pod(kube, "absent", backed_off)
    assert "not found" in " ".join(
        e["message"] for e in kube.objects("events", "default") if e["reason"] == "Failed"
    )
    assert absent["status"]["phase"] == "Pending"
    assert container(absent)["ready"] is False
    wait_pod(kube, "absent", lambda p: waiting_reason(p) == "ErrImagePull")  # it retries
    for name in ("present", "elsewhere"):
        ok = wait_pod(kube, name, lambda p: container(p).get("ready") is True)
        assert ok["status"]["phase"] == "Running"
    digest = images.push("web", "2")
    pulled = wait_pod(kube, "absent", lambda p: container(p).get("ready") is True)
    assert container(pulled)["imageID"].endswith(digest)


def test_logs_of_a_container_that_never_started_are_a_400(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("stuck", "unschedulable"))
    with pytest.raises(ApiException) as waiting:
        core.read_namespaced_pod_log("stuck", "default", container="app")
    assert (
        waiting.value.status == 400
        and "is waiting to start" in json.loads(waiting.value.body)["message"]
    )


# -- faults ---------------------------------------------------------------------------


def test_injected_500_and_429_with_retry_after(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    kube.faults.fail(r"/api/v1/namespaces/default/configmaps", status=500, count=1, method="GET")
    kube.faults.fail(r"/configmaps", status=429, count=1, retry_after=3)
    with pytest.raises(ApiException) as failed:
        core.list_namespaced_config_map("default")
    assert failed.value.status == 500 and json.loads(failed.value.body)["reason"] == "InternalError"
    raw = urllib3.PoolManager(retries=False)
    throttled = raw.request("GET", kube.url + "/api/v1/namespaces/default/configmaps")
    assert throttled.status == 429 and throttled.headers["Retry-After"] == "3"
    assert json.loads(throttled.data)["details"]["retryAfterSeconds"] == 3
    # urllib3 under the official client honours Retry-After on 429 by itself
    kube.faults.fail(r"/configmaps", status=429, count=1, retry_after=1)
    core.list_namespaced_config_map("default")
    assert kube.faults.injected == 3


def test_failing_watch_requests_by_pattern(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    kube.faults.fail("watch=true", status=500, count=1)
    core.list_namespaced_config_map("default")  # not a watch: untouched
    with pytest.raises(ApiException) as failed:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", timeout_seconds=1
        ):
            pass
    assert failed.value.status == 500


def test_dropped_watch_is_cut_mid_stream(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    version = core.list_namespaced_config_map("default").metadata.resource_version

    def drop_soon() -> None:
        time.sleep(0.2)
        kube.faults.drop_watches(1)

    threading.Thread(target=drop_soon).start()
    response = core.list_namespaced_config_map(
        "default", watch=True, resource_version=version, timeout_seconds=5, _preload_content=False
    )
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for _ in response.stream():
            pass
    assert kube.faults.injected == 1


def test_latency_and_the_control_endpoint(kube: KubeEmulator, kube_api: Any) -> None:
    http = urllib3.PoolManager()
    spec = {"fail": {"path_pattern": "/api/v1/nodes", "status": 503, "count": 1}}
    armed = http.request("POST", kube.url + "/_sandbox/faults", body=json.dumps(spec).encode())
    assert armed.status == 200
    with pytest.raises(ApiException) as unavailable:
        client.CoreV1Api(kube_api).list_node()
    assert unavailable.value.status == 503
    kube.faults.latency(0.2, path_pattern="/api/v1/nodes")
    started = time.monotonic()
    client.CoreV1Api(kube_api).list_node()
    assert time.monotonic() - started >= 0.2
    assert http.request("DELETE", kube.url + "/_sandbox/faults").status == 200
    w = watch.Watch()
    for _ in w.stream(client.CoreV1Api(kube_api).list_node, timeout_seconds=1):
        w.stop()


def test_missing_config_references_block_containers(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    env_pod = pod("env")
    env_pod["spec"]["containers"][0]["env"] = [
        {"name": "URL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "url"}}}
    ]
    core.create_namespaced_pod("default", env_pod)
    mount_pod = pod("mount")
    mount_pod["spec"]["volumes"] = [{"name": "creds", "secret": {"secretName": "creds"}}]
    core.create_namespaced_pod("default", mount_pod)
    blocked = wait_pod(kube, "env", lambda p: waiting_reason(p) == "CreateContainerConfigError")
    assert container(blocked)["state"]["waiting"]["message"] == 'configmap "settings" not found'
    kube.wait_for(lambda: "FailedMount" in event_reasons(kube, "mount"))
    mounting = live_pod(kube, "mount") or {}
    assert (
        mounting["status"]["phase"] == "Pending" and waiting_reason(mounting) == "ContainerCreating"
    )
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "settings"}, "data": {"url": "x"}}
    )
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "creds"}, "stringData": {"k": "v"}}
    )
    for name in ("env", "mount"):
        wait_pod(kube, name, lambda p: container(p).get("ready") is True)


def test_a_behaviour_can_target_one_container(kube: KubeEmulator, kube_api: Any) -> None:
    two = pod("two")
    two["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    two["metadata"]["annotations"] = {f"{BEHAVIOR}.sidecar": "crash"}
    client.CoreV1Api(kube_api).create_namespaced_pod("default", two)

    def statuses(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in p["status"].get("containerStatuses") or []}

    looping = wait_pod(
        kube, "two", lambda p: statuses(p).get("sidecar", {}).get("restartCount", 0) >= 1
    )
    wait_pod(kube, "two", lambda p: statuses(p)["app"]["ready"] is True)
    assert statuses(looping)["app"]["restartCount"] == 0
    assert conditions(live_pod(kube, "two") or {})["Ready"]["status"] == "False"


def test_runtime_errors_look_like_the_runtime_reports_them(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod("default", pod("norun", "run-error"))
    core.create_namespaced_pod("default", pod("nocreate", "create-error"))
    seen: set[str] = set()

    def cycled(p: dict[str, Any]) -> bool:
        seen.add(waiting_reason(p) or "")
        return (
            container(p).get("restartCount", 0) >= 2
            and {"RunContainerError", "CrashLoopBackOff"} <= seen
        )

    norun = wait_pod(kube, "norun", cycled)
    last = container(norun)["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("StartError", 128)
    assert norun["status"]["phase"] == "Running"
    nocreate = wait_pod(kube, "nocreate", lambda p: waiting_reason(p) == "CreateContainerError")
    assert nocreate["status"]["phase"] == "Pending" and container(nocreate)["restartCount"] == 0
