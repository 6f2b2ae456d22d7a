"""The real kubectl against the emulator serving HTTPS, as a GKE endpoint is reached.

kubectl takes another path over TLS than over plain HTTP: clientcmd asks for
credentials whenever the server is HTTPS and the kubeconfig's user has none
(k8s.io/client-go/tools/clientcmd/client_config.go, ``getUserIdentificationPartialConfig``
prompts on stdin, and ``kubectl apply -f -`` then reads ``error: EOF``). Go's
TLS client also offers ``h2`` by ALPN; the emulator speaks HTTP/1.1 and must
not accept ``h2``. So a representative subset of the conformance cases runs
again over TLS, with the CA in the kubeconfig, for each kubectl version.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import yaml
from test_kubectl_conformance import (
    VERSIONS,
    Kubectl,
    deployment,
    header,
    versioned_kubectl,
)

from steps.sandbox.kube import KubeEmulator, Timings


@pytest.fixture(scope="module", params=VERSIONS, ids=[f"kubectl{v}" for v in VERSIONS])
def tls_kubectl(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kubectl]:
    emulator = KubeEmulator(timings=Timings.fast(), tls=True).start()
    try:
        yield Kubectl(versioned_kubectl(str(request.param)), emulator, tmp_path_factory.mktemp("h"))
    finally:
        emulator.stop()


def test_the_kubeconfig_verifies_the_server_and_carries_credentials(tls_kubectl: Kubectl) -> None:
    config = yaml.safe_load(tls_kubectl.kube.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
    assert config["clusters"][0]["cluster"]["certificate-authority-data"]
    assert "insecure-skip-tls-verify" not in config["clusters"][0]["cluster"]
    # kubectl answers "Please enter Username:" (then EOF) to a user with no credentials.
    assert tls_kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")


def test_get_apply_and_server_side_apply_over_tls(tls_kubectl: Kubectl) -> None:
    kubectl = tls_kubectl
    assert kubectl("create", "namespace", "tls") == "namespace/tls created\n"
    assert "default" in kubectl("get", "namespaces", "-o", "name")
    manifest = deployment(replicas=1)
    assert kubectl("apply", "-f", "-", ns="tls", stdin=manifest) == "deployment.apps/web created\n"
    assert kubectl("apply", "-f", "-", ns="tls", stdin=manifest) == (
        "deployment.apps/web unchanged\n"
    )
    served = kubectl("apply", "--server-side", "-f", "-", ns="tls", stdin=deployment("api"))
    assert served == "deployment.apps/api serverside-applied\n"
    kubectl("rollout", "status", "deploy/web", "--timeout=30s", ns="tls")
    kubectl("rollout", "status", "deploy/api", "--timeout=30s", ns="tls")
    assert kubectl.json("get", "deploy", "api", ns="tls")["status"]["readyReplicas"] == 2


def test_watch_streams_over_tls(tls_kubectl: Kubectl) -> None:
    kubectl = tls_kubectl
    kubectl("create", "namespace", "tls-watch")
    kubectl("create", "configmap", "first", "--from-literal=a=1", ns="tls-watch")
    with kubectl.streaming("get", "configmaps", "-w", ns="tls-watch") as reader:
        assert header(reader.until(r"^first\s")[0]) == ["NAME", "DATA", "AGE"]
        kubectl("create", "configmap", "watched", "--from-literal=a=1", ns="tls-watch")
        reader.until(r"^watched\s+1\s")


def test_h2_is_not_negotiated_and_a_silent_client_stalls_no_one(tls_kubectl: Kubectl) -> None:
    # Go offers "h2" then "http/1.1" by ALPN; a server that picked h2 would have to
    # speak HTTP/2 frames. Selecting none is what an HTTP/1.1-only server does.
    kube = tls_kubectl.kube
    assert kube.ca_pem is not None
    address = urlsplit(kube.url)
    host, port = address.hostname or "", address.port or 0
    context = ssl.create_default_context(cadata=kube.ca_pem)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with context.wrap_socket(socket.create_connection((host, port)), server_hostname=host) as tls:
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
    # A TCP client that never sends its TLS hello holds only its own connection.
    with socket.create_connection((host, port)):
        assert "namespace/default" in tls_kubectl(
            "get", "namespaces", "-o", "name", "--request-timeout=20s"
        )
