"""Reaching a cluster, and a thin, retrying layer over its API.

Three ways in, chosen by flags shared by every stage that talks to a cluster:

- ``--cluster projects/P/locations/L/clusters/C``: the endpoint and CA come from
  the GKE API (REST through google-auth's authorized session), and requests
  carry the Application Default Credentials token, refreshed as it expires.
  ``--private-endpoint`` / ``--dns-endpoint`` pick the other control-plane
  endpoints; ``--container-api-url`` points the GKE API elsewhere (tests).
- ``--kubeconfig PATH [--context NAME]``.
- in-cluster (a pod's service account), with ``--in-cluster`` or by default
  when neither of the above is given and ``KUBERNETES_SERVICE_HOST`` is set.

``KubeApi`` speaks to any resource by path through a ``steps.lib.kubehttp``
transport (the standard library's ``http.client`` with our TLS, credentials and
proxy handling; kubeconfig files are read by ``steps.lib.kubeconfig``), retries what is transient
(429, 5xx, dropped connections) with backoff and ``Retry-After``, and raises
``ExternalError`` once the API server stays unreachable. ``CollectionWatch``
lists then watches a collection in a thread, resuming from the last
``resourceVersion`` (bookmarks included) after a dropped stream and re-listing
after ``410 Gone``.

``google`` and ``urllib3`` are imported inside the functions that need them; the
official ``kubernetes`` package is not used at all (tests use it as a reference).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from steps.lib.cli import StepParser
from steps.lib.errors import ExternalError, UsageError
from steps.lib.output import register_secret, say
from steps.lib.retry import Backoff, backoff_delay
from steps.lib.timefmt import parse_rfc3339

if TYPE_CHECKING:
    from steps.lib.kubehttp import Transport

DEFAULT_CONTAINER_API = "https://container.googleapis.com"
GOOGLE_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
FIELD_MANAGER = "gitops-steps"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
RETRY_ATTEMPTS = 6
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0
API_BACKOFF = Backoff(BACKOFF_START, BACKOFF_CAP)
"""The shared retry policy (``steps.lib.retry``) on the API's shorter schedule."""
REQUEST_TIMEOUT = 30.0
WATCH_SECONDS = 240
"""Server-side watch timeout; the stream is then resumed from where it was."""
UNREACHABLE_AFTER = 60.0
"""A watch failing without a single success for this long means the API is gone."""


# --------------------------------------------------------------------------- access config


@dataclass(frozen=True)
class ClusterName:
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


@dataclass(frozen=True)
class Access:
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


def add_access_options(parser: StepParser) -> None:
    """The cluster flags (verify-rollout, and promote for --require-live)."""
    parser.add_option(
        "--cluster",
        metavar="projects/P/locations/L/clusters/C",
        help="GKE cluster: endpoint and CA from the GKE API, token from ADC",
    )
    parser.add_option(
        "--private-endpoint",
        action="store_true",
        help="with --cluster, use the control plane's private IP endpoint",
    )
    parser.add_option(
        "--dns-endpoint",
        action="store_true",
        help="with --cluster, use the control plane's DNS-based endpoint",
    )
    parser.add_option(
        "--container-api-url",
        metavar="URL",
        help=f"GKE API base URL (default {DEFAULT_CONTAINER_API})",
    )
    parser.add_option("--kubeconfig", metavar="PATH", help="kubeconfig file")
    parser.add_option("--context", metavar="NAME", help="kubeconfig context")
    parser.add_option(
        "--in-cluster", action="store_true", help="use the pod's service account (in a cluster)"
    )
    parser.exclusive(
        ("--cluster", "--private-endpoint", "--dns-endpoint", "--container-api-url"),
        ("--kubeconfig", "--context"),
        ("--in-cluster",),
    )


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


@dataclass(frozen=True)
class Endpoint:
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


# --------------------------------------------------------------------------- the API


