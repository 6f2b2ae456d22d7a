"""A thin, retrying layer over a cluster's API, and its watches.

How a stage reaches the cluster (``--cluster`` through the GKE API and ADC,
``--kubeconfig``, in-cluster) is ``steps.lib.kube_access``; the Lease lock is
``steps.lib.lease``.

``KubeApi`` speaks to any resource by path through a ``steps.lib.kubehttp``
transport (HTTP/1.1 on sockets with our TLS, credentials and
proxy handling; kubeconfig files are read by ``steps.lib.kubeconfig``), retries what is transient
(429, 5xx, dropped connections) with backoff and ``Retry-After``, and raises
``ExternalError`` once the API server stays unreachable. Following a collection
(list, then watch in a thread) is ``steps.lib.kube_watch``.

``google`` and ``urllib3`` are imported inside the functions that need them; the
official ``kubernetes`` package is not used at all (tests use it as a reference).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlencode

from steps.lib.builtin_kinds import built_in
from steps.lib.errors import ExternalError
from steps.lib.retry import Backoff, backoff_delay

if TYPE_CHECKING:
    from steps.lib.kubehttp import Transport

FIELD_MANAGER = "gitops-steps"

TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
RETRY_ATTEMPTS = 6
BACKOFF_START = 0.2
BACKOFF_CAP = 5.0
API_BACKOFF = Backoff(BACKOFF_START, BACKOFF_CAP)
"""The shared retry policy (``steps.lib.retry``) on the API's shorter schedule."""
REQUEST_TIMEOUT = 30.0
WATCH_SECONDS = 240
"""Server-side watch timeout; the stream is then resumed from where it was."""


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


class Resource(NamedTuple):
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
        except OSError as exc:  # no answer: all steps.lib.kubehttp's transport raises
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
        if not _group_version(api_version):
            return None  # no server serves it; never let it reshape the request line
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
        """How ``kind`` is served: known for GA built-ins, else from discovery."""
        known = built_in(api_version, kind)
        if known is not None:
            group, _, version = api_version.rpartition("/")
            return Resource(group, version, kind, *known)
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
        with contextlib.suppress(Exception):  # closing a stream that may be half-dead
            self._shut_down()
            self.response.release_conn()

    def interrupt(self) -> None:
        """Wake the thread reading this stream, which then ends it and closes it.

        From another thread, ``close`` waits for the reader to let go of the
        socket's buffer: a thread hand-off per stream, 2 ms for a wait's four
        streams between its verdict and the exit. A response that cannot be
        woken is closed as before.
        """
        try:
            woken = self._shut_down()
        except Exception:  # a stream that may be half-dead
            return
        if not woken:
            self.close()

    def _shut_down(self) -> bool:
        """Shut the socket down, which wakes a blocked reader; False if the response cannot."""
        shutdown = getattr(self.response, "shutdown", None)
        if not callable(shutdown):
            return False
        shutdown()
        return True


def _watch_event(line: bytes) -> Any:
    """One event line; a line cut short by a dropped stream is a transient ApiError."""
    try:
        return json.loads(line)
    except ValueError:
        raise ApiError(0, f"watch stream cut mid-event: {line[:100]!r}") from None


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a dropped connection raises below us: transient, unlike any other exception."""
    return (OSError,)  # all steps.lib.kubehttp's transport raises


_DNS_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _group_version(api_version: str) -> bool:
    """``group/version`` or ``version`` spelled as Kubernetes can serve it (lowercase DNS).

    Anything else (a space, a line break, ``..``) is served by no cluster and
    must not reach a request line or a path.
    """
    group, slash, version = api_version.rpartition("/")
    labels = [*(group.split(".") if slash else ()), version]
    return all(
        label and set(label) <= _DNS_CHARACTERS and label[0] != "-" and label[-1] != "-"
        for label in labels
    )
