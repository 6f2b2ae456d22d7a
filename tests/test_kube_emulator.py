"""The Kubernetes API emulator through the official client: discovery, CRUD, apply, watch.

Everything goes over real HTTP with a kubeconfig, as ``gitops-verify-rollout``
will, so these tests pin the API semantics the stage depends on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from steps.sandbox.kube import KubeEmulator


def deployment(
    name: str = "web", image: str = "nginx:1.25", replicas: int = 3, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
    body["spec"].update(spec)
    return body


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def wait_rolled_out(kube: KubeEmulator, name: str = "web", timeout: float = 10.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        for d in kube.objects("deployments", "default"):
            if d["metadata"]["name"] != name:
                continue
            s, want = d.get("status") or {}, d["spec"]["replicas"]
            if (
                s.get("observedGeneration") == d["metadata"]["generation"]
                and s.get("updatedReplicas", 0) == want
                and s.get("replicas", 0) == want
                and s.get("availableReplicas", 0) == want
            ):
                return d
        return None

    result: dict[str, Any] = kube.wait_for(done, timeout)
    return result


# -- kubeconfig and discovery ---------------------------------------------------


def test_kubeconfig_names_the_sandbox_context_and_the_loopback_server(kube: KubeEmulator) -> None:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    assert config["current-context"] == "sandbox"
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert kube.url.startswith("http://127.0.0.1:")
    assert config["users"][0]["user"] == {}


def test_discovery_lists_every_kind_the_stage_uses(kube_api: Any) -> None:
    assert client.CoreApi(kube_api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(kube_api).get_api_versions().groups}
    assert {
        "apps",
        "batch",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "networking.k8s.io",
    } <= groups
    assert client.VersionApi(kube_api).get_code().major == "1"
    dynamic = DynamicClient(kube_api)
    for api_version, kind in [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("v1", "Pod"),
        ("v1", "Event"),
        ("v1", "ServiceAccount"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Node"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("coordination.k8s.io/v1", "Lease"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("v1", "PersistentVolume"),
        ("storage.k8s.io/v1", "StorageClass"),
    ]:
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        assert resource.kind == kind
    nodes = client.CoreV1Api(kube_api).list_node().items
    assert [n.metadata.name for n in nodes] == ["node-1", "node-2", "node-3"]


# -- create, get, replace, delete -----------------------------------------------


def test_crud_with_resource_versions_and_status_errors(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    body = {"metadata": {"name": "settings"}, "data": {"a": "1"}}
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("default", body)
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"
    stale = core.read_namespaced_config_map("settings", "default")
    created.data = {"a": "2"}
    updated = core.replace_namespaced_config_map("settings", "default", created)
    assert int(updated.metadata.resource_version) > int(stale.metadata.resource_version)
    stale.data = {"a": "3"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("settings", "default", stale)
    assert conflict.value.status == 409
    assert status_of(conflict.value)["reason"] == "Conflict"
    assert "the object has been modified" in status_of(conflict.value)["message"]
    core.delete_namespaced_config_map("settings", "default")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("settings", "default")
    status = status_of(missing.value)
    assert missing.value.status == 404
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "NotFound", 404)
    assert status["message"] == 'configmaps "settings" not found'
    assert status["details"] == {"name": "settings", "kind": "configmaps"}


def test_namespaces_must_exist_and_deleting_one_removes_its_objects(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert missing.value.status == 404
    assert status_of(missing.value)["message"] == 'namespaces "nowhere" not found'
    core.create_namespace({"metadata": {"name": "team"}})
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    core.create_namespaced_config_map("team", held)
    client.AppsV1Api(kube_api).create_namespaced_deployment(
        "team", deployment(replicas=1) | {"metadata": {"name": "web"}}
    )
    kube.wait_for(lambda: kube.objects("pods", "team"))
    answer = json.loads(core.delete_namespace("team", _preload_content=False).data)
    assert answer["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as terminating:
        core.create_namespaced_config_map("team", {"metadata": {"name": "y"}})
    assert terminating.value.status == 403
    kube.wait_for(
        lambda: kube.objects("configmaps", "team") == [] or not kube.objects("pods", "team")
    )
    assert core.read_namespace("team").status.phase == "Terminating"
    core.patch_namespaced_config_map("held", "team", {"metadata": {"finalizers": None}})
    kube.wait_for(
        lambda: not [n for n in kube.objects("namespaces") if n["metadata"]["name"] == "team"]
    )
    assert kube.objects("pods", "team") == [] and kube.objects("configmaps", "team") == []


def test_generation_moves_with_spec_changes_only(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    created = apps.create_namespaced_deployment("default", deployment())
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"labels": {"team": "a"}}}
    )
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
    assert scaled.metadata.generation == 2
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    once = core.patch_namespaced_config_map("c", "default", {"data": {"k": "w"}})
    twice = core.patch_namespaced_config_map("c", "default", {"data": {"k": "w"}})
    assert (
        once.metadata.resource_version == twice.metadata.resource_version
    )  # no-op: no new version


def test_validation_errors_are_422_with_causes(kube_api: Any) -> None:
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    del body["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(ApiException) as invalid:
        client.AppsV1Api(kube_api).create_namespaced_deployment("default", body)
    status = status_of(invalid.value)
    assert invalid.value.status == 422 and status["reason"] == "Invalid"
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"spec.template.metadata.labels", "spec.template.spec.containers[0].image"}
    assert status["message"].startswith('Deployment.apps "web" is invalid: [')


# -- patches and server-side apply ----------------------------------------------


def test_strategic_merge_merges_containers_by_name_and_merge_patch_replaces(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    body = deployment()
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    apps.create_namespaced_deployment("default", body)
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}}
    }
    merged = apps.patch_namespaced_deployment("web", "default", patch)
    images = [(c.name, c.image) for c in merged.spec.template.spec.containers]
    assert images == [("app", "nginx:1.26"), ("sidecar", "envoy:1")]
    replaced = apps.patch_namespaced_deployment(
        "web", "default", patch, _content_type="application/merge-patch+json"
    )
    assert [c.name for c in replaced.spec.template.spec.containers] == ["app"]
    jsonpatch = [{"op": "replace", "path": "/spec/replicas", "value": 1}]
    assert apps.patch_namespaced_deployment("web", "default", jsonpatch).spec.replicas == 1


def test_server_side_apply_creates_tracks_managers_and_reports_conflicts(kube_api: Any) -> None:
    dynamic = DynamicClient(kube_api)
    resource = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    created = resource.server_side_apply(
        body=deployment(), namespace="default", field_manager="gitops-steps"
    )
    managers = {(m["manager"], m["operation"]) for m in created.metadata.managedFields}
    assert ("gitops-steps", "Apply") in managers
    # another manager takes spec.replicas with an update (as kubectl scale or an HPA would)
    client.AppsV1Api(kube_api).patch_namespaced_deployment_scale(
        "web", "default", {"spec": {"replicas": 5}}
    )
    changed = deployment(replicas=4)
    with pytest.raises(ApiException) as conflict:
        resource.server_side_apply(body=changed, namespace="default", field_manager="gitops-steps")
    status = status_of(conflict.value)
    assert conflict.value.status == 409 and status["reason"] == "Conflict"
    assert status["details"]["causes"][0]["field"] == ".spec.replicas"
    assert status["message"].startswith("Apply failed with 1 conflict: conflict with")
    forced = resource.server_side_apply(
        body=changed, namespace="default", field_manager="gitops-steps", force_conflicts=True
    )
    assert forced.spec.replicas == 4
    # fields no longer applied are removed; fields nobody applied stay
    smaller = deployment(replicas=4)
    smaller["metadata"]["labels"] = {"tier": "web"}
    resource.server_side_apply(body=smaller, namespace="default", field_manager="gitops-steps")
    del smaller["metadata"]["labels"]
    final = resource.server_side_apply(
        body=smaller, namespace="default", field_manager="gitops-steps"
    )
    assert not (final.metadata.labels or {}).get("tier")


def test_server_side_apply_dry_run_and_strict_field_validation(
    kube: KubeEmulator, kube_api: Any
) -> None:
    dynamic = DynamicClient(kube_api)
    resource = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    dry = resource.server_side_apply(
        body=deployment(), namespace="default", field_manager="gitops-steps", dry_run="All"
    )
    assert dry.metadata.name == "web"
    assert kube.objects("deployments") == []
    wrong = deployment()
    wrong["spec"]["replica"] = 3
    wrong["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(ApiException) as strict:
        resource.server_side_apply(
            body=wrong,
            namespace="default",
            field_manager="gitops-steps",
            query_params=[("fieldValidation", "Strict")],
            dry_run="All",
        )
    status = status_of(strict.value)
    assert strict.value.status == 400 and status["reason"] == "BadRequest"
    assert ".spec.replica" in status["message"]
    assert "imagePullPolcy" in status["message"]
    assert "field not declared in schema" in status["message"]
    # without Strict the server warns, drops the fields and applies
    lenient = resource.server_side_apply(
        body=wrong, namespace="default", field_manager="gitops-steps"
    )
    assert "replica" not in lenient.to_dict()["spec"]


# -- watch ------------------------------------------------------------------------


def test_watch_resumes_from_a_list_version_and_sends_bookmarks(
    kube: KubeEmulator, kube_api: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    kube.wait_for(lambda: kube.objects("configmaps", "default"))  # kube-root-ca.crt
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    listed = core.list_namespaced_config_map("default", label_selector="!missing")
    version = listed.metadata.resource_version

    def change() -> None:
        time.sleep(0.1)
        core.patch_namespaced_config_map("a", "default", {"data": {"v": "2"}})
        core.delete_namespaced_config_map("a", "default")

    threading.Thread(target=change).start()
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=version,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ):
        obj = event["raw_object"]
        seen.append((event["type"], obj.get("metadata", {}).get("name", "")))
        if ("BOOKMARK", "") in seen and ("DELETED", "a") in seen:
            w.stop()
    assert ("MODIFIED", "a") in seen and ("DELETED", "a") in seen
    assert ("BOOKMARK", "") in seen
    assert ("ADDED", "kube-root-ca.crt") not in seen


def test_watch_from_a_compacted_version_gets_410_gone(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    old = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    kube.compact()
    w = watch.Watch()
    with pytest.raises(ApiException) as gone:
        for _ in w.stream(
            core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=2
        ):
            pass
    assert gone.value.status == 410
    assert "too old resource version" in str(gone.value.reason)


# -- Deployment -> ReplicaSet -> Pods -------------------------------------------------


def test_deployment_rolls_out_through_replicasets_to_ready_pods(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment())
    first = wait_rolled_out(kube)
    conditions = {c["type"]: c for c in first["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    (rs,) = kube.objects("replicasets", "default")
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    pods = kube.objects("pods", "default")
    assert len(pods) == 3
    assert all(p["metadata"]["labels"]["pod-template-hash"] == pod_hash for p in pods)
    assert all(p["status"]["phase"] == "Running" for p in pods)
    apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}}},
    )
    second = wait_rolled_out(kube)
    assert second["metadata"]["generation"] == 2
    revisions = sorted(
        r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        for r in kube.objects("replicasets")
    )
    assert revisions == ["1", "2"]
    kube.wait_for(lambda: len(kube.objects("pods", "default")) == 3)
    images = {p["spec"]["containers"][0]["image"] for p in kube.objects("pods", "default")}
    assert images == {"nginx:1.26"}


def test_deleting_a_deployment_collects_its_replicasets_and_pods(
    kube: KubeEmulator, kube_api: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("default", deployment(replicas=2))
    wait_rolled_out(kube)
    apps.delete_namespaced_deployment("web", "default")
    kube.wait_for(lambda: not kube.objects("replicasets") and not kube.objects("pods", "default"))


def test_wrong_scalar_types_fail_decoding_and_unknown_fields_warn(
    kube: KubeEmulator, kube_api: Any
) -> None:
    dynamic = DynamicClient(kube_api)
    resource = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"]["version"] = 2
    with pytest.raises(ApiException) as typed:
        resource.server_side_apply(body=body, namespace="default", field_manager="t", dry_run="All")
    assert typed.value.status == 400
    assert ".spec.template.metadata.labels.version: expected string, got number" in typed.value.body
    http = urllib3.PoolManager()
    created = http.request(
        "POST",
        kube.url + "/api/v1/namespaces/default/configmaps",
        body=json.dumps({"metadata": {"name": "c"}, "dta": {"a": "b"}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert created.status == 201
    assert created.headers["Warning"] == '299 - "unknown field \\"dta\\""'


def test_a_stopped_emulator_refuses_connections(kube_factory: Any) -> None:
    kube = kube_factory()
    core = client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    core.list_namespace()  # a pooled keep-alive connection
    kube.stop()
    assert kube.kubeconfig.exists()
    core.api_client.configuration.retries = False
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.list_namespace(_request_timeout=2)


def test_gitops_sandbox_kube_serves_until_terminated(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "steps.sandbox", "kube", "--kubeconfig", str(kubeconfig), "--fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:") and kubeconfig.exists()
        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        assert "default" in [n.metadata.name for n in core.list_namespace().items]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_typed_apply_creates_and_drops_containers_no_longer_applied(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)

    def apply(body: dict[str, Any]) -> Any:
        return apps.patch_namespaced_deployment(
            "web",
            "default",
            body,
            field_manager="gitops-steps",
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    with_sidecar = deployment()
    with_sidecar["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "envoy:1"}
    )
    created = apply(with_sidecar)
    assert [c.name for c in created.spec.template.spec.containers] == ["app", "sidecar"]
    # another manager sets an env var on the app container: it must survive re-applies
    env = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}
            }
        }
    }
    apps.patch_namespaced_deployment("web", "default", env, field_manager="kubectl-edit")
    applied = apply(deployment())
    containers = applied.spec.template.spec.containers
    assert [c.name for c in containers] == ["app"]
    assert [(e.name, e.value) for e in containers[0].env] == [("A", "1")]
    assert applied.metadata.generation == 3


def test_selectors_and_pagination(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    for name, tier in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "cache")]:
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": {"tier": tier}}}
        )

    def names(**kwargs: Any) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map("default", **kwargs).items]

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier in (db,cache)") == ["b", "d"]
    assert names(label_selector="tier,tier notin (web)") == ["b", "d"]
    assert set(names(label_selector="!tier")) <= {"kube-root-ca.crt"}
    assert names(field_selector="metadata.name=b") == ["b"]
    first = core.list_namespaced_config_map("default", label_selector="tier", limit=3)
    assert len(first.items) == 3 and first.metadata._continue
    rest = core.list_namespaced_config_map(
        "default", label_selector="tier", limit=3, _continue=first.metadata._continue
    )
    assert [i.metadata.name for i in rest.items] == ["d"] and not rest.metadata._continue
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_config_map("default", field_selector="data.x=1")
    assert unsupported.value.status == 400 and "field label not supported" in unsupported.value.body


def test_watch_with_initial_events_ends_them_with_a_bookmark(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "x", "labels": {"k": "v"}}})
    response = core.list_namespaced_config_map(
        "default",
        watch=True,
        label_selector="k=v",
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=1,
        _preload_content=False,
    )
    events = [json.loads(line) for line in response.data.decode().splitlines() if line]
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "x"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_https_with_a_private_ca_and_bearer_tokens(kube_factory: Any) -> None:
    kube = kube_factory(tls=True, token="sandbox-token")
    assert kube.url.startswith("https://127.0.0.1:") and kube.ca_pem.startswith(
        "-----BEGIN CERTIFICATE"
    )
    core = client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    assert "default" in [n.metadata.name for n in core.list_namespace().items]
    assert kube.tokens_seen == ["sandbox-token"]
    anonymous = urllib3.PoolManager(ca_cert_data=kube.ca_pem, retries=False)
    refused = anonymous.request("GET", kube.url + "/api/v1/namespaces")
    assert refused.status == 401 and json.loads(refused.data)["reason"] == "Unauthorized"
    with pytest.raises(urllib3.exceptions.SSLError):
        urllib3.PoolManager(retries=False).request("GET", kube.url + "/version")  # unknown CA


def test_concurrent_read_modify_write_loses_no_update(kube: KubeEmulator) -> None:
    """8 writers x 10 increments with optimistic concurrency: 409s are retried, none lost."""
    core = client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "counter"}, "data": {"n": "0"}}
    )
    conflicts: list[int] = []

    def writer() -> None:
        api = client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))
        done = 0
        while done < 10:
            current = api.read_namespaced_config_map("counter", "default")
            current.data["n"] = str(int(current.data["n"]) + 1)
            try:
                api.replace_namespaced_config_map("counter", "default", current)
                done += 1
            except ApiException as exc:
                assert exc.status == 409
                conflicts.append(1)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert core.read_namespaced_config_map("counter", "default").data["n"] == "80"


def test_every_watcher_sees_every_change_in_order(kube: KubeEmulator, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "w"}, "data": {"n": "0"}})
    start = core.read_namespaced_config_map("w", "default").metadata.resource_version
    seen: list[list[int]] = [[] for _ in range(4)]

    def watcher(index: int) -> None:
        api = client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))
        w = watch.Watch()
        for event in w.stream(
            api.list_namespaced_config_map,
            "default",
            field_selector="metadata.name=w",
            resource_version=start,
            timeout_seconds=10,
        ):
            seen[index].append(int(event["raw_object"]["data"]["n"]))
            if seen[index][-1] == 30:
                w.stop()

    threads = [threading.Thread(target=watcher, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for n in range(1, 31):
        core.patch_namespaced_config_map("w", "default", {"data": {"n": str(n)}})
    for thread in threads:
        thread.join(timeout=15)
    assert all(s == list(range(1, 31)) for s in seen)


def test_companion_kinds_of_a_deployment_apply_strictly(kube: KubeEmulator, kube_api: Any) -> None:
    """PDBs and HPAs ride along with Deployments in env repos; Strict must accept them."""
    dynamic = DynamicClient(kube_api)
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }
    for body in (pdb, hpa):
        resource = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        applied = resource.server_side_apply(
            body=body,
            namespace="default",
            field_manager="t",
            query_params=[("fieldValidation", "Strict")],
        )
        assert applied.metadata.generation == 1 and applied.spec
    budget = kube.wait_for(
        lambda: (
            (found := kube.objects("poddisruptionbudgets", "default")) and found[0].get("status")
        )
    )
    assert budget["observedGeneration"] == 1 and budget["expectedPods"] == 0
