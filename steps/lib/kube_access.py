"""Reaching a cluster: the flags every cluster-facing stage shares (defined in
``steps.lib.cluster_flags``) read into an ``Access``, and the three ways in
(``--cluster`` through the GKE API and ADC, ``--kubeconfig``, in-cluster),
each giving a ``steps.lib.kube.KubeApi``."""

from __future__ import annotations

import argparse
import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from steps.lib.cluster_flags import DEFAULT_CONTAINER_API
from steps.lib.errors import ExternalError, UsageError
from steps.lib.kube import (
    API_BACKOFF,
    REQUEST_TIMEOUT,
    RETRY_ATTEMPTS,
    TRANSIENT_STATUSES,
    KubeApi,
)
from steps.lib.output import register_secret, say
from steps.lib.retry import backoff_delay

if TYPE_CHECKING:
    pass


GOOGLE_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


# --------------------------------------------------------------------------- access config


class ClusterName(NamedTuple):
    project: str
    location: str
    cluster: str

    @classmethod
    def parse(cls, text: str) -> ClusterName:
        parts = text.strip().strip("/").split("/")
        if (
            len(parts) != 6
            or parts[0::2] != ["projects", "locations", "clusters"]
            or not all(parts[1::2])
        ):
            raise UsageError(
                f"--cluster {text}: expected projects/PROJECT/locations/LOCATION/clusters/NAME"
            )
        return cls(parts[1], parts[3], parts[5])

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.cluster}"


class Access(NamedTuple):
    """How to reach the cluster, straight from the flags."""

    cluster: ClusterName | None = None
    container_api_url: str = DEFAULT_CONTAINER_API
    endpoint: str = "public"
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False

    def describe(self) -> str:
        if self.cluster is not None:
            suffix = "" if self.endpoint == "public" else f" ({self.endpoint} endpoint)"
            return f"GKE cluster {self.cluster.path}{suffix}"
        if self.in_cluster:
            return "the in-cluster service account"
        where = self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        return f"kubeconfig {where}" + (f" context {self.context}" if self.context else "")


def access_from_args(args: argparse.Namespace) -> Access:
    """Check the cluster flags for contradictions and build an ``Access``."""
    cluster = ClusterName.parse(args.cluster) if args.cluster else None
    if args.private_endpoint and args.dns_endpoint:
        raise UsageError("--private-endpoint and --dns-endpoint exclude each other")
    endpoint = "private" if args.private_endpoint else "dns" if args.dns_endpoint else "public"
    if cluster is None and endpoint != "public":
        raise UsageError(f"--{endpoint}-endpoint only goes with --cluster")
    chosen = [
        name
        for name, given in (
            ("--cluster", cluster is not None),
            ("--kubeconfig", bool(args.kubeconfig)),
            ("--in-cluster", bool(args.in_cluster)),
        )
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} exclude each other: give one way in")
    if args.context and (cluster is not None or args.in_cluster):
        raise UsageError("--context only goes with a kubeconfig")
    in_cluster = bool(args.in_cluster) or (
        not chosen and not args.context and "KUBERNETES_SERVICE_HOST" in os.environ
    )
    return Access(
        cluster=cluster,
        container_api_url=(args.container_api_url or DEFAULT_CONTAINER_API).rstrip("/"),
        endpoint=endpoint,
        kubeconfig=args.kubeconfig,
        context=args.context,
        in_cluster=in_cluster,
    )


class Endpoint(NamedTuple):
    host: str
    ca_pem: str | None


def gke_endpoint(cluster: Mapping[str, Any], mode: str, name: str) -> Endpoint:
    """The control-plane URL and CA of a GKE ``Cluster`` resource (pure)."""
    endpoints = cluster.get("controlPlaneEndpointsConfig") or {}
    ip_config = endpoints.get("ipEndpointsConfig") or {}
    private_config = cluster.get("privateClusterConfig") or {}
    ca_b64 = (cluster.get("masterAuth") or {}).get("clusterCaCertificate")
    ca_pem = base64.b64decode(ca_b64).decode() if ca_b64 else None
    if mode == "dns":
        dns = (endpoints.get("dnsEndpointConfig") or {}).get("endpoint")
        if not dns:
            raise UsageError(
                f"--cluster {name}: has no DNS endpoint (enable it, or drop --dns-endpoint)"
            )
        # The DNS endpoint presents a publicly trusted certificate.
        return Endpoint(_https(dns), None)
    if mode == "private":
        address = ip_config.get("privateEndpoint") or private_config.get("privateEndpoint")
        if not address:
            raise UsageError(f"--cluster {name}: has no private endpoint")
        return Endpoint(_https(address), ca_pem)
    public_disabled = ip_config.get("enablePublicEndpoint") is False or bool(
        private_config.get("enablePrivateEndpoint")
    )
    address = cluster.get("endpoint") or ip_config.get("publicEndpoint")
    if public_disabled or not address:
        raise UsageError(
            f"--cluster {name}: has no public endpoint; pass --private-endpoint or --dns-endpoint"
        )
    return Endpoint(_https(address), ca_pem)


