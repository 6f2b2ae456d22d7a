"""``steps.lib.httpwire`` against real, independent HTTP servers; ``http.client`` referees.

Our own fake servers (tests/test_httpwire.py) only say what we believe HTTP
is. Here the servers are Go's ``net/http``: Debian's ``docker-registry``
(started by the sandbox launcher) and the real ``kubectl proxy`` in front of
the Kubernetes emulator, whose reverse proxy re-frames every answer (watches
are streamed in chunks). Each request goes through ``kubehttp.Transport`` as
the product sends it, and the same request through the standard library's
``http.client`` must get the same status, headers that matter and body.
Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from steps import verify_rollout as stage
from steps.lib import httpwire
from steps.lib.kube import KubeApi
from steps.lib.kubehttp import Transport
from steps.sandbox.kube import KubeEmulator
from steps.sandbox.registry import LocalRegistry

KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.32")
COMPARED_HEADERS = ("Content-Type", "Content-Length", "Docker-Content-Digest", "Location")
Answer = tuple[int, dict[str, str | None], bytes]


def ours(transport: Transport, method: str, target: str, **headers: str) -> Answer:
    body = headers.pop("body", None)
    response = transport.request(
        method,
        target,
        headers=headers,
        body=body.encode() if isinstance(body, str) else body,
        timeout=10,
    )
    return response.status, _picked(response.headers.get), response.data


def stdlib(address: str, method: str, target: str, **headers: str) -> Answer:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        body = headers.pop("body", None)
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, _picked(response.getheader), response.read()
    finally:
        connection.close()


def _picked(get: Any) -> dict[str, str | None]:
    return {name: get(name) for name in COMPARED_HEADERS}


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per TCP connection httpwire opens."""
    opened: list[int] = []
    original = httpwire.Connection.connect

    def counted(self: httpwire.Connection) -> None:
        original(self)
        opened.append(1)

    monkeypatch.setattr(httpwire.Connection, "connect", counted)
    return opened


# -- Debian's docker-registry (Go net/http) ------------------------------------------------


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry) -> tuple[str, str]:
    """A repository with one image; its layer's digest."""
    repository = "httpwire-oracle/app"
    registry.push_image(repository, "v1", seed="httpwire-oracle")
    status, _, body = stdlib(
        registry.address,
        "GET",
        f"/v2/{repository}/manifests/v1",
        Accept="application/vnd.oci.image.manifest.v1+json",
    )
    assert status == 200
    return repository, json.loads(body)["layers"][0]["digest"]


def test_registry_answers_agree_with_http_client(
    registry: LocalRegistry, pushed: tuple[str, str], connects: list[int]
) -> None:
    repository, layer = pushed
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "/v2/", {}),
        ("GET", f"/v2/{repository}/manifests/nope", accept),  # 404, a JSON body
        ("HEAD", f"/v2/{repository}/manifests/v1", accept),  # a length, no body
        ("HEAD", f"/v2/{repository}/manifests/nope", accept),
        ("GET", f"/v2/{repository}/manifests/v1", accept),
        ("GET", f"/v2/{repository}/blobs/{layer}", {}),  # binary, by Content-Length
        ("GET", "/v2/_catalog", {}),
    ]
    transport = Transport(registry.url)
    for method, target, headers in requests:
        mine = ours(transport, method, target, **headers)
        theirs = stdlib(registry.address, method, target, **headers)
        assert mine == theirs, (method, target)
    statuses = [ours(transport, m, t, **h)[0] for m, t, h in requests]
    assert statuses == [200, 404, 200, 404, 200, 200, 200]
    assert connects == [1]  # every answer was framed right: one kept-alive connection

    _, picked, blob = ours(transport, "GET", f"/v2/{repository}/blobs/{layer}")
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer
    assert picked["Content-Length"] == str(len(blob))
    _, _, error = ours(transport, "GET", f"/v2/{repository}/manifests/nope", **accept)
    assert json.loads(error)["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_a_large_blob_goes_up_and_comes_back_byte_for_byte(
    registry: LocalRegistry, connects: list[int]
) -> None:
    """POST then PUT with a body of several socket buffers; GET it back whole."""
    blob = os.urandom(3 * 1024 * 1024 + 17)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    transport = Transport(registry.url)
    started = transport.request(
        "POST", "/v2/httpwire-oracle/big/blobs/uploads/", headers={}, body=b"", timeout=10
    )
    assert started.status == 202, started.data
    location = urlsplit(started.headers.get("Location") or "")
    target = f"{location.path}?{location.query}&digest={digest}"
    done = transport.request(
        "PUT",
        target,
        headers={"Content-Type": "application/octet-stream"},
        body=blob,
        timeout=30,
    )
    assert done.status == 201, done.data
    back = ours(transport, "GET", f"/v2/httpwire-oracle/big/blobs/{digest}")
    assert back[0] == 200 and back[2] == blob
    assert back == stdlib(registry.address, "GET", f"/v2/httpwire-oracle/big/blobs/{digest}")
    assert connects == [1]


# -- kubectl proxy (Go's reverse proxy) in front of the emulator -------------------------


