"""The real kubectl, with its default flags, against the Kubernetes API emulator.

The emulator is only as good as its agreement with a real API server, so
these drive it with real kubectl binaries and compare with what a real cluster
answers. ``/usr/bin/kubectl`` from the Google Cloud CLI's Debian package
(which ``scripts/setup`` installs) is a *dispatcher*: it runs the
``/usr/lib/google-cloud-sdk/bin/kubectl.1.NN`` matching the server's minor
version, so it would test whatever version the emulator claims. Every case
therefore runs with each of ``kubectl.1.32`` and ``kubectl.1.33`` named
explicitly (both send ``kubectl create ...`` bodies as protobuf); where one is
missing, what ``find_kubectl`` finds stands in, with a warning. Each case
names its source: the Kubernetes documentation, or the code path in
kubernetes/kubernetes whose behaviour it checks. One emulator serves each
version's run (fast kubelet timings: no case here is about how long a real
cluster takes); each case works in its own namespace.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.sandbox.kube import BEHAVIOR, KubeEmulator, Timings

KUBECTL_CANDIDATES = ("/usr/bin/kubectl", "/usr/lib/google-cloud-sdk/bin/kubectl")
SDK_BIN = Path("/usr/lib/google-cloud-sdk/bin")
VERSIONS = ("1.32", "1.33")  # kubectl's protobuf create bodies start with 1.32


def find_kubectl() -> str:
    """``$KUBECTL``, else kubectl on PATH, else the Google Cloud CLI's; fail (never skip)."""
    for candidate in (os.environ.get("KUBECTL"), shutil.which("kubectl"), *KUBECTL_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("kubectl not found: run scripts/setup (Debian package kubectl) or set $KUBECTL")


class Kubectl:
    """Runs kubectl against one emulator with a private HOME (its cache lives there)."""

    def __init__(self, binary: str, kube: KubeEmulator, home: Path) -> None:
        self.binary = binary
        self.kube = kube
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(kube.kubeconfig),
        }

    def run(
        self,
        *args: str,
        ns: str | None = None,
        check: bool = True,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *(["-n", ns] if ns else []), *args]
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def __call__(self, *args: str, ns: str | None = None, stdin: str | None = None) -> str:
        return self.run(*args, ns=ns, stdin=stdin).stdout

    @contextmanager
    def streaming(self, *args: str, ns: str) -> Iterator[LineReader]:
        """A kubectl that keeps running (``get -w``): its output lines; killed at the end."""
        child = subprocess.Popen(
            [self.binary, "-n", ns, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        try:
            yield LineReader(child.stdout)
        finally:
            child.kill()
            child.wait()

    def fails(self, *args: str, ns: str | None = None, stdin: str | None = None) -> str:
        done = self.run(*args, ns=ns, check=False, stdin=stdin)
        assert done.returncode != 0, f"kubectl {' '.join(args)} succeeded:\n{done.stdout}"
        return done.stderr

    def json(self, *args: str, ns: str | None = None) -> Any:
        return yaml.safe_load(self(*args, "-o", "json", ns=ns))


def versioned_kubectl(version: str) -> str:
    """The Cloud SDK's kubectl of that minor version, else (warning) what find_kubectl finds."""
    binary = SDK_BIN / f"kubectl.{version}"
    if os.access(binary, os.X_OK):
        return str(binary)
    found = find_kubectl()
    warnings.warn(f"{binary} not found: kubectl {version} cases run {found}", stacklevel=2)
    return found


@pytest.fixture(scope="module", params=VERSIONS, ids=[f"kubectl{v}" for v in VERSIONS])
def kubectl_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def kube(kubectl_version: str) -> Iterator[KubeEmulator]:
    emulator = KubeEmulator(timings=Timings.fast()).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def kubectl(
    kube: KubeEmulator, kubectl_version: str, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    return Kubectl(versioned_kubectl(kubectl_version), kube, tmp_path_factory.mktemp("home"))


@pytest.fixture
def ns(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    """A namespace of the case's own, created with ``kubectl create namespace``."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:50]
    name = name.strip("-")
    assert kubectl("create", "namespace", name).strip() == f"namespace/{name} created"
    return name


def deployment(name: str = "web", image: str = "nginx:1.25", replicas: int = 2) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {"name": name, "image": image, "ports": [{"containerPort": 8080}]}
                        ]
                    },
                },
            },
        }
    )


def header(output: str) -> list[str]:
    return re.split(r"\s{2,}", output.splitlines()[0].strip())


def rows(output: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines()[1:] if line.strip()]


def wait_until(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- writing objects with default (server-side field) validation -------------------


def test_apply_create_replace_with_default_validation(kubectl: Kubectl, ns: str) -> None:
    # kubectl 1.32 reads /openapi/v3; a group-version whose PATCH takes fieldValidation
    # means "the server validates" (k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go),
    # so apply/create/replace send fieldValidation=Strict instead of failing to download.
    manifest = deployment()
    assert kubectl("apply", "-f", "-", ns=ns, stdin=manifest) == "deployment.apps/web created\n"
    assert kubectl("apply", "-f", "-", ns=ns, stdin=manifest) == "deployment.apps/web unchanged\n"
    changed = manifest.replace("replicas: 2", "replicas: 3")
    assert kubectl("apply", "-f", "-", ns=ns, stdin=changed) == "deployment.apps/web configured\n"
    # create of an existing object: AlreadyExists (409), as the registry's Create answers.
    error = kubectl.fails("create", "-f", "-", ns=ns, stdin=manifest)
    assert 'deployments.apps "web" already exists' in error
    assert kubectl("replace", "-f", "-", ns=ns, stdin=manifest) == "deployment.apps/web replaced\n"
    assert kubectl.json("get", "deploy", "web", ns=ns)["spec"]["replicas"] == 2


def test_unknown_fields_are_refused_as_the_decoder_words_it(kubectl: Kubectl, ns: str) -> None:
    # Strict field validation (KEP-2885): the decoder's "strict decoding error" on create.
    typo = deployment("typo").replace("replicas: 2", "replicass: 2")
    error = kubectl.fails("create", "-f", "-", ns=ns, stdin=typo)
    assert (
        'Deployment in version "v1" cannot be handled as a Deployment: '
        'strict decoding error: unknown field "spec.replicass"'
    ) in error
    # --validate=false sends fieldValidation=Ignore: the field is dropped, the object made.
    assert "created" in kubectl("create", "--validate=false", "-f", "-", ns=ns, stdin=typo)


def test_secret_data_must_be_base64_and_quantities_must_parse(kubectl: Kubectl, ns: str) -> None:
    # Both fail decoding (400), before validation: base64 in encoding/base64's words,
    # quantities in k8s.io/apimachinery/pkg/api/resource's (ErrFormatWrong).
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: 'not base64!'}\n"
    error = kubectl.fails("apply", "-f", "-", ns=ns, stdin=secret)
    assert "illegal base64 data at input byte 3" in error
    pod = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "q"},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"limits": {"memory": "12XB"}}}
                ]
            },
        }
    )
    error = kubectl.fails("apply", "-f", "-", ns=ns, stdin=pod)
    assert "quantities must match the regular expression" in error


def test_explain_reads_openapi_v3(kubectl: Kubectl) -> None:
    # kubectl explain (OpenAPI v3 since 1.27) prints the field, its type and description.
    out = kubectl("explain", "deployment.spec.strategy")
    assert "KIND:       Deployment" in out and "VERSION:    v1" in out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    assert re.search(r"rollingUpdate\s+<RollingUpdateDeployment>", out)
    assert "maxSurge" in kubectl("explain", "deploy.spec.strategy.rollingUpdate")
    pods = kubectl("explain", "pods.spec.containers")
    assert "image\t<string>" in pods and "-required-" in pods  # name is required


# -- get: server-side Tables ------------------------------------------------------------


def test_get_prints_the_columns_a_real_server_sends(kubectl: Kubectl, ns: str) -> None:
    # Columns: pkg/printers/internalversion/printers.go (AddHandlers).
    kubectl("apply", "-f", "-", ns=ns, stdin=deployment())
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    out = kubectl("get", "deployments", ns=ns)
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows(out)[0][:4] == ["web", "2/2", "2", "2"]
    wide = kubectl("get", "deploy", "-o", "wide", ns=ns)
    assert header(wide)[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows(wide)[0][5:] == ["web", "nginx:1.25", "app=web"]
    pods = kubectl("get", "pods", ns=ns)
    assert header(pods) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[1:4] for r in rows(pods)] == [["1/1", "Running", "0"]] * 2
    assert header(kubectl("get", "rs", ns=ns)) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    kubectl("create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=2", ns=ns)
    cms = kubectl("get", "configmap", "cfg", ns=ns)
    assert header(cms) == ["NAME", "DATA", "AGE"] and rows(cms)[0][:2] == ["cfg", "2"]
    kubectl("create", "secret", "generic", "sec", "--from-literal=a=1", ns=ns)
    secrets = kubectl("get", "secret", "sec", ns=ns)
    assert header(secrets) == ["NAME", "TYPE", "DATA", "AGE"]
    assert rows(secrets)[0][:3] == ["sec", "Opaque", "1"]
    assert header(kubectl("get", "ns", ns)) == ["NAME", "STATUS", "AGE"]
    nodes = kubectl("get", "nodes")
    assert header(nodes) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert all(r[1] == "Ready" for r in rows(nodes))
    # Events have no NAME column: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
    events = kubectl("get", "events", ns=ns)
    assert header(events) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "deployment/web" in events


def test_crash_looping_pod_shows_its_waiting_reason_and_restarts(kubectl: Kubectl, ns: str) -> None:
    # printPod: STATUS is the waiting reason of a container, RESTARTS counts restarts.
    manifest = yaml.safe_load(deployment("crash", replicas=1))
    manifest["spec"]["template"]["metadata"]["annotations"] = {BEHAVIOR: "crash"}
    kubectl("apply", "-f", "-", ns=ns, stdin=yaml.safe_dump(manifest))

    def crash_looping() -> list[str] | None:
        found = rows(kubectl("get", "pods", ns=ns) or "x\n")
        return found[0] if found and found[0][2] == "CrashLoopBackOff" else None

    row = wait_until(crash_looping)
    assert row[1] == "0/1" and int(row[3].split()[0]) >= 1


# -- rollouts ----------------------------------------------------------------------


def test_deployment_rollout_lifecycle(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-f", "-", ns=ns, stdin=deployment())
    assert 'deployment "web" successfully rolled out' in kubectl(
        "rollout", "status", "deploy/web", "--timeout=30s", ns=ns
    )
    kubectl("set", "image", "deploy/web", "web=nginx:1.26", ns=ns)
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    history = kubectl("rollout", "history", "deploy/web", ns=ns)
    assert [r.split()[0] for r in history.splitlines()[2:] if r.strip()] == ["1", "2"]
    first_rs = {r["metadata"]["name"] for r in kubectl.json("get", "rs", ns=ns)["items"]}
    # rollout undo puts revision 1's template back (with creationTimestamp: null); the
    # controller finds the old ReplicaSet by EqualIgnoreHash and reuses it as revision 3,
    # recording 1 in deployment.kubernetes.io/revision-history (pkg/controller/deployment).
    assert kubectl("rollout", "undo", "deploy/web", ns=ns) == "deployment.apps/web rolled back\n"
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    replica_sets = kubectl.json("get", "rs", ns=ns)["items"]
    assert {r["metadata"]["name"] for r in replica_sets} == first_rs
    current = next(r for r in replica_sets if r["spec"]["replicas"] == 2)
    annotations = current["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "3"
    assert annotations["deployment.kubernetes.io/revision-history"] == "1"
    image = kubectl(
        "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}", ns=ns
    )
    assert image == "nginx:1.25"
    kubectl("rollout", "undo", "deploy/web", ns=ns)  # and back again: revision 2 becomes 4
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    assert (
        kubectl(
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
            ns=ns,
        )
        == "nginx:1.26"
    )
    # restart: a new template annotation, so a new ReplicaSet.
    assert "restarted" in kubectl("rollout", "restart", "deploy/web", ns=ns)
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    assert len(kubectl.json("get", "rs", ns=ns)["items"]) == 3
    assert "paused" in kubectl("rollout", "pause", "deploy/web", ns=ns)
    assert kubectl.json("get", "deploy", "web", ns=ns)["spec"]["paused"] is True
    assert "resumed" in kubectl("rollout", "resume", "deploy/web", ns=ns)
    assert "scaled" in kubectl("scale", "deploy/web", "--replicas=3", ns=ns)
    assert "condition met" in kubectl(
        "wait", "--for=condition=Available", "deploy/web", "--timeout=30s", ns=ns
    )
    wait_until(
        lambda: kubectl.json("get", "deploy", "web", ns=ns)["status"].get("readyReplicas") == 3
    )


def test_statefulset_undo_twice_goes_back_and_forth(kubectl: Kubectl, ns: str) -> None:
    # The StatefulSet controller renumbers a ControllerRevision that becomes current
    # again as the newest (pkg/controller/history, getStatefulSetRevisions), so a
    # second undo returns to the other template.
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", ns=ns, stdin=yaml.safe_dump(sts))
    kubectl("rollout", "status", "sts/db", "--timeout=30s", ns=ns)
    kubectl("set", "image", "sts/db", "db=postgres:17", ns=ns)
    kubectl("rollout", "status", "sts/db", "--timeout=30s", ns=ns)

    def image() -> str:
        path = "jsonpath={.spec.template.spec.containers[0].image}"
        return kubectl("get", "sts", "db", "-o", path, ns=ns)

    kubectl("rollout", "undo", "sts/db", ns=ns)
    assert image() == "postgres:16"
    kubectl("rollout", "status", "sts/db", "--timeout=30s", ns=ns)
    revisions = kubectl("get", "controllerrevisions", ns=ns)
    assert header(revisions) == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert sorted(r[2] for r in rows(revisions)) == ["2", "3"]
    kubectl("rollout", "undo", "sts/db", ns=ns)
    assert image() == "postgres:17"
    history = kubectl("rollout", "history", "sts/db", ns=ns)
    assert [r.split()[0] for r in history.splitlines()[2:] if r.strip()] == ["3", "4"]


def test_daemonset_rollout(kubectl: Kubectl, ns: str) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", ns=ns, stdin=yaml.safe_dump(ds))
    assert 'daemon set "agent" successfully rolled out' in kubectl(
        "rollout", "status", "ds/agent", "--timeout=30s", ns=ns
    )
    out = kubectl("get", "ds", ns=ns)
    assert header(out) == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    ]
    assert rows(out)[0][1:7] == ["3", "3", "3", "3", "3", "<none>"]
    kubectl("set", "image", "ds/agent", "a=busybox:1.37", ns=ns)
    kubectl("rollout", "status", "ds/agent", "--timeout=30s", ns=ns)
    assert len(rows(kubectl("rollout", "history", "ds/agent", ns=ns))) >= 2


# -- editing --------------------------------------------------------------------------


def test_edit_patch_diff(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    manifest = deployment(replicas=1)
    kubectl("apply", "-f", "-", ns=ns, stdin=manifest)
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/replicas: 1/replicas: 2/" "$1"\n')
    editor.chmod(0o755)
    edited = kubectl.run("edit", "deploy/web", ns=ns, env={"KUBE_EDITOR": str(editor)})
    assert edited.stdout == "deployment.apps/web edited\n"
    assert kubectl.json("get", "deploy", "web", ns=ns)["spec"]["replicas"] == 2
    # Strategic merge (default), merge and JSON patches.
    kubectl("patch", "deploy", "web", "-p", '{"metadata":{"labels":{"tier":"front"}}}', ns=ns)
    kubectl("patch", "deploy", "web", "--type=merge", "-p", '{"spec":{"replicas":1}}', ns=ns)
    kubectl(
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/annotations/x","value":"y"}]',
        ns=ns,
    )
    live = kubectl.json("get", "deploy", "web", ns=ns)
    assert live["metadata"]["labels"]["tier"] == "front"
    assert live["spec"]["replicas"] == 1 and live["metadata"]["annotations"]["x"] == "y"
    # kubectl diff: exit 1 and a unified diff when the server-side dry run differs.
    differs = kubectl.run(
        "diff", "-f", "-", ns=ns, stdin=manifest.replace("nginx:1.25", "nginx:1.27"), check=False
    )
    assert differs.returncode == 1, differs.stderr
    assert re.search(r"^\+\s+- image: nginx:1\.27$", differs.stdout, re.MULTILINE)
    assert (
        kubectl.json("get", "deploy", "web", ns=ns)["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        == "nginx:1.25"
    )


# -- describe, events, logs ----------------------------------------------------------------


def test_describe_events_and_logs(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-f", "-", ns=ns, stdin=deployment(replicas=1))
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    described = kubectl("describe", "deploy", "web", ns=ns)
    assert "Replicas:               1 desired | 1 updated | 1 total | 1 available" in described
    assert "ScalingReplicaSet" in described
    # kubectl events --for selects by involvedObject.kind/apiVersion/name: values with '/'.
    events = kubectl("events", "--for", "deploy/web", ns=ns)
    assert "ScalingReplicaSet" in events and "Deployment/web" in events
    pod = kubectl("get", "pods", "-o", "name", ns=ns).split()[0]
    assert "Started container web" in kubectl("events", "--for", pod, ns=ns)
    logs = kubectl("logs", "deploy/web", ns=ns)
    assert "ready to serve requests" in logs
    # --timestamps: each line prefixed with an RFC 3339 time with nanoseconds (kubelet).
    stamped = kubectl("logs", "deploy/web", "--timestamps", ns=ns).splitlines()
    assert stamped and all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", line) for line in stamped
    )
    # --limit-bytes cuts the stream; --since keeps lines written in that window.
    assert kubectl("logs", "deploy/web", "--limit-bytes=10", ns=ns) == logs[:10]
    assert kubectl("logs", "deploy/web", "--since=1h", ns=ns) == logs
    time.sleep(1.1)  # every line is now more than a second old
    assert kubectl("logs", "deploy/web", "--since=1s", ns=ns) == ""
    # -f follows a running container: the stream stays open until the container ends.
    follower = subprocess.Popen(
        [kubectl.binary, "-n", ns, "logs", "-f", pod],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env,
    )
    try:
        time.sleep(1.0)
        assert follower.poll() is None, "logs -f returned while the container runs"
        kubectl("delete", pod, "--wait=false", ns=ns)
        out, _ = follower.communicate(timeout=15)
        assert "ready to serve requests" in out and follower.returncode == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


# -- kustomize, apply -k, apply --prune --------------------------------------------------


def test_kustomize_apply_k_and_prune(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "web.yaml").write_text(deployment())
    (base / "kustomization.yaml").write_text(
        f"namespace: {ns}\nresources: [web.yaml]\nlabels:\n- pairs: {{team: a}}\n"
        "configMapGenerator:\n- name: cfg\n  literals: [x=1]\n"
    )
    rendered = list(yaml.safe_load_all(kubectl("kustomize", str(base))))
    cm_name = next(o["metadata"]["name"] for o in rendered if o["kind"] == "ConfigMap")
    assert re.fullmatch(r"cfg-[a-z0-9]{10}", cm_name)
    applied = kubectl("apply", "-k", str(base))
    assert f"configmap/{cm_name} created" in applied and "deployment.apps/web created" in applied
    # --prune deletes what carries the label but is no longer in the files; its default
    # allowlist includes ReplicationController, so discovery must serve it.
    prune = tmp_path / "prune"
    prune.mkdir()
    for name in ("one", "two"):
        (prune / f"{name}.yaml").write_text(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{set: p}}}}\n"
            "data: {a: '1'}\n"
        )
    kubectl("apply", "--prune", "-l", "set=p", "-f", str(prune), ns=ns)
    (prune / "two.yaml").unlink()
    out = kubectl("apply", "--prune", "-l", "set=p", "-f", str(prune), ns=ns)
    assert "configmap/one unchanged" in out and "configmap/two pruned" in out
    assert kubectl.run("get", "cm", "two", ns=ns, check=False).returncode == 1


# -- CRDs and custom resources ----------------------------------------------------------------

WIDGETS = {
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
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "description": "How big the widget is.",
                                    },
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "tags": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "x-kubernetes-list-type": "set",
                                    },
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, spec: str) -> str:
    return f"apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def test_crd_and_custom_resources(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(WIDGETS))
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s")
    assert header(kubectl("get", "crd", "widgets.example.com")) == ["NAME", "CREATED AT"]
    good = widget("w1", "{size: 3, color: red}")
    assert kubectl("apply", "-f", "-", ns=ns, stdin=good) == "widget.example.com/w1 created\n"
    # additionalPrinterColumns (priority 1 only with -o wide); dates print as ages
    # (apiextensions-apiserver/pkg/registry/customresource/tableconvertor).
    out = kubectl("get", "widgets", ns=ns)
    assert header(out) == ["NAME", "SIZE", "AGE"]
    assert rows(out)[0][:2] == ["w1", "3"] and re.fullmatch(r"\d+s", rows(out)[0][2])
    assert header(kubectl("get", "wd", "-o", "wide", ns=ns)) == ["NAME", "SIZE", "COLOR", "AGE"]
    explained = kubectl("explain", "widgets.spec.size")
    assert "KIND:       Widget" in explained and "How big the widget is." in explained
    # openAPIV3Schema validation, worded as the apiextensions validator words it.
    bad = widget("w2", "{size: 0, color: green, tags: [a, a]}")
    error = kubectl.fails("apply", "-f", "-", ns=ns, stdin=bad)
    assert 'The Widget "w2" is invalid' in error  # kubectl's rendering of a 422 with causes
    assert (
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        in error
    )
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in error
    assert 'spec.tags[1]: Duplicate value: "a"' in error
    missing = widget("w3", "{color: red}")
    assert "spec.size: Required value" in kubectl.fails("apply", "-f", "-", ns=ns, stdin=missing)
    kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":5}}', ns=ns)
    assert kubectl.json("get", "widget", "w1", ns=ns)["spec"]["size"] == 5
    assert kubectl("delete", "widget", "w1", ns=ns) == 'widget.example.com "w1" deleted\n'


# -- Jobs and CronJobs --------------------------------------------------------------------


def test_jobs_and_cronjobs(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *", ns=ns)
    out = kubectl("get", "cronjobs", ns=ns)
    assert header(out) == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST SCHEDULE",
        "AGE",
    ]
    assert rows(out)[0][1:6] == ["*/1 * * * *", "<none>", "False", "0", "<none>"]
    assert (
        kubectl("create", "job", "now", "--from=cronjob/tick", ns=ns) == "job.batch/now created\n"
    )
    kubectl("wait", "--for=condition=Complete", "job/now", "--timeout=30s", ns=ns)
    jobs = kubectl("get", "jobs", ns=ns)
    assert header(jobs) == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows(jobs)[0][:3] == ["now", "Complete", "1/1"]
    # The CronJob controller runs the latest missed schedule after lastScheduleTime
    # (pkg/controller/cronjob/utils.go mostRecentScheduleTime): pretend the last run
    # was two minutes ago and a Job for the last minute appears, owned by the CronJob.
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 150))
    kubectl(
        "patch",
        "cronjob",
        "tick",
        "--subresource=status",
        "--type=merge",
        "-p",
        f'{{"status":{{"lastScheduleTime":"{before}"}}}}',
        ns=ns,
    )

    def scheduled() -> list[dict[str, Any]]:
        found = kubectl.json("get", "jobs", ns=ns)["items"]
        return [j for j in found if j["metadata"]["name"].startswith("tick-")]

    job = wait_until(scheduled)[0]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in job["metadata"]["annotations"]
    status = kubectl.json("get", "cronjob", "tick", ns=ns)["status"]
    assert status["lastScheduleTime"] > before


# -- Services, endpoints, storage, autoscaling, identity ------------------------------------------


def test_services_and_endpoints(kubectl: Kubectl, ns: str) -> None:
    # The kubernetes Service in default, as every cluster has (pkg/controlplane).
    svc = kubectl("get", "svc", "kubernetes", "-n", "default")
    assert header(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows(svc)[0][1:5] == ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    kubectl("apply", "-f", "-", ns=ns, stdin=deployment())
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    assert kubectl("expose", "deploy/web", "--port=80", "--target-port=8080", ns=ns) == (
        "service/web exposed\n"
    )
    pod_ips = sorted(p["status"]["podIP"] for p in kubectl.json("get", "pods", ns=ns)["items"])

    def endpoint_ips() -> list[str] | None:
        subsets = kubectl.json("get", "endpoints", "web", ns=ns).get("subsets") or []
        found = sorted(a["ip"] for s in subsets for a in s.get("addresses") or [])
        return found if found == pod_ips else None

    wait_until(endpoint_ips)
    slices = kubectl.json("get", "endpointslices", "-l", "kubernetes.io/service-name=web", ns=ns)
    assert slices["items"][0]["ports"][0]["port"] == 8080
    assert sorted(e["addresses"][0] for e in slices["items"][0]["endpoints"]) == pod_ips


def test_claims_bind_to_provisioned_volumes(kubectl: Kubectl, ns: str) -> None:
    claim = (
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\n"
        "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n"
    )
    kubectl("apply", "-f", "-", ns=ns, stdin=claim)
    kubectl("wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=30s", ns=ns)
    pvc = rows(kubectl("get", "pvc", "data", ns=ns))[0]
    assert pvc[1] == "Bound" and pvc[3:6] == ["1Gi", "RWO", "standard-rwo"]
    volume = kubectl.json("get", "pv", pvc[2])
    assert volume["spec"]["claimRef"]["name"] == "data" and volume["status"]["phase"] == "Bound"
    assert rows(kubectl("get", "sc"))[0][:2] == ["standard-rwo (default)", "pd.csi.storage.gke.io"]
    kubectl("delete", "pvc", "data", ns=ns)
    wait_until(lambda: kubectl.run("get", "pv", pvc[2], check=False).returncode == 1)


def test_autoscale_whoami_can_i_and_tokens(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-f", "-", ns=ns, stdin=deployment())
    # kubectl autoscale posts autoscaling/v1 (targetCPUUtilizationPercentage).
    out = kubectl("autoscale", "deploy/web", "--min=1", "--max=3", "--cpu-percent=70", ns=ns)
    assert out == "horizontalpodautoscaler.autoscaling/web autoscaled\n"
    v2 = kubectl.json("get", "hpa.v2.autoscaling", "web", ns=ns)
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert kubectl("get", "hpa", "web", "-o", "jsonpath={.spec.maxReplicas}", ns=ns) == "3"
    # authentication.k8s.io/v1 SelfSubjectReview, SelfSubjectAccessReview, TokenRequest.
    assert "Username" in kubectl("auth", "whoami")
    assert kubectl("auth", "can-i", "create", "deployments", ns=ns) == "yes\n"
    token = kubectl("create", "token", "default", ns=ns).strip()
    assert token.count(".") == 2


def test_imperative_creates_and_delete(kubectl: Kubectl, ns: str) -> None:
    # kubectl 1.32 and 1.33 send these as protobuf (test_create_sends_protobuf...).
    assert kubectl("create", "deployment", "api", "--image=nginx", ns=ns) == (
        "deployment.apps/api created\n"
    )
    assert (
        kubectl("create", "configmap", "c", "--from-literal=k=v", ns=ns) == "configmap/c created\n"
    )
    assert kubectl("create", "secret", "generic", "s", "--from-literal=k=v", ns=ns) == (
        "secret/s created\n"
    )
    assert kubectl.json("get", "secret", "s", ns=ns)["data"] == {"k": "dg=="}
    kubectl("rollout", "status", "deploy/api", "--timeout=30s", ns=ns)
    assert kubectl("delete", "deploy", "api", ns=ns) == 'deployment.apps "api" deleted\n'
    # Background cascade: the ReplicaSet and its pods go too (garbage collector).
    wait_until(lambda: not kubectl.json("get", "pods", ns=ns)["items"])
    assert not kubectl.json("get", "rs", ns=ns)["items"]


class LineReader:
    """A child's output lines on a thread, so a test can wait for one with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")  # end of stream

    def until(self, pattern: str, timeout: float = 15.0) -> list[str]:
        """Lines up to and including the first matching ``pattern``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not seen or not re.search(pattern, seen[-1]):
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {seen}") from None
            assert line, f"stream ended before {pattern!r}: {seen}"
            seen.append(line)
        return seen


def test_get_watch_streams_table_rows(kubectl: Kubectl, ns: str) -> None:
    # kubectl get -w watches with Accept as=Table: each event is a one-row Table
    # (apiserver/pkg/endpoints/handlers/watch.go transforms watch objects too).
    kubectl("create", "configmap", "first", "--from-literal=a=1", ns=ns)
    with kubectl.streaming("get", "configmaps", "-w", ns=ns) as reader:
        listed = reader.until(r"^first\s")
        assert header(listed[0]) == ["NAME", "DATA", "AGE"]
        kubectl("create", "configmap", "watched", "--from-literal=a=1", "--from-literal=b=2", ns=ns)
        assert re.match(r"watched\s+2\s+\d+s", reader.until(r"^watched\s")[-1])


def test_server_side_apply_labels_env_and_history(kubectl: Kubectl, ns: str) -> None:
    manifest = deployment(replicas=1)
    out = kubectl("apply", "--server-side", "-f", "-", ns=ns, stdin=manifest)
    assert out == "deployment.apps/web serverside-applied\n"
    assert kubectl("label", "deploy", "web", "tier=front", ns=ns) == "deployment.apps/web labeled\n"
    assert kubectl("annotate", "deploy", "web", "note=x", ns=ns) == (
        "deployment.apps/web annotated\n"
    )
    assert kubectl("set", "env", "deploy/web", "MODE=blue", ns=ns) == (
        "deployment.apps/web env updated\n"
    )
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns=ns)
    revision = kubectl("rollout", "history", "deploy/web", "--revision=2", ns=ns)
    assert "with revision #2" in revision and "MODE:\tblue" in revision
    live = kubectl.json("get", "deploy", "web", "--show-managed-fields", ns=ns)
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    # Server-side apply's manager is "kubectl"; controllers write as the binary they run in.
    assert {
        ("kubectl", "Apply"),
        ("kubectl-label", "Update"),
        ("kube-controller-manager", "Update"),
    } <= managers


def test_client_side_apply_merges_service_ports_by_port(kubectl: Kubectl, ns: str) -> None:
    # kubectl apply builds a strategic merge patch from the OpenAPI v3 merge keys:
    # Service ports merge by "port" (x-kubernetes-patch-merge-key in the real schema),
    # so a port dropped from the file is deleted and a new one added.
    def service(ports: str) -> str:
        return (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
            f"spec: {{selector: {{app: web}}, ports: {ports}}}\n"
        )

    kubectl(
        "apply", "-f", "-", ns=ns, stdin=service("[{name: http, port: 80}, {name: a, port: 9000}]")
    )
    changed = service("[{name: http, port: 80, targetPort: 8081}, {name: m, port: 9100}]")
    assert kubectl("apply", "-f", "-", ns=ns, stdin=changed) == "service/s configured\n"
    ports = kubectl.json("get", "svc", "s", ns=ns)["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [
        ("http", 80, 8081),
        ("m", 9100, 9100),
    ]


CREATES = [
    ("configmap", "cm", "--from-literal=a=b", "--from-literal=c="),
    ("secret", "generic", "sec", "--from-literal=p=q"),
    (
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=r.example",
        "--docker-username=u",
        "--docker-password=p",
    ),
    ("secret", "tls", "tls", "--cert=CERT", "--key=KEY"),
    ("namespace", "created-ns"),
    ("deployment", "dep", "--image=nginx", "--replicas=0", "--port=80"),
    ("service", "clusterip", "svc", "--tcp=80:8080"),
    ("service", "nodeport", "np", "--tcp=80:8080"),
    ("serviceaccount", "sa"),
    ("cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *", "--", "true"),
    ("job", "from-cj", "--from=cronjob/cj"),
    ("job", "plain", "--image=busybox", "--", "true"),
    ("role", "reader", "--verb=get", "--resource=pods"),
    ("rolebinding", "rb", "--role=reader", "--user=u"),
    ("clusterrole", "created-cr", "--verb=get", "--resource=pods"),
    ("clusterrolebinding", "created-crb", "--clusterrole=created-cr", "--user=u"),
    ("poddisruptionbudget", "pdb", "--selector=app=x", "--min-available=50%"),
    ("ingress", "ing", "--rule=foo.com/bar=svc:8080"),
    ("quota", "q", "--hard=cpu=1,pods=2,limits.memory=1Gi"),
    ("priorityclass", "created-pc", "--value=1000", "--description=batch"),
]


def test_create_sends_protobuf_and_stores_what_json_would(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    """`kubectl create <kind>` (k8s.io/kubectl pkg/cmd/create) for each built-in kind.

    A real API server decodes protobuf bodies for built-in kinds
    (k8s.io/apimachinery pkg/runtime/serializer/protobuf); kubectl >= 1.32 sends them.
    """
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=x",
         "-keyout", str(key), "-out", str(cert), "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    for args in CREATES:
        argv = [a.replace("CERT", str(cert)).replace("KEY", str(key)) for a in args]
        done = kubectl.run("-v=8", "create", *argv, ns=ns)
        assert "Content-Type: application/vnd.kubernetes.protobuf" in done.stderr, argv
        assert done.stdout.strip().endswith("created"), (argv, done.stdout)
    assert kubectl.json("get", "cm", "cm", ns=ns)["data"] == {"a": "b", "c": ""}
    assert kubectl.json("get", "secret", "sec", ns=ns)["data"] == {"p": "cQ=="}
    assert kubectl.json("get", "secret", "tls", ns=ns)["type"] == "kubernetes.io/tls"
    dep = kubectl.json("get", "deploy", "dep", ns=ns)
    assert dep["spec"]["replicas"] == 0  # a pointer's zero survives the decoder
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    svc = kubectl.json("get", "svc", "svc", ns=ns)["spec"]["ports"][0]
    assert (svc["port"], svc["targetPort"]) == (80, 8080)
    job = kubectl.json("get", "job", "from-cj", ns=ns)
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
    pdb = kubectl.json("get", "pdb", "pdb", ns=ns)["spec"]
    assert pdb["minAvailable"] == "50%"
    assert kubectl.json("get", "ingress", "ing", ns=ns)["spec"]["rules"][0]["host"] == "foo.com"
    quota = kubectl("get", "quota", "q", ns=ns)  # printResourceQuota: used/hard, limits apart
    assert rows(quota)[0][2:] == ["cpu: 0/1, pods: 0/2", "limits.memory: 0/1Gi"]
    assert header(kubectl("get", "pc", "created-pc")) == [
        "NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"
    ]  # fmt: skip
    kubectl("delete", "pc", "created-pc")
    kubectl("delete", "ns", "created-ns", "--wait=false")
    kubectl("delete", "clusterrolebinding", "created-crb")
    kubectl("delete", "clusterrole", "created-cr")


def test_custom_resources_are_not_accepted_as_protobuf(kube: KubeEmulator, ns: str) -> None:
    """A real server has no protobuf for custom resources: 415, so clients send JSON."""
    import http.client

    from steps.sandbox.kube.protobuf import MAGIC

    conn = http.client.HTTPConnection("127.0.0.1", kube.port, timeout=10)
    conn.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        body=MAGIC + b"\x0a\x12\x0a\x0eexample.com/v1\x12\x00",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    answer = conn.getresponse()
    assert answer.status == 415
    assert b"the body of the request was in an unknown format" in answer.read()


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what differs between two creations of it (ids, times, allocations)."""
    obj = yaml.safe_load(yaml.safe_dump(obj))
    obj.pop("status", None)  # controllers move it on in their own time
    for key in ("uid", "creationTimestamp", "resourceVersion", "managedFields", "namespace"):
        obj["metadata"].pop(key, None)
    for owner in obj["metadata"].get("ownerReferences") or []:
        owner.pop("uid")  # the CronJob of each namespace
    spec = obj.get("spec") or {}
    for key in ("clusterIP", "clusterIPs"):
        spec.pop(key, None)
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)
    if obj["kind"] == "Job":  # the controller-uid label and selector name the Job's uid
        spec.pop("selector", None)
        for meta in (obj["metadata"], spec["template"]["metadata"]):
            for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
                meta.get("labels", {}).pop(key, None)
    return obj


def test_protobuf_and_json_bodies_store_the_same_object(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    """The oracle for the decoder: the same object sent as JSON (`create -f`, unstructured).

    `kubectl create <kind> --dry-run=client -o json` prints the object kubectl would
    send; `create -f` sends it as JSON into a second namespace. Both stored objects
    must be equal but for ids, times and allocations.
    """
    json_ns = f"{ns}-json"[:63]
    kubectl("create", "namespace", json_ns)
    cluster_scoped = ("namespace", "clusterrole", "clusterrolebinding", "priorityclass")
    # (the tls secret needs files; test_create_sends_protobuf... covers it)
    namespaced = [a for a in CREATES if a[0] not in cluster_scoped and "tls" not in a]
    for args in namespaced:
        kubectl("create", *args, ns=ns)
        sent = kubectl("create", "--dry-run=client", "-o", "json", *args, ns=json_ns)
        kubectl("create", "-f", "-", ns=json_ns, stdin=sent)
    for args in namespaced:
        name = args[2] if args[0] in ("secret", "service") else args[1]
        via_protobuf = kubectl.json("get", args[0], name, ns=ns)
        via_json = kubectl.json("get", args[0], name, ns=json_ns)
        assert comparable(via_protobuf) == comparable(via_json), args


def test_drain_deletes_with_protobuf_delete_options(kubectl: Kubectl, ns: str) -> None:
    """`kubectl drain` (k8s.io/kubectl pkg/drain): cordon, then evict or delete each pod.

    Its typed client sends DeleteOptions as protobuf. The emulator serves no
    `pods/eviction`, so kubectl deletes (as against a server without the policy API).
    """
    kubectl("create", "deployment", "drained", "--image=nginx", "--replicas=1", ns=ns)
    kubectl("rollout", "status", "deploy/drained", "--timeout=30s", ns=ns)
    (pod,) = kubectl.json("get", "pods", "-l", "app=drained", ns=ns)["items"]
    node = pod["spec"]["nodeName"]
    try:
        done = kubectl.run(
            "-v=8", "drain", node, "--pod-selector=app=drained", "--timeout=30s", "--force"
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"node/{node} drained" in done.stdout
        assert "Content-Type: application/vnd.kubernetes.protobuf" in done.stderr
        assert kubectl.json("get", "node", node)["spec"]["unschedulable"] is True
        wait_until(
            lambda: all(
                p["metadata"]["name"] != pod["metadata"]["name"]
                for p in kubectl.json("get", "pods", ns=ns)["items"]
            )
        )
    finally:
        kubectl("uncordon", node)
