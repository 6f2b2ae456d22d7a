"""A GCE-style metadata server and a GKE Container API stand-in, on loopback.

With ``GCE_METADATA_HOST`` / ``GCE_METADATA_IP`` pointing here, google-auth's
Application Default Credentials take the Compute Engine path for real: a
ping that must answer ``Metadata-Flavor: Google``, the service account, and
tokens that expire after ``token_lifetime`` seconds. Requests without the
``Metadata-Flavor: Google`` header are refused, as on GCE.

The same server answers ``GET /v1/projects/P/locations/L/clusters/C`` like
``container.googleapis.com`` for the clusters added to it, only with a live
token it issued (401 otherwise), so ``--cluster`` runs end to end. A cluster
can be described from a kubeconfig (the Kubernetes emulator's).

``gitops-sandbox gcp --port N [--kubeconfig PATH]`` runs it in the foreground
and prints the environment a step needs to use it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from steps.sandbox.service import Service

HOST = "127.0.0.1"
DEFAULT_CLUSTER = "projects/sandbox-project/locations/europe-west1/clusters/sandbox"
SERVICE_ACCOUNT = "gitops-builder@sandbox-project.iam.gserviceaccount.com"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
METADATA = "/computeMetadata/v1/"


@dataclass
class Cluster:
    """What the stand-in says about one cluster (fields as the GKE API names them)."""

    endpoint: str | None
    ca_pem: str | None = None
    private_endpoint: str | None = None
    dns_endpoint: str | None = None
    status: str = "RUNNING"

    def resource(self, path: str) -> dict[str, Any]:
        name = path.rsplit("/", 1)[-1]
        location = path.split("/")[3]
        body: dict[str, Any] = {
            "name": name,
            "location": location,
            "selfLink": f"https://container.googleapis.com/v1/{path}",
            "status": self.status,
            "currentMasterVersion": "1.33.5-gke.1000000",
            "controlPlaneEndpointsConfig": {
                "ipEndpointsConfig": {
                    "enabled": True,
                    "enablePublicEndpoint": self.endpoint is not None,
                },
            },
        }
        if self.endpoint is not None:
            body["endpoint"] = self.endpoint
            body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["publicEndpoint"] = (
                self.endpoint
            )
        if self.ca_pem:
            encoded = base64.b64encode(self.ca_pem.encode()).decode()
            body["masterAuth"] = {"clusterCaCertificate": encoded}
        if self.private_endpoint:
            body["privateClusterConfig"] = {
                "enablePrivateNodes": True,
                "enablePrivateEndpoint": self.endpoint is None,
                "privateEndpoint": self.private_endpoint,
            }
            body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["privateEndpoint"] = (
                self.private_endpoint
            )
        if self.dns_endpoint:
            body["controlPlaneEndpointsConfig"]["dnsEndpointConfig"] = {
                "endpoint": self.dns_endpoint,
                "allowExternalTraffic": True,
            }
        return body


@dataclass
class Seen:
    method: str
    path: str
    metadata_flavor: str | None
    authorization: str | None


@dataclass
class _State:
    project: str
    token_lifetime: float
    clusters: dict[str, Cluster] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class GcpSandbox(Service):
    """The metadata server and Container API stand-in on 127.0.0.1."""

    def __init__(
        self, *, port: int = 0, project: str = "sandbox-project", token_lifetime: float = 3600
    ) -> None:
        self.port = port
        self._state = _State(project=project, token_lifetime=token_lifetime)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> GcpSandbox:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((HOST, self.port), _handler(self._state))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="gcp-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- what it serves

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def environ(self) -> dict[str, str]:
        """Variables that send google-auth and ``--cluster`` here."""
        return {
            "GCE_METADATA_HOST": self.address,
            "GCE_METADATA_IP": self.address,
            "GITOPS_CONTAINER_API_URL": self.url,
        }

    def add_cluster(self, name: str, cluster: Cluster) -> None:
        with self._state.lock:
            self._state.clusters[name.strip("/")] = cluster

    def add_cluster_from_kubeconfig(
        self, name: str, kubeconfig: Path, context: str | None = None, **extra: Any
    ) -> Cluster:
        cluster = cluster_from_kubeconfig(kubeconfig, context, **extra)
        self.add_cluster(name, cluster)
        return cluster

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` Container API requests answer ``status``."""
        with self._state.lock:
            self._state.failures.extend([status] * count)

    @property
    def tokens_issued(self) -> list[str]:
        with self._state.lock:
            return list(self._state.tokens)

    @property
    def requests(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.requests)


