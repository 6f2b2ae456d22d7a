"""verify-rollout end to end: the official client against the Kubernetes API emulator.

The stage runs in-process (``main(argv)``) for most cases and as real
processes where processes matter (two concurrent runs, SIGTERM, --cluster).
Pod behaviour comes from the pod-template annotation the emulator's fake
kubelet reads; missing images are really missing from the loopback registry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_registry import ImagePusher

from steps import verify_rollout as stage
from steps.lib import rollout as rollout_module
from steps.lib.kube_access import Access, connect
from steps.lib.live_record import read_live_record
from steps.sandbox.gcp import GcpSandbox

BEHAVIOR = "sandbox.gitops-steps.dev/behavior"
IMAGE = "example.com/web:1"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GITOPS_") or name in ("COMMIT_SHA", "BUILD_ID", "KUBECONFIG"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def deployment(
    name: str = "web",
    *,
    image: str = IMAGE,
    replicas: int = 2,
    behavior: str | None = None,
    namespace: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    annotations = {BEHAVIOR: behavior} if behavior else {}
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    **({"annotations": annotations} if annotations else {}),
                },
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def write_manifests(directory: Path, *objects: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    (directory / "all.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return directory


class Run:
    def __init__(self, code: int, result: dict[str, Any], err: str) -> None:
        self.code = code
        self.result = result
        self.err = err

    def __repr__(self) -> str:
        return f"Run(code={self.code}, err=\n{self.err})"


def run_stage(
    kube: Any,
    manifests: Path,
    *extra: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Run:
    result_file = tmp_path / f"result-{time.monotonic_ns()}.json"
    argv = [
        "--manifests",
        str(manifests),
        "--kubeconfig",
        str(kube.kubeconfig),
        "--result-file",
        str(result_file),
        "--timeout",
        "60s",
        *extra,
    ]
    capsys.readouterr()
    code = stage.main(argv)
    err = capsys.readouterr().err
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return Run(code, result, err)


def objects(kube: Any, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = kube.objects(plural, namespace)
    return found


# -- success ----------------------------------------------------------------------


def test_healthy_rollout_with_namespace_and_record(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(
        tmp_path / "m",
        deployment(namespace="shop"),
        configmap("settings", color="blue")
        | {"metadata": {"name": "settings", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    )
    run = run_stage(
        kube, manifests, "--record", "prod", "--commit", "c0ffee1",
        "--namespace", "shop", capsys=capsys, tmp_path=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run
    assert run.result["status"] == "rolled-out"
    assert {row["object"]: row["status"] for row in run.result["objects"]} == {
        "Namespace/shop": "Current",
        "Deployment/web": "Current",
        "ConfigMap/settings": "Current",
    }
    assert "Deployment/web: 2 of 2 updated replicas available" in run.err
    assert "OBJECT" in run.err and "rolled out 3 object(s)" in run.err
    # Namespace applied before what lives in it.
    assert run.err.index("applied Namespace/shop") < run.err.index("applied shop/Deployment/web")

    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    record = read_live_record(api, "shop", "prod")
    assert record is not None and record.commit == "c0ffee1"
    assert record.images == (IMAGE,)
    assert run.result["record"]["commit"] == "c0ffee1"
    assert read_live_record(api, "shop", "staging") is None


def test_reapplying_the_same_manifests_is_immediately_rolled_out(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(replicas=1))
    assert run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path).code == 0
    again = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert again.code == 0, again
    assert again.result["seconds"] < 5


def test_statefulset_daemonset_job_and_crd(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = {"app": "db"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "c", "image": IMAGE}]},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    manifests = write_manifests(
        tmp_path / "m",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}},
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": template,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {**template, "metadata": {"labels": {"app": "agent"}}},
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "migrate"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "m", "image": IMAGE}],
                    }
                }
            },
        },
        crd,
    )
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    statuses = {row["object"]: row["status"] for row in run.result["objects"]}
    assert set(statuses.values()) == {"Current"}
    assert len(statuses) == 5
    assert run.err.index("applied CustomResourceDefinition") < run.err.index(
        "applied default/Widget"
    )


def test_replicas_changed_by_an_autoscaler_during_the_wait_count(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(replicas=2, behavior="slow-start"))
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))

    def autoscale() -> None:
        deadline = time.monotonic() + 10
        while not objects(kube, "pods", "default") and time.monotonic() < deadline:
            time.sleep(0.02)
        api.request(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            body={"spec": {"replicas": 4}},
            content_type="application/merge-patch+json",
        )

    scaler = threading.Thread(target=autoscale)
    scaler.start()
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    scaler.join()
    assert run.code == 0, run
    assert run.result["objects"][0]["message"] == "4 of 4 updated replicas available"


# -- failures -----------------------------------------------------------------------


def test_crash_loop_fails_fast_with_a_report(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="crash"))
    started = time.monotonic()
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 1, run
    assert time.monotonic() - started < 30
    failure = run.result["failure"]
    assert failure["object"] == "Deployment/web"
    # The kubelet shows CrashLoopBackOff after the first crash; three restarts
    # (RepeatedNonZeroExit) would mean the fail-fast on CrashLoopBackOff is gone.
    assert failure["reason"] == "CrashLoopBackOff"
    assert failure["pod"].startswith("web-") and failure["container"] == "app"
    assert failure["restarts"] >= 1
    assert "rollout failed: Deployment/web, pod web-" in run.err
    # The crashed container's own last words, fetched from the log endpoint.
    assert "panic: configuration invalid: DATABASE_URL is required" in failure["logs"]
    assert "| panic: configuration invalid: DATABASE_URL is required" in run.err


def test_repeated_oom_kills_fail_the_rollout(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="oom"))
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 1, run
    failure = run.result["failure"]
    assert failure["reason"] in ("CrashLoopBackOff", "RepeatedOOMKilled")
    assert "OOMKilled" in json.dumps(failure)


def test_load_balancer_is_waited_for_only_when_asked(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    manifests = write_manifests(tmp_path / "m", service)
    run = run_stage(kube, manifests, "--wait-load-balancer", capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    assert "Service/web: load balancer at " in run.err


def test_missing_image_really_absent_from_the_registry(
    kube_factory: Any,
    registry: Any,
    images: ImagePusher,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images.push("web", "v1")
    kube = kube_factory(registry=registry.address)
    good = write_manifests(tmp_path / "good", deployment(image=f"{images.repository('web')}:v1"))
    assert run_stage(kube, good, capsys=capsys, tmp_path=tmp_path).code == 0
    missing = f"{images.repository('web')}:v2-never-pushed"
    bad = write_manifests(tmp_path / "bad", deployment(image=missing))
    run = run_stage(kube, bad, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 1, run
    assert run.result["failure"]["reason"] in ("ImagePullBackOff", "ErrImagePull")
    assert missing in run.err


def test_unschedulable_past_its_grace_period(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="unschedulable"))
    run = run_stage(
        kube, manifests, "--unschedulable-grace", "1s", capsys=capsys, tmp_path=tmp_path
    )
    assert run.code == 1, run
    assert run.result["failure"]["reason"] == "Unschedulable"


def test_timeout_names_the_objects_still_waiting(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(
        tmp_path / "m", deployment(behavior="never-ready"), configmap("fine", a="b")
    )
    started = time.monotonic()
    run = run_stage(kube, manifests, "--timeout", "3s", capsys=capsys, tmp_path=tmp_path)
    assert run.code == 1, run
    assert 3 <= time.monotonic() - started < 15
    assert run.result["status"] == "timed-out"
    assert run.result["waiting"] == ["Deployment/web"]
    assert "timed out after 3s; still waiting for: Deployment/web" in run.err


def test_old_pods_failing_do_not_fail_the_new_rollout(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Revision 1 crash-loops (never rolls out); revision 2 is healthy and must pass,
    # even while revision 1's pods are still crashing during the rolling update.
    first = write_manifests(tmp_path / "m1", deployment(behavior="crash"))
    assert run_stage(kube, first, capsys=capsys, tmp_path=tmp_path).code == 1
    second = write_manifests(tmp_path / "m2", deployment(image="example.com/web:2"))
    run = run_stage(kube, second, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run


def test_server_side_dry_run_refuses_everything_before_changing_anything(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = deployment()
    bad["spec"]["replicaz"] = 3
    manifests = write_manifests(tmp_path / "m", configmap("first", a="b"), bad)
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 2, run
    assert "Deployment/web: refused by the server (dry run)" in run.err
    assert "replicaz" in run.err
    assert not [
        o for o in objects(kube, "configmaps", "default") if o["metadata"]["name"] == "first"
    ]


def test_cluster_scoped_kinds_need_the_flag(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [],
    }
    manifests = write_manifests(tmp_path / "m", role)
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 2 and "--allow-cluster-scoped" in run.err


@pytest.mark.parametrize(
    "api_version",
    [
        "example.com/v1 HTTP/1.1\r\nX: y",  # would be a second line of the request
        "example.com /v1",  # a space: the server would answer 400 (was a traceback)
        "example.com/v1\0",
        "apps/v1\x7f",
        "Example.com/v1",
        "/v1",
        "../v1",
        "example.com/../v1",
    ],
)
def test_an_api_version_no_server_could_serve_is_a_manifest_error(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], api_version: str
) -> None:
    thing = {"apiVersion": api_version, "kind": "Thing", "metadata": {"name": "a"}}
    run = run_stage(kube, write_manifests(tmp_path / "m", thing), capsys=capsys, tmp_path=tmp_path)
    assert run.code == 2, run
    if api_version.isprintable() and " " not in api_version:
        assert "all.yaml:1: Thing/a: " in run.err and "is not served by the cluster" in run.err
    else:  # named quoted: a line break or control byte never reaches the terminal
        assert f"all.yaml:1: apiVersion {api_version!r} has a space or a control" in run.err
        assert not any(c in run.err for c in "\r\0\x7f")
    assert "Traceback" not in run.err


@pytest.mark.parametrize("kind", ["Thing\r\nX", "Th ing", "Thing\x1b[2J"])
def test_a_kind_with_a_control_character_is_named_quoted(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    thing = {"apiVersion": "example.com/v1", "kind": kind, "metadata": {"name": "a"}}
    run = run_stage(kube, write_manifests(tmp_path / "m", thing), capsys=capsys, tmp_path=tmp_path)
    assert run.code == 2, run
    assert f"all.yaml:1: kind {kind!r} has a space or a control character" in run.err
    assert not any(c in run.err for c in "\r\x1b")


# -- record, prune, rollback -------------------------------------------------------------


def test_prune_deletes_only_what_this_record_applied(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = ("--record", "prod", "--commit", "c1")
    both = write_manifests(tmp_path / "m1", configmap("keep", a="1"), configmap("drop", a="2"))
    assert run_stage(kube, both, *record, capsys=capsys, tmp_path=tmp_path).code == 0
    other = write_manifests(tmp_path / "o", configmap("other-record", a="3"))
    assert (
        run_stage(
            kube, other, "--record", "dev", "--commit", "c0", capsys=capsys, tmp_path=tmp_path
        ).code
        == 0
    )
    unlabelled = write_manifests(tmp_path / "u", configmap("unlabelled", a="4"))
    assert run_stage(kube, unlabelled, capsys=capsys, tmp_path=tmp_path).code == 0

    one = write_manifests(tmp_path / "m2", configmap("keep", a="1"))
    run = run_stage(kube, one, *record, "--prune", capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    assert run.result["pruned"] == ["ConfigMap/drop in default"]
    names = {o["metadata"]["name"] for o in objects(kube, "configmaps", "default")}
    assert {"keep", "other-record", "unlabelled", "gitops-steps-prod"} <= names
    assert "drop" not in names


def test_rollback_on_failure_restores_the_last_good_manifests(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_manifests(tmp_path / "production", deployment(image="example.com/web:1"))
    assert run_stage(kube, good, capsys=capsys, tmp_path=tmp_path).code == 0
    bad = write_manifests(
        tmp_path / "candidate", deployment(image="example.com/web:2", behavior="crash")
    )
    run = run_stage(kube, bad, "--rollback-on-failure", str(good), capsys=capsys, tmp_path=tmp_path)
    assert run.code == 1, run
    assert run.result["rollback"]["status"] == "rolled-out"
    assert "rolling back" in run.err and "rollback complete" in run.err
    (live,) = [d for d in objects(kube, "deployments", "default") if d["metadata"]["name"] == "web"]
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/web:1"
    assert BEHAVIOR not in (live["spec"]["template"]["metadata"].get("annotations") or {})


# -- faults -------------------------------------------------------------------------------


def test_api_faults_during_the_watch_are_retried(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="slow-start"))
    kube.faults.drop_watches(count=3)
    kube.faults.fail(
        r"/apis/apps/v1/namespaces/default/deployments", status=500, count=2, method="GET"
    )
    kube.faults.fail(r"/api/v1/namespaces/default/pods", status=429, count=2, retry_after=1)
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    assert run.result.get("watch_restarts", 0) >= 1


def test_watches_told_410_gone_list_again_and_go_on(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="slow-start"))
    kube.faults.fail(r"watch=true", status=410, count=4, method="GET")
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    assert kube.faults.injected == 4
    assert run.result["status"] == "rolled-out"


def test_watches_resumed_after_compaction_are_told_410_in_stream_and_list_again(
    kube_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from steps.lib import kube_watch as kube_module
    from steps.sandbox.kube.timings import Timings

    kube = kube_factory(timings=Timings.fast().but(slow_start=3.0))
    listings: list[str] = []
    real_typed_items = kube_module.typed_items

    def counted(listing: Any) -> Any:
        listings.append(str(listing.get("kind")))
        return real_typed_items(listing)

    monkeypatch.setattr(kube_module, "typed_items", counted)

    def compact_then_drop() -> None:
        # Once the four watches (deployments, pods, replicasets, events) are open,
        # forget the history and cut them: resuming gets ERROR 410 in the stream.
        kube.wait_for(lambda: len(listings) >= 4, timeout=20)
        time.sleep(0.5)  # the four watch requests follow their listings at once
        kube.compact()
        kube.faults.drop_watches(count=4)

    saboteur = threading.Thread(target=compact_then_drop, daemon=True)
    saboteur.start()
    manifests = write_manifests(tmp_path / "m", deployment(behavior="slow-start"))
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    saboteur.join(timeout=5)
    assert run.code == 0, run
    assert len(listings) > 4, listings  # at least one collection was listed again


def test_a_bug_in_the_watch_thread_is_exit_70_not_a_timeout_nor_a_rollback(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from steps.lib import kube_watch as kube_module

    good = write_manifests(tmp_path / "production", configmap("c", version="1"))
    assert run_stage(kube, good, capsys=capsys, tmp_path=tmp_path).code == 0

    listed: list[Any] = []

    def broken(listing: Any) -> Any:
        listed.append(listing)
        raise TypeError("a bug in the watch thread")

    monkeypatch.setattr(kube_module, "typed_items", broken)
    candidate = write_manifests(tmp_path / "candidate", deployment(behavior="slow-start"))
    run = run_stage(
        kube,
        candidate,
        "--timeout",
        "8s",
        "--rollback-on-failure",
        str(good),
        capsys=capsys,
        tmp_path=tmp_path,
    )
    assert run.code == 70, run
    # Not retried: at most one listing per watched collection (Deployments, Pods,
    # ReplicaSets, Events) reached the bug before the stage stopped.
    assert 1 <= len(listed) <= 4, listed
    assert "TypeError: a bug in the watch thread" in run.err
    assert "Traceback" in run.err and "internal error" in run.err
    assert "rolling back" not in run.err
    (live,) = [d for d in objects(kube, "deployments", "default") if d["metadata"]["name"] == "web"]
    assert BEHAVIOR in live["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("status", "count", "code", "said"),
    [(403, 1, 2, "refused by the server"), (503, 6, 3, "after 6 attempts")],
)
def test_an_apply_stopped_half_way_rolls_back_and_says_what_it_applied(
    kube: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    count: int,
    code: int,
    said: str,
) -> None:
    good = write_manifests(tmp_path / "production", configmap("c", version="1"), deployment())
    assert run_stage(kube, good, capsys=capsys, tmp_path=tmp_path).code == 0
    candidate = write_manifests(
        tmp_path / "candidate", configmap("c", version="2"), deployment(image="example.com/web:2")
    )
    # The dry run passes; the real apply of the Deployment (after the ConfigMap) fails
    # (for 503: on every retry), and then lets the rollback through.
    kube.faults.fail(r"/deployments/web\?(?!.*dryRun)", status=status, count=count, method="PATCH")
    run = run_stage(
        kube, candidate, "--rollback-on-failure", str(good), capsys=capsys, tmp_path=tmp_path
    )
    assert run.code == code, run
    assert said in run.err
    assert "already applied: default/ConfigMap/c" in run.err
    assert run.result["status"] == "apply-failed"
    assert run.result["applied"] == ["default/ConfigMap/c"]
    assert run.result["rollback"]["status"] == "rolled-out"
    (cm,) = [c for c in objects(kube, "configmaps", "default") if c["metadata"]["name"] == "c"]
    assert cm["data"] == {"version": "1"}


def test_a_lock_lost_during_the_rollout_records_nothing(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/prod"
    real_report = rollout_module.report_outcome

    def stolen_then_reported(*args: Any, **kwargs: Any) -> Any:
        # Another build takes the Lease (as after a long stall) just as the wait ends.
        lease = api.request("GET", lease_path)
        lease["spec"]["holderIdentity"] = "build two"
        api.request("PUT", lease_path, body=lease)
        return real_report(*args, **kwargs)

    monkeypatch.setattr(rollout_module, "report_outcome", stolen_then_reported)
    manifests = write_manifests(tmp_path / "m", deployment())
    run = run_stage(
        kube,
        manifests,
        "--lock",
        "prod",
        "--record",
        "prod",
        "--commit",
        "c" * 40,
        capsys=capsys,
        tmp_path=tmp_path,
    )
    assert run.code == 1, run
    assert run.result["status"] == "lock-lost"
    assert "lock prod was taken by another holder" in run.err
    assert "recorded" not in run.err and "record" not in run.result
    assert read_live_record(api, "default", "prod") is None
    assert api.request("GET", lease_path)["spec"]["holderIdentity"] == "build two"


def test_a_lease_that_cannot_be_read_at_the_end_records_nothing(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_report = rollout_module.report_outcome

    def forbidden_then_reported(*args: Any, **kwargs: Any) -> Any:
        kube.faults.fail(r"/leases/prod$", status=403, count=1, method="GET")
        return real_report(*args, **kwargs)

    monkeypatch.setattr(rollout_module, "report_outcome", forbidden_then_reported)
    manifests = write_manifests(tmp_path / "m", deployment())
    argv = ["--lock", "prod", "--record", "prod", "--commit", "c" * 40]
    run = run_stage(kube, manifests, *argv, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 1, run
    assert run.result["status"] == "lock-lost"
    assert "lock prod: cannot read its Lease: HTTP 403" in run.err
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    assert read_live_record(api, "default", "prod") is None


def test_the_rollback_shares_the_one_deadline(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_manifests(tmp_path / "production", deployment("other", behavior="never-ready"))
    candidate = write_manifests(tmp_path / "candidate", deployment(behavior="never-ready"))
    run = run_stage(
        kube,
        candidate,
        "--timeout",
        "6s",
        "--rollback-on-failure",
        str(good),
        capsys=capsys,
        tmp_path=tmp_path,
    )
    assert run.code == 1, run
    # The wait gives up at 4s (a third of --timeout kept back), the rollback at 6s.
    assert "timed out after 4s; still waiting for: Deployment/web" in run.err
    rollback = run.result["rollback"]
    assert rollback["status"] == "timed-out"  # it waited until its deadline...
    # ... which was what the one deadline had left (6s less the 4s the wait took,
    # less the apply), not a deadline of its own,
    assert 0 < rollback["budget_seconds"] <= 2, rollback
    # and its wait ended with that budget (a deadline of its own would show 6s).
    assert rollback["seconds"] < rollback["budget_seconds"] + 1, rollback
    run = run_stage(
        kube,
        candidate,
        "--timeout",
        "6s",
        "--rollback-timeout",
        "1s",
        "--rollback-on-failure",
        str(good),
        capsys=capsys,
        tmp_path=tmp_path,
    )
    assert "timed out after 5s; still waiting for: Deployment/web" in run.err


def test_events_we_may_not_read_only_cost_the_fail_fast(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment())
    kube.faults.fail(r"/api/v1/namespaces/default/events", status=403, count=None, method="GET")
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    assert "cannot watch /api/v1/namespaces/default/events (HTTP 403)" in run.err


def test_watches_failing_until_the_deadline_exit_3(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="slow-start"))
    kube.faults.fail(r"watch=true", status=503, count=None, method="GET")
    run = run_stage(kube, manifests, "--timeout", "3s", capsys=capsys, tmp_path=tmp_path)
    assert run.code == 3, run
    assert "outcome is unknown" in run.err


def test_apply_retries_transient_errors(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = write_manifests(tmp_path / "m", configmap("c", a="b"))
    kube.faults.fail(
        r"/api/v1/namespaces/default/configmaps/c", status=503, count=2, method="PATCH"
    )
    run = run_stage(kube, manifests, capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run


def test_unreachable_cluster_exits_3(
    kube_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube = kube_factory()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(Path(kube.kubeconfig).read_text())
    kube.stop()
    manifests = write_manifests(tmp_path / "m", configmap("c", a="b"))
    code = stage.main(["--manifests", str(manifests), "--kubeconfig", str(kubeconfig)])
    assert code == 3
    assert "Kubernetes API" in capsys.readouterr().err


# -- processes: lock, SIGTERM, --cluster ------------------------------------------------------


def spawn(
    kube: Any, manifests: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GITOPS_")}
    return subprocess.Popen(
        [
            sys.executable, "-m", "steps.verify_rollout", "--manifests", str(manifests),
            "--kubeconfig", str(kube.kubeconfig), "--timeout", "60s", *extra,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**base, **(env or {})},
    )  # fmt: skip


def lease(kube: Any, name: str) -> dict[str, Any] | None:
    found = [o for o in objects(kube, "leases", "default") if o["metadata"]["name"] == name]
    return found[0] if found else None


def test_lock_contention_between_two_concurrent_runs(kube: Any, tmp_path: Path) -> None:
    # The first run holds the lock for its whole 3-second wait (it never becomes ready).
    first = write_manifests(tmp_path / "a", deployment("a", behavior="never-ready"))
    second = write_manifests(tmp_path / "b", deployment("b"))
    one = spawn(kube, first, "--lock", "prod", "--timeout", "3s", env={"BUILD_ID": "build-one"})
    deadline = time.monotonic() + 20
    while (held := lease(kube, "prod")) is None or not held["spec"].get("holderIdentity"):
        assert time.monotonic() < deadline and one.poll() is None
        time.sleep(0.05)
    result = tmp_path / "two.json"
    two = spawn(
        kube, second, "--lock", "prod", "--result-file", str(result), env={"BUILD_ID": "build-two"}
    )
    out_one = one.communicate(timeout=60)[1]
    out_two = two.communicate(timeout=60)[1]
    assert one.returncode == 1, out_one  # timed out, still released the lock
    assert "lock prod: released" in out_one
    assert two.returncode == 0, out_two
    assert "lock prod: held by build build-one" in out_two
    assert json.loads(result.read_text())["lock"]["waited_seconds"] > 0.5
    # Never both applying: the second applied only after the first let go.
    assert not (lease(kube, "prod") or {}).get("spec", {}).get("holderIdentity")


def test_expired_lock_is_taken_over(
    kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    api.request(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        body={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "prod"},
            "spec": {
                "holderIdentity": "a build that died",
                "leaseDurationSeconds": 1,
                "renewTime": "2020-01-01T00:00:00.000000Z",
            },
        },
    )
    manifests = write_manifests(tmp_path / "m", configmap("c", a="b"))
    run = run_stage(kube, manifests, "--lock", "prod", capsys=capsys, tmp_path=tmp_path)
    assert run.code == 0, run
    assert "held by" not in run.err


def test_sigterm_releases_the_lock(kube: Any, tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m", deployment(behavior="never-ready"))
    proc = spawn(kube, manifests, "--lock", "prod")
    deadline = time.monotonic() + 20
    while (held := lease(kube, "prod")) is None or not held["spec"].get("holderIdentity"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode != 0
    assert "lock prod: released" in err
    assert not (lease(kube, "prod") or {})["spec"].get("holderIdentity")


def test_cluster_flag_through_the_gke_stand_in(kube: Any, tmp_path: Path) -> None:
    cluster = "projects/p1/locations/europe-west1/clusters/sandbox"
    manifests = write_manifests(tmp_path / "m", deployment(replicas=1))
    with GcpSandbox() as gcp:
        gcp.add_cluster_from_kubeconfig(cluster, Path(kube.kubeconfig))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPS_", "GOOGLE_"))}
        env.update(gcp.environ(), HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
        proc = subprocess.run(
            [sys.executable, "-m", "steps.verify_rollout", "--manifests", str(manifests),
             "--cluster", cluster, "--timeout", "60s"],
            capture_output=True, text=True, env=env, timeout=90, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"GKE cluster {cluster}" in proc.stderr
    assert gcp.tokens_issued


def test_a_stopped_watch_thread_ends_though_no_event_or_bookmark_comes(
    kube_factory: Any,
) -> None:
    """``stop`` wakes the thread blocked reading its stream (which then closes the
    stream itself). Bookmarks are a minute apart here and nothing changes, so a
    ``stop`` that only set the flag would leave the thread blocked."""
    import queue

    from steps.lib.kube_access import Access, connect
    from steps.lib.kube_watch import CollectionWatch
    from steps.sandbox.kube.timings import Timings

    kube = kube_factory(timings=Timings.fast().but(bookmark=60.0))
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    sink: queue.Queue[Any] = queue.Queue()
    watch = CollectionWatch(api, "cm", "/api/v1/namespaces/default/configmaps", sink).start()
    assert sink.get(timeout=10).type == "SYNC"
    kube.wait_for(lambda: watch._stream is not None, timeout=10)
    time.sleep(0.2)  # the watch request is in, the thread is blocked reading
    watch.stop()
    watch._thread.join(timeout=10)
    assert not watch._thread.is_alive()
    left = [sink.get_nowait() for _ in range(sink.qsize())]
    assert [(e.type, e.error) for e in left if e.type in ("FATAL", "BUG")] == [], left