class ApiError(Exception):
    """An answer from the API server other than 2xx (or no answer: status 0)."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body: Mapping[str, Any] = body or {}
        self.retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in TRANSIENT_STATUSES

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or "")


@dataclass(frozen=True)
class Resource:
    """One kind as the API server serves it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        return base


Sleep = Callable[[float], None]


class KubeApi:
    """Any resource by path, JSON in and out, with retries for what is transient."""

    def __init__(
        self,
        transport: Transport,
        default_namespace: str = "default",
        *,
        attempts: int = RETRY_ATTEMPTS,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.transport = transport
        self.default_namespace = default_namespace
        self.host = transport.server
        self.attempts = attempts
        self.sleep = sleep
        self._discovery: dict[str, dict[str, Resource] | None] = {}
        self._discovery_lock = threading.Lock()

    # -- requests

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = REQUEST_TIMEOUT,
    ) -> Any:
        """One request; the response (a watch's body not read yet) or ApiError."""
        import http.client

        headers = {"Accept": "application/json"}
        payload: bytes | None = None
        if body is not None:
            # JSON is YAML too: apply-patch+yaml bodies are sent as JSON.
            headers["Content-Type"] = content_type or "application/json"
            payload = json.dumps(body).encode()
        url_path = path + ("?" + urlencode(list(query)) if query else "")
        try:
            response = self.transport.request(
                method,
                url_path,
                headers=headers,
                body=payload,
                timeout=timeout,
                preload=("watch", "true") not in query,
            )
        except (http.client.HTTPException, OSError) as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from None
        if 200 <= response.status < 300:
            return response
        data = response.data
        response.release_conn()
        error = _api_error(response.status, data)
        retry_after = response.headers.get("Retry-After")
        if retry_after and retry_after.strip().isdigit():
            error.retry_after = float(retry_after)
        raise error

    def _read(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
    ) -> bytes:
        """One request's whole body, the connection given back to the pool."""
        response = self._send(method, path, query, body, content_type)
        data = bytes(response.data)
        response.release_conn()
        return data

    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except ApiError as exc:
                if not exc.transient:
                    raise
                if attempt == self.attempts:
                    raise ExternalError(
                        f"Kubernetes API {self.host}: {what}: {describe_error(exc)} "
                        f"(after {self.attempts} attempts)"
                    ) from None
                self.sleep(backoff_delay(attempt, policy=API_BACKOFF, retry_after=exc.retry_after))
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """A JSON request; transient failures retried (``retry``), others raised."""

        def call() -> dict[str, Any]:
            data = self._read(method, path, query, body, content_type)
            if not data:
                return {}
            try:
                parsed = json.loads(data)
            except ValueError:
                raise ApiError(0, f"{method} {path}: not JSON: {data[:200]!r}") from None
            return parsed if isinstance(parsed, dict) else {"items": parsed}

        if not retry:
            return call()
        result: dict[str, Any] = self._retrying(f"{method} {path}", call)
        return result

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return self.request("GET", path, query=query)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def text(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        """A plain-text GET (pod logs); transient failures retried."""

        def call() -> str:
            return self._read("GET", path, query).decode("utf-8", errors="replace")

        result: str = self._retrying(f"GET {path}", call)
        return result

    # -- discovery

    def resources(self, api_version: str) -> dict[str, Resource] | None:
        """Kinds served under ``api_version`` (None: the group version is not served)."""
        with self._discovery_lock:
            if api_version in self._discovery:
                return self._discovery[api_version]
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        group, _, version = api_version.rpartition("/")
        listing = self.get(path)
        found: dict[str, Resource] | None = None
        if listing is not None:
            found = {}
            for item in listing.get("resources", []):
                name = str(item.get("name", ""))
                if not name or "/" in name:
                    continue
                kind = str(item.get("kind", ""))
                found.setdefault(
                    kind, Resource(group, version, kind, name, bool(item.get("namespaced")))
                )
        with self._discovery_lock:
            self._discovery[api_version] = found
        return found

    def resource(self, api_version: str, kind: str) -> Resource | None:
        served = self.resources(api_version)
        return None if served is None else served.get(kind)

    def forget_discovery(self, api_version: str | None = None) -> None:
        with self._discovery_lock:
            if api_version is None:
                self._discovery.clear()
            else:
                self._discovery.pop(api_version, None)

    # -- writes

    def apply(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        *,
        dry_run: bool = False,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply, forcing conflicts, rejecting unknown fields."""
        meta = obj.get("metadata") or {}
        query = [
            ("fieldManager", field_manager),
            ("force", "true"),
            ("fieldValidation", "Strict"),
        ]
        if dry_run:
            query.append(("dryRun", "All"))
        path = resource.path(meta.get("namespace"), str(meta.get("name")))
        return self.request(
            "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
        )

    def delete(self, path: str, *, uid: str | None = None) -> bool:
        """Delete (background propagation); False when it was already gone."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- watching

    def watch(
        self,
        path: str,
        resource_version: str,
        *,
        selectors: Sequence[tuple[str, str]] = (),
        timeout_seconds: int = WATCH_SECONDS,
    ) -> WatchStream:
        """Open a watch stream (no retry here: ``CollectionWatch`` handles that)."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
            *selectors,
        ]
        response = self._send("GET", path, query, timeout=(10.0, timeout_seconds + 15.0))
        return WatchStream(response)


def _api_error(status: int, data: bytes) -> ApiError:
    body: Mapping[str, Any] | None = None
    try:
        parsed = json.loads(data) if data else None
        body = parsed if isinstance(parsed, dict) else None
    except ValueError:
        body = None
    message = str((body or {}).get("message") or data[:300].decode("utf-8", "replace").strip())
    return ApiError(status, message or f"HTTP {status}", body)


def describe_error(exc: ApiError) -> str:
    if exc.status == 0:
        return exc.message
    return f"HTTP {exc.status}: {exc.message}"


class WatchStream:
    """Newline-delimited watch events from one response."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def events(self) -> Iterator[dict[str, Any]]:
        buffer = b""
        for chunk in self._chunks():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    event = _watch_event(line)
                    if isinstance(event, dict):
                        yield event
        if buffer.strip():
            event = _watch_event(buffer)
            if isinstance(event, dict):
                yield event

    def _chunks(self) -> Iterator[bytes]:
        response = self.response
        if getattr(response, "chunked", False) and response.supports_chunked_reads():
            yield from response.read_chunked(decode_content=True)
            return
        while True:
            data = response.read1(65536)
            if not data:
                return
            yield data

    def close(self) -> None:
        shutdown = getattr(self.response, "shutdown", None)
        try:
            if callable(shutdown):
                shutdown()
            self.response.release_conn()
        except Exception:  # closing a stream that may be half-dead
            pass


def _watch_event(line: bytes) -> Any:
    """One event line; a line cut short by a dropped stream is a transient ApiError."""
    try:
        return json.loads(line)
    except ValueError:
        raise ApiError(0, f"watch stream cut mid-event: {line[:100]!r}") from None


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a dropped connection raises below us: transient, unlike any other exception."""
    import http.client

    return (http.client.HTTPException, OSError)  # all steps.lib.kubehttp's transport raises


# --------------------------------------------------------------------------- list + watch


@dataclass(frozen=True)
class Event:
    """What a ``CollectionWatch`` puts on its queue.

    ``type`` is ADDED/MODIFIED/DELETED for one object, SYNC for a full listing
    (``items``), FATAL (``error``, an ApiError) when the API stayed unreachable or
    refused, or BUG (``error``, with its traceback) when the watch thread itself
    raised something that is not an API or network error: a bug, never retried.
    """

    key: str
    type: str
    obj: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None


def typed_items(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A list's items with apiVersion and kind, which the API server leaves out of them."""
    api_version = listing.get("apiVersion")
    kind = str(listing.get("kind") or "").removesuffix("List")
    items = []
    for item in listing.get("items") or []:
        if isinstance(item, dict):
            if api_version and "apiVersion" not in item:
                item["apiVersion"] = api_version
            if kind and "kind" not in item:
                item["kind"] = kind
            items.append(item)
    return items


class CollectionWatch:
    """List, then watch, one collection in a daemon thread until stopped."""

    def __init__(
        self,
        api: KubeApi,
        key: str,
        path: str,
        sink: queue.Queue[Event],
        *,
        selectors: Sequence[tuple[str, str]] = (),
        unreachable_after: float = UNREACHABLE_AFTER,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.api = api
        self.key = key
        self.path = path
        self.sink = sink
        self.selectors = list(selectors)
        self.unreachable_after = unreachable_after
        self.watch_seconds = watch_seconds
        self.restarts = 0
        self.last_ok = time.monotonic()
        self.failing = False
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {key}", daemon=True)

    def start(self) -> CollectionWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def unreachable_for(self) -> float:
        """Seconds since this watch last heard from the API server while failing (0: fine)."""
        return time.monotonic() - self.last_ok if self.failing else 0.0

    def _run(self) -> None:
        version: str | None = None
        failures = 0  # in a row: the backoff's attempt number
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = self.api.request("GET", self.path, query=self.selectors, retry=False)
                    self._heard()
                    version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                    self.sink.put(Event(self.key, "SYNC", items=typed_items(listing)))
                opened = time.monotonic()
                version, events = self._follow(version)
                if events or time.monotonic() - opened > 1.0:
                    failures = 0
                    continue
                # An empty stream that ended at once: do not spin.
                raise ApiError(0, "watch stream closed at once")
            except Exception as exc:
                if self._stop.is_set():
                    return
                if isinstance(exc, ApiError):
                    error = exc
                elif isinstance(exc, transport_errors()):  # a broken stream: retried like a drop
                    error = ApiError(0, f"{type(exc).__name__}: {exc}")
                else:  # anything else is a bug: retrying it until the deadline would hide it
                    self.sink.put(Event(self.key, "BUG", error=exc))
                    return
                if error.status == 410:
                    version = None
                    continue
                self.failing = True
                self.restarts += 1
                if not error.transient or self.unreachable_for() > self.unreachable_after:
                    self.sink.put(Event(self.key, "FATAL", error=error))
                    return
                failures += 1
                self._stop.wait(
                    backoff_delay(failures, policy=API_BACKOFF, retry_after=error.retry_after)
                )

    def _heard(self) -> None:
        self.last_ok = time.monotonic()
        self.failing = False

    def _follow(self, version: str) -> tuple[str | None, int]:
        """Watch from ``version`` until the stream ends; the version to resume from."""
        stream = self.api.watch(
            self.path, version, selectors=self.selectors, timeout_seconds=self.watch_seconds
        )
        self._stream = stream
        self._heard()
        count = 0
        try:
            for event in stream.events():
                if self._stop.is_set():
                    break
                kind = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        return None, count
                    raise ApiError(int(code or 0), str(obj.get("message", "watch error")), obj)
                self._heard()
                new_version = (obj.get("metadata") or {}).get("resourceVersion")
                if new_version:
                    version = str(new_version)
                count += 1
                if kind != "BOOKMARK":
                    self.sink.put(Event(self.key, kind, obj=obj))
        finally:
            self._stream = None
            stream.close()
        return version, count


# --------------------------------------------------------------------------- Lease lock


LEASE_DURATION = 30
"""Seconds a holder that stopped renewing keeps the lock."""
LEASE_POLL = 0.5


def micro_time(epoch: float) -> str:
    """The API's MicroTime format."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_holder(lease: Mapping[str, Any], now: float) -> tuple[str | None, float]:
    """Who holds ``lease`` at ``now`` (None: free or expired) and for how long still (pure)."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or None
    renewed = parse_rfc3339(spec.get("renewTime")) or parse_rfc3339(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if holder is None:
        return None, 0.0
    if renewed is None or not isinstance(duration, int):
        return str(holder), float(LEASE_DURATION)
    left = renewed + duration - now
    return (str(holder), left) if left > 0 else (None, 0.0)


def default_identity() -> str:
    build = os.environ.get("BUILD_ID") or "local"
    return f"build {build} on {os.uname().nodename} pid {os.getpid()}"


class LeaseLock:
    """A ``coordination.k8s.io`` Lease held while a rollout runs.

    ``acquire`` waits (saying who holds it) until the Lease is free or expired,
    then takes it with an optimistic-concurrency write; a thread renews it
    every third of its duration; ``release`` clears the holder.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        duration: int = LEASE_DURATION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.duration = max(int(duration), 1)
        self.clock = clock
        self.lost = threading.Event()
        self.held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def path(self) -> str:
        return (
            f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace, safe='')}"
            f"/leases/{quote(self.name, safe='')}"
        )

    def _spec(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self.clock())
        old = (previous or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        if old.get("holderIdentity") and old.get("holderIdentity") != self.identity:
            transitions += 1
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _body(self, previous: Mapping[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if previous is not None:
            metadata["resourceVersion"] = (previous.get("metadata") or {}).get("resourceVersion")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def try_acquire(self) -> tuple[bool, str | None, float]:
        """One attempt: (taken, current holder, seconds its hold has left)."""
        lease = self.api.get(self.path)
        try:
            if lease is None:
                collection = self.path.rsplit("/", 1)[0]
                self.api.request("POST", collection, body=self._body(None, self._spec(None)))
                return True, self.identity, float(self.duration)
            holder, left = lease_holder(lease, self.clock())
            if holder is not None and holder != self.identity:
                return False, holder, left
            self.api.request("PUT", self.path, body=self._body(lease, self._spec(lease)))
            return True, self.identity, float(self.duration)
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote first: look again
                return False, None, 0.0
            raise

    def acquire(
        self, deadline: float, on_wait: Callable[[str, float], None] | None = None
    ) -> float:
        """Take the lock before ``deadline`` (monotonic); seconds waited, or LockTimeout."""
        started = time.monotonic()
        reported: str | None = None
        while True:
            taken, holder, left = self.try_acquire()
            if taken:
                self.held = True
                self._start_renewing()
                return time.monotonic() - started
            if holder is not None and holder != reported and on_wait is not None:
                on_wait(holder, left)
                reported = holder
            if time.monotonic() >= deadline:
                raise LockTimeout(self.name, holder or "another build")
            time.sleep(min(LEASE_POLL, max(deadline - time.monotonic(), 0.01)))

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lease renew", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        interval = self.duration / 3
        while not self._stop.wait(interval):
            try:
                lease = self.api.get(self.path)
                holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
                if lease is None or holder != self.identity:
                    self.lost.set()
                    return
                spec = dict(lease.get("spec") or {})
                spec["renewTime"] = micro_time(self.clock())
                self.api.request("PUT", self.path, body=self._body(lease, spec))
            except (ApiError, ExternalError):
                continue  # tried again in a third of the duration, well before expiry

    def release(self) -> None:
        """Give the lock up (best effort: an unreleased lock expires anyway)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if not self.held:
            return
        self.held = False
        for _ in range(3):
            try:
                lease = self.api.get(self.path)
                spec = dict((lease or {}).get("spec") or {})
                if lease is None or spec.get("holderIdentity") != self.identity:
                    return
                spec.pop("holderIdentity", None)
                spec["leaseDurationSeconds"] = 1
                self.api.request("PUT", self.path, body=self._body(lease, spec))
                return
            except ApiError as exc:
                if exc.status != 409:
                    break
            except ExternalError:
                break


class LockTimeout(Exception):
    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"lock {name} still held by {holder}")
        self.name = name
        self.holder = holder