def cluster_from_kubeconfig(kubeconfig: Path, context: str | None = None, **extra: Any) -> Cluster:
    """A GKE-style cluster whose endpoint and CA are those of a kubeconfig's server."""
    config = yaml.safe_load(Path(kubeconfig).read_text()) or {}
    context_name = context or config.get("current-context")
    contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
    clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters") or []}
    entry = clusters[contexts[context_name]["cluster"]]
    server = urlsplit(str(entry["server"]))
    # GKE answers with a bare address for https; keep the scheme otherwise.
    endpoint = server.netloc if server.scheme == "https" else f"{server.scheme}://{server.netloc}"
    ca_pem: str | None = None
    if entry.get("certificate-authority-data"):
        ca_pem = base64.b64decode(entry["certificate-authority-data"]).decode()
    elif entry.get("certificate-authority"):
        ca_pem = Path(entry["certificate-authority"]).read_text()
    return Cluster(endpoint=endpoint, ca_pem=ca_pem, **extra)


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            flavor = self.headers.get("Metadata-Flavor")
            with state.lock:
                state.requests.append(Seen("GET", path, flavor, self.headers.get("Authorization")))
            if path == "/" or path.startswith(METADATA):
                self._metadata(path, flavor)
            elif path.startswith("/v1/"):
                self._container(path)
            else:
                self._send(404, {"error": {"code": 404, "message": f"no such path {path}"}})

        def _metadata(self, path: str, flavor: str | None) -> None:
            if flavor != "Google":
                self._send(403, "Missing required header: Metadata-Flavor: Google\n")
                return
            if path == "/":
                self._send(200, "computeMetadata/\n")
                return
            item = path[len(METADATA) :].rstrip("/")
            # google-auth names the account by its email once it knows it.
            item = item.replace(f"service-accounts/{SERVICE_ACCOUNT}", "service-accounts/default")
            if item in (
                "instance/service-accounts/default",
                "instance/service-accounts/default/email",
            ):
                info = {"aliases": ["default"], "email": SERVICE_ACCOUNT, "scopes": SCOPES}
                self._send(200, info if item.endswith("default") else SERVICE_ACCOUNT)
            elif item == "instance/service-accounts/default/token":
                token = "ya29.sandbox-" + secrets.token_urlsafe(24)
                with state.lock:
                    state.tokens[token] = time.monotonic() + state.token_lifetime
                body = {
                    "access_token": token,
                    "expires_in": int(state.token_lifetime),
                    "token_type": "Bearer",
                }
                self._send(200, body)
            elif item == "project/project-id":
                self._send(200, state.project)
            elif item == "universe/universe-domain":
                self._send(200, "googleapis.com")
            else:
                self._send(404, f"no metadata at {item}\n")

        def _container(self, path: str) -> None:
            with state.lock:
                failure = state.failures.pop(0) if state.failures else None
            if failure is not None:
                self._send(failure, {"error": {"code": failure, "message": "injected failure"}})
                return
            auth = self.headers.get("Authorization") or ""
            token = auth.removeprefix("Bearer ").strip()
            with state.lock:
                expires = state.tokens.get(token)
            if expires is None or expires < time.monotonic():
                message = "Request had invalid authentication credentials."
                self._send(401, {"error": {"code": 401, "message": message}})
                return
            name = path.removeprefix("/v1/").strip("/")
            with state.lock:
                cluster = state.clusters.get(name)
            if cluster is None:
                message = f'Not found: "{name}".'
                self._send(404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}})
                return
            self._send(200, cluster.resource(name))

        def _send(self, status: int, body: Mapping[str, Any] | str) -> None:
            is_text = isinstance(body, str)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Metadata-Flavor", "Google")
            ctype = "application/text" if is_text else "application/json"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gitops-sandbox gcp",
        description="A GCE metadata server and a GKE Container API stand-in on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--project", default="sandbox-project")
    parser.add_argument(
        "--token-lifetime", type=float, default=3600, help="seconds each access token lives"
    )
    parser.add_argument("--kubeconfig", type=Path, help="serve a cluster reaching this kubeconfig")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER, help="the served cluster's name")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with GcpSandbox(
        port=args.port, project=args.project, token_lifetime=args.token_lifetime
    ) as sandbox:
        if args.kubeconfig:
            sandbox.add_cluster_from_kubeconfig(args.cluster, args.kubeconfig, args.context)
        for name, value in sandbox.environ().items():
            print(f"{name}={value}")
        print(f"GITOPS_CLUSTER={args.cluster}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0
