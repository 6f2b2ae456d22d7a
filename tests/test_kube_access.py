"""Cluster access: --cluster through the GKE API stand-in and real google-auth, kubeconfig.

google-auth reads ``GCE_METADATA_HOST`` when it is imported, so the --cluster
cases run in a child process with the sandbox's environment: the real ADC
discovery (metadata ping, service account, token) runs against loopback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steps.lib.errors import UsageError
from steps.lib.kube import KubeApi
from steps.lib.kube_access import Access, ClusterName, access_from_args, connect, gke_endpoint
from steps.lib.lease import lease_holder, micro_time
from steps.sandbox.gcp import Cluster, GcpSandbox

CLUSTER = "projects/p1/locations/europe-west1/clusters/prod"
DISCOVERY = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["get"]},
        {"name": "pods/log", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
        {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["get"]},
    ],
}


class FakeApiServer:
    """Answers GET /api/v1 and records each request's Authorization header."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.authorizations: list[str | None] = []
        seen = self.authorizations

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization"))
                body = json.dumps(DISCOVERY if self.path == "/api/v1" else {}).encode()
                self.send_response(200 if self.path == "/api/v1" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gcp() -> Iterator[GcpSandbox]:
    with GcpSandbox(token_lifetime=3600) as sandbox:
        yield sandbox


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as Debian ships it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from steps.lib.kube_access import Access, ClusterName, connect
    access = Access(cluster=ClusterName.parse(sys.argv[1]), container_api_url=sys.argv[2],
                    endpoint=sys.argv[3])
    api = connect(access)
    first = api.resources("v1")["ConfigMap"]  # discovery itself: two requests to the API
    time.sleep(float(sys.argv[4]))
    api.forget_discovery()
    second = api.resources("v1")["Namespace"]
    print(json.dumps({"host": api.host, "first": first.plural, "second": second.namespaced}))
    """
)


def run_child(
    gcp: GcpSandbox, tmp_path: Path, endpoint: str = "public", pause: float = 0.0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_", "GITOPS_"))}
    env.update(gcp.environ())
    env.update(
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),  # no user ADC file found by accident
        GCE_METADATA_TIMEOUT="2",
    )
    return subprocess.run(
        [sys.executable, "-c", CHILD, CLUSTER, gcp.url, endpoint, str(pause)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# -- pure parts ---------------------------------------------------------------


def test_cluster_names() -> None:
    name = ClusterName.parse(CLUSTER)
    assert (name.project, name.location, name.cluster) == ("p1", "europe-west1", "prod")
    assert name.path == CLUSTER
    for bad in ("prod", "projects/p/zones/z/clusters/c", "projects//locations/l/clusters/c"):
        with pytest.raises(UsageError, match="--cluster"):
            ClusterName.parse(bad)


def _args(**given: Any) -> argparse.Namespace:
    flags = ("cluster", "private_endpoint", "dns_endpoint", "container_api_url", "kubeconfig")
    values: dict[str, Any] = dict.fromkeys(flags)
    values.update(context=None, in_cluster=False, private_endpoint=False, dns_endpoint=False)
    values.update(given)
    return argparse.Namespace(**values)


def test_access_flags_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UsageError, match="--cluster and --kubeconfig"):
        access_from_args(_args(cluster=CLUSTER, kubeconfig="k"))
    with pytest.raises(UsageError, match="exclude each other"):
        access_from_args(_args(cluster=CLUSTER, private_endpoint=True, dns_endpoint=True))
    with pytest.raises(UsageError, match="only goes with --cluster"):
        access_from_args(_args(private_endpoint=True))
    with pytest.raises(UsageError, match="--context only goes with a kubeconfig"):
        access_from_args(_args(cluster=CLUSTER, context="x"))
    assert access_from_args(_args()).in_cluster is False
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert access_from_args(_args()).in_cluster is True
    access = access_from_args(_args(cluster=CLUSTER, dns_endpoint=True))
    assert access.endpoint == "dns" and "dns endpoint" in access.describe()


@pytest.mark.parametrize(
    ("cluster", "mode", "host", "has_ca"),
    [
        (Cluster("34.1.2.3", "PEM"), "public", "https://34.1.2.3", True),
        (
            Cluster("34.1.2.3", "PEM", private_endpoint="10.0.0.2"),
            "private",
            "https://10.0.0.2",
            True,
        ),
        (Cluster(None, "PEM", private_endpoint="10.0.0.2"), "private", "https://10.0.0.2", True),
        (
            Cluster(None, "PEM", dns_endpoint="gke-abc.europe-west1.gke.goog"),
            "dns",
            "https://gke-abc.europe-west1.gke.goog",
            False,
        ),
    ],
)
def test_gke_endpoint_choice(cluster: Cluster, mode: str, host: str, has_ca: bool) -> None:
    endpoint = gke_endpoint(cluster.resource(CLUSTER), mode, CLUSTER)
    assert endpoint.host == host
    assert (endpoint.ca_pem == "PEM") is has_ca


@pytest.mark.parametrize(
    ("cluster", "mode", "problem"),
    [
        (Cluster(None, "PEM", private_endpoint="10.0.0.2"), "public", "no public endpoint"),
        (Cluster("34.1.2.3", "PEM"), "private", "no private endpoint"),
        (Cluster("34.1.2.3", "PEM"), "dns", "no DNS endpoint"),
    ],
)
def test_gke_endpoint_missing(cluster: Cluster, mode: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        gke_endpoint(cluster.resource(CLUSTER), mode, CLUSTER)


def test_lease_holder_and_expiry() -> None:
    lease = {
        "spec": {
            "holderIdentity": "build 1",
            "leaseDurationSeconds": 30,
            "renewTime": micro_time(1000.0),
        }
    }
    assert lease_holder(lease, 1010.0) == ("build 1", 20.0)
    assert lease_holder(lease, 1031.0) == (None, 0.0)
    assert lease_holder({"spec": {"leaseDurationSeconds": 30}}, 1010.0) == (None, 0.0)


# -- the metadata server --------------------------------------------------------


def test_metadata_server_requires_the_flavor_header(gcp: GcpSandbox) -> None:
    path = "/computeMetadata/v1/instance/service-accounts/default/token"
    conn = http.client.HTTPConnection("127.0.0.1", gcp.port, timeout=5)
    conn.request("GET", path)
    refused = conn.getresponse()
    refused.read()
    assert refused.status == 403
    conn.request("GET", path, headers={"Metadata-Flavor": "Google"})
    answer = conn.getresponse()
    token = json.loads(answer.read())
    assert answer.status == 200 and token["token_type"] == "Bearer"
    conn.request("GET", f"/v1/{CLUSTER}", headers={"Authorization": "Bearer forged"})
    forged = conn.getresponse()
    forged.read()
    assert forged.status == 401
    conn.close()


# -- --cluster end to end, in a child process ----------------------------------


def test_cluster_over_tls_with_the_ca_from_the_gke_api(
    gcp: GcpSandbox, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    api_server = FakeApiServer(tls=certificate)
    try:
        gcp.add_cluster(
            CLUSTER, Cluster(f"127.0.0.1:{api_server.port}", certificate[0].read_text())
        )
        proc = run_child(gcp, tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out == {
            "host": f"https://127.0.0.1:{api_server.port}",
            "first": "configmaps",
            "second": False,
        }
        tokens = gcp.tokens_issued
        assert api_server.authorizations == [f"Bearer {tokens[-1]}"] * 2
        # The real google-auth path: ping, then the token, each with the flavor header.
        metadata = [r for r in gcp.requests if not r.path.startswith("/v1/")]
        assert metadata and all(r.metadata_flavor == "Google" for r in metadata)
    finally:
        api_server.close()


def test_cluster_token_is_refreshed_when_it_expires(gcp: GcpSandbox, tmp_path: Path) -> None:
    api_server = FakeApiServer()
    try:
        # google-auth refreshes 3m45s before expiry: 226 s lives about one second.
        gcp._state.token_lifetime = 226
        gcp.add_cluster(CLUSTER, Cluster(f"http://127.0.0.1:{api_server.port}"))
        proc = run_child(gcp, tmp_path, pause=1.5)
        assert proc.returncode == 0, proc.stderr
        sent = [a for a in api_server.authorizations if a]
        assert len(set(sent)) == 2, sent
        assert len(gcp.tokens_issued) >= 2
    finally:
        api_server.close()


def test_cluster_errors_are_one_line(gcp: GcpSandbox, tmp_path: Path) -> None:
    proc = run_child(gcp, tmp_path)  # no cluster added
    assert proc.returncode != 0
    assert f"--cluster {CLUSTER}: not found" in proc.stderr
    gcp.add_cluster(CLUSTER, Cluster("34.1.2.3", "PEM", private_endpoint=None))
    proc = run_child(gcp, tmp_path, endpoint="dns")
    assert "has no DNS endpoint" in proc.stderr


def test_cluster_api_retries_transient_failures(gcp: GcpSandbox, tmp_path: Path) -> None:
    api_server = FakeApiServer()
    try:
        gcp.add_cluster(CLUSTER, Cluster(f"http://127.0.0.1:{api_server.port}"))
        gcp.fail_next(2, status=503)
        proc = run_child(gcp, tmp_path)
        assert proc.returncode == 0, proc.stderr
    finally:
        api_server.close()


# -- kubeconfig -----------------------------------------------------------------


def test_kubeconfig_context_and_namespace(tmp_path: Path) -> None:
    api_server = FakeApiServer()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "c", "cluster": {"server": f"http://127.0.0.1:{api_server.port}"}}
                    ],
                    "users": [{"name": "u", "user": {"token": "kubeconfig-token-1"}}],
                    "contexts": [
                        {"name": "a", "context": {"cluster": "c", "user": "u"}},
                        {
                            "name": "b",
                            "context": {"cluster": "c", "user": "u", "namespace": "prod"},
                        },
                    ],
                    "current-context": "a",
                }
            )
        )
        api = connect(Access(kubeconfig=str(kubeconfig), context="b"))
        assert isinstance(api, KubeApi) and api.default_namespace == "prod"
        assert api.resources("v1") is not None  # discovery itself: one request to the API
        assert api_server.authorizations == ["Bearer kubeconfig-token-1"]
        assert connect(Access(kubeconfig=str(kubeconfig))).default_namespace == "default"
        with pytest.raises(UsageError, match="no such file"):
            connect(Access(kubeconfig=str(tmp_path / "absent")))
        with pytest.raises(UsageError, match=r"--context nope: no such context \(contexts: a, b\)"):
            connect(Access(kubeconfig=str(kubeconfig), context="nope"))
    finally:
        api_server.close()