def _https(address: str) -> str:
    # GKE answers with a bare address; a stand-in may name its scheme.
    return address if "://" in address else f"https://{address}"


# --------------------------------------------------------------------------- connecting


def connect(access: Access) -> KubeApi:
    """An API client for the cluster ``access`` names (network only for --cluster)."""
    if access.cluster is not None:
        return _connect_gke(access, access.cluster)
    if access.in_cluster:
        return _connect_in_cluster()
    return _connect_kubeconfig(access)


def _connect_kubeconfig(access: Access) -> KubeApi:
    from steps.lib.kubeconfig import load_client_config
    from steps.lib.kubehttp import Transport

    config = load_client_config(access.kubeconfig, access.context)
    return KubeApi(Transport.from_config(config), config.namespace)


def _connect_in_cluster() -> KubeApi:
    from steps.lib.kubehttp import TokenFile, Transport

    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise UsageError(
            "--in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
            "(not running in a pod?)"
        )
    account = SERVICE_ACCOUNT_NAMESPACE.parent
    token, ca = account / "token", account / "ca.crt"
    if not token.is_file():
        raise UsageError(f"--in-cluster: no service account token at {token}")
    try:
        ca_pem = ca.read_text()
    except OSError as exc:
        raise UsageError(f"--in-cluster: cannot read the cluster CA {ca}: {exc}") from None
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        namespace = "default"
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    transport = Transport(server, TokenFile(token, "--in-cluster"), ca_pem=ca_pem,
                          where="--in-cluster")  # fmt: skip
    return KubeApi(transport, namespace)


def _connect_gke(access: Access, name: ClusterName) -> KubeApi:
    import google.auth
    import google.auth.exceptions

    from steps.lib.kubehttp import CallbackToken, Transport, google_request

    try:
        credentials, _ = google.auth.default(scopes=GOOGLE_SCOPES)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise UsageError(
            f"--cluster {name.path}: no Application Default Credentials: {exc}"
        ) from None
    lock = threading.Lock()
    token_request = google_request()

    def fresh_token() -> str:
        with lock:
            if not credentials.valid:
                try:
                    credentials.refresh(token_request)  # type: ignore[no-untyped-call]
                except google.auth.exceptions.RefreshError as exc:
                    raise ExternalError(
                        f"Application Default Credentials: cannot get a token: {exc}"
                    ) from None
            token = str(credentials.token)
        register_secret(token)
        return token

    url = f"{access.container_api_url}/v1/{name.path}"
    cluster = _get_cluster(fresh_token, url, name)
    endpoint = gke_endpoint(cluster, access.endpoint, name.path)
    say(f"cluster {name.path}: endpoint {endpoint.host}")
    transport = Transport(
        endpoint.host, CallbackToken(fresh_token), ca_pem=endpoint.ca_pem,
        where=f"--cluster {name.path}",
    )  # fmt: skip
    return KubeApi(transport, "default")


def _get_cluster(token: Callable[[], str], url: str, name: ClusterName) -> dict[str, Any]:
    import ssl

    import urllib3

    pool = urllib3.PoolManager(ssl_context=ssl.create_default_context(), retries=False)
    last = ""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            response = pool.request(
                "GET",
                url,
                headers={"Authorization": f"Bearer {token()}", "Accept": "application/json"},
                timeout=urllib3.Timeout(total=REQUEST_TIMEOUT),
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status == 200:
                try:
                    body = json.loads(response.data)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise ExternalError(f"GKE API {url}: not a cluster: {response.data[:200]!r}")
                return body
            message = _google_error(response)
            if response.status == 404:
                raise UsageError(f"--cluster {name.path}: not found ({message})")
            if response.status in (401, 403):
                raise UsageError(
                    f"--cluster {name.path}: permission denied ({message}); the build's "
                    "service account needs roles/container.developer on the project"
                )
            if response.status not in TRANSIENT_STATUSES:
                raise ExternalError(f"GKE API {url}: HTTP {response.status}: {message}")
            last = f"HTTP {response.status}: {message}"
        if attempt < RETRY_ATTEMPTS:
            time.sleep(backoff_delay(attempt, policy=API_BACKOFF))
    raise ExternalError(f"GKE API {url}: {last} (after {RETRY_ATTEMPTS} attempts)")


def _google_error(response: Any) -> str:
    text = bytes(response.data).decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text[:200].strip() or str(response.reason)