@pytest.fixture
def proxy(kube: KubeEmulator, tmp_path: Path) -> Iterator[str]:
    """``kubectl proxy`` on a free loopback port; its ``127.0.0.1:PORT``."""
    assert os.access(KUBECTL, os.X_OK), f"{KUBECTL} is missing: the Google Cloud CLI's kubectl"
    process = subprocess.Popen(
        [str(KUBECTL), "proxy", "--address=127.0.0.1", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kube.kubeconfig)},
    )
    output = process.stdout
    assert output is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(output.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=30)
        found = re.search(r"Starting to serve on (127\.0\.0\.1:\d+)", line)
        assert found, line
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_kubectl_proxy_answers_agree_with_http_client(kube: KubeEmulator, proxy: str) -> None:
    transport = Transport(f"http://{proxy}")
    api = KubeApi(transport)
    configmaps = api.resource("v1", "ConfigMap")
    assert configmaps is not None
    applied = api.apply(
        configmaps,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "wire", "namespace": "default"},
            "data": {"a": "1"},
        },
    )
    assert applied["data"] == {"a": "1"}
    assert [
        o["data"] for o in kube.objects("configmaps", "default") if o["metadata"]["name"] == "wire"
    ] == [{"a": "1"}]

    json_accept = {"Accept": "application/json"}
    for target in (
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps/wire",
        "/api/v1/namespaces/default/configmaps/absent",
        "/apis/apps/v1",
    ):
        mine = ours(transport, "GET", target, **json_accept)
        theirs = stdlib(proxy, "GET", target, **json_accept)
        assert (mine[0], mine[1]["Content-Type"]) == (theirs[0], theirs[1]["Content-Type"]), target
        assert json.loads(mine[2]) == json.loads(theirs[2]), target
    assert api.get("/api/v1/namespaces/default/configmaps/absent") is None
    listed = api.request("GET", "/api/v1/namespaces/default/configmaps")
    assert "wire" in [item["metadata"]["name"] for item in listed["items"]]


def test_a_watch_through_kubectl_proxy_streams_events_as_they_happen(
    kube: KubeEmulator, proxy: str
) -> None:
    """Go's proxy streams the watch in chunks; each event must come out as it arrives."""
    api = KubeApi(Transport(f"http://{proxy}"))
    configmaps = api.resource("v1", "ConfigMap")
    assert configmaps is not None
    path = configmaps.path("default")
    version = api.request("GET", path)["metadata"]["resourceVersion"]
    stream = api.watch(path, version)  # the product's server-side timeout: minutes
    assert stream.response.headers.get("Transfer-Encoding") == "chunked"  # Go re-framed it
    host, port = proxy.split(":")
    reference = http.client.HTTPConnection(host, int(port), timeout=30)
    reference.request("GET", f"{path}?watch=true&resourceVersion={version}")
    theirs = reference.getresponse()
    assert theirs.status == 200

    def first_added(read1: Any, into: list[dict[str, Any]]) -> None:
        buffer = b""
        while b"\n" not in buffer and (chunk := read1(65536)):
            buffer += chunk  # read1: what has arrived, without waiting for the end
        into.append(json.loads(buffer.split(b"\n", 1)[0]))

    mine: list[dict[str, Any]] = []
    reference_events: list[dict[str, Any]] = []
    readers = [
        threading.Thread(target=first_added, args=(stream.response.read1, mine), daemon=True),
        threading.Thread(target=first_added, args=(theirs.read1, reference_events), daemon=True),
    ]
    try:
        for reader in readers:
            reader.start()
        api.apply(
            configmaps,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "streamed", "namespace": "default"},
            },
        )
        for reader in readers:
            reader.join(timeout=30)  # bound: a reader waiting for the stream's end never returns
        assert [r.is_alive() for r in readers] == [False, False], "an event was held back"
    finally:
        stream.close()
        reference.close()
    assert mine == reference_events
    assert (mine[0]["type"], mine[0]["object"]["metadata"]["name"]) == ("ADDED", "streamed")


def test_a_large_object_through_kubectl_proxy(kube: KubeEmulator, proxy: str) -> None:
    transport = Transport(f"http://{proxy}")
    api = KubeApi(transport)
    configmaps = api.resource("v1", "ConfigMap")
    assert configmaps is not None
    data = {f"key{i}": os.urandom(3000).hex() for i in range(100)}  # ~600 KB of JSON
    api.apply(
        configmaps,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "big", "namespace": "default"},
            "data": data,
        },
    )
    target = configmaps.path("default", "big")
    mine = ours(transport, "GET", target, Accept="application/json")
    theirs = stdlib(proxy, "GET", target, Accept="application/json")
    assert mine[0] == theirs[0] == 200
    assert json.loads(mine[2])["data"] == json.loads(theirs[2])["data"] == data


def test_verify_rollout_through_kubectl_proxy(
    kube: KubeEmulator, proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "proxy-kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "proxy", "cluster": {"server": f"http://{proxy}"}}],
                "users": [{"name": "nobody", "user": {}}],
                "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "nobody"}}],
                "current-context": "proxy",
            }
        )
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "example.com/web:1"}]},
            },
        },
    }
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(yaml.safe_dump(deployment))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    code = stage.main(
        ["--manifests", str(manifests), "--kubeconfig", str(kubeconfig), "--timeout", "60s"]
    )
    assert code == 0
    (live,) = [o for o in kube.objects("deployments", "default") if o["metadata"]["name"] == "web"]
    assert live["status"].get("availableReplicas") == 2


def test_a_watch_go_ends_leaves_the_connection_reusable(
    kube: KubeEmulator, proxy: str, connects: list[int]
) -> None:
    """The last chunk and its empty trailer, as Go's proxy writes them, end the body cleanly."""
    api = KubeApi(Transport(f"http://{proxy}"))
    path = "/api/v1/namespaces/default/configmaps"
    version = api.request("GET", path)["metadata"]["resourceVersion"]
    stream = api.watch(path, version, timeout_seconds=1)
    assert stream.response.headers.get("Transfer-Encoding") == "chunked"
    events = list(stream.events())  # read to the end: the server ends the watch
    assert {event["type"] for event in events} <= {"BOOKMARK"}  # nothing else happened
    stream.close()
    assert api.get(path + "/kube-root-ca.crt") is not None
    assert connects == [1]  # the first GET, the watch and this GET on one connection
