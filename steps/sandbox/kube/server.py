"""The HTTP front end: URL routing, query parameters, JSON bodies, watch streams.

Threaded ``http.server`` speaking HTTP/1.1 with keep-alive, because the
official client pools connections; watch responses use chunked encoding with
one JSON event per line, as the API server's do.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from steps.sandbox.kube import apierrors as errors
from steps.sandbox.kube import protobuf, virtual
from steps.sandbox.kube.api import Cluster, WriteOptions
from steps.sandbox.kube.apierrors import ApiError
from steps.sandbox.kube.faults import FaultInjector
from steps.sandbox.kube.openapi import OpenApi
from steps.sandbox.kube.printers import table, wants_table
from steps.sandbox.kube.resources import REVIEWS, VERSION_INFO, ResourceType
from steps.sandbox.kube.selectors import field_matcher, label_matcher
from steps.sandbox.kube.store import WatchEvent, clone

LogReader = Callable[[dict[str, Any], str, bool], list[str]]
DEFAULT_WATCH_TIMEOUT = 1800.0
CONTROL_PREFIX = "/_sandbox/"
BODY_TYPES = (
    "application/json",
    "application/yaml",
    "application/apply-patch+yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "text/plain",
)


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        cluster: Cluster,
        faults: FaultInjector,
        logs: LogReader,
        bookmark_interval: float,
    ) -> None:
        super().__init__(address, Handler)
        self.cluster = cluster
        self.faults = faults
        self.logs = logs
        self.bookmark_interval = bookmark_interval
        self.closing = threading.Event()
        self.log_running: Callable[[dict[str, Any], str], int | None] = lambda pod, c: None
        self.openapi = OpenApi()
        self._connections: set[Any] = set()
        self.watches = 0  # open watch streams
        self._connections_lock = threading.Lock()
        self.require_token = False  # answer 401 to requests without a bearer token
        self.tokens_seen: list[str] = []  # distinct bearer tokens, in order of first use
        # kube-apiserver's http.Server: ReadHeaderTimeout 32 s (which also bounds the
        # TLS handshake) and IdleTimeout 90 s between requests on a kept-alive
        # connection. Without them a client that connects and stays silent holds a
        # thread for good.
        self.handshake_timeout = 32.0
        self.idle_timeout = 90.0

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop serving, including kept-alive connections: a stopped cluster is unreachable."""
        self.closing.set()
        self.cluster.store.close()
        super().server_close()
        deadline = time.monotonic() + 1.0
        while self.watches and time.monotonic() < deadline:
            time.sleep(0.01)  # open watches end their streams properly first
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer
    _watch_rt: ResourceType | None = None  # the kind a watch streams (for Table events)
    _convert_in: Callable[[Any], Any] | None = None  # request body -> stored version
    _convert_out: Callable[[Any], Any] | None = None  # stored version -> requested one

    def setup(self) -> None:
        """No Nagle: header and body go out as separate writes, and 40 ms stalls add up."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        """A client that drops an idle kept-alive connection is not an error.

        Over TLS the handshake happens here, on this connection's thread; one
        that fails (a client distrusting our CA, a bad client certificate) ends
        only this connection, as a real API server logs and moves on.
        """
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(self.server.handshake_timeout)
            try:
                self.connection.do_handshake()
            except OSError:  # ssl.SSLError and TimeoutError are OSErrors
                return
        # Every blocking read or write on the connection from here: a silent or
        # vanished client is let go after the idle timeout (handle_one_request
        # closes the connection on TimeoutError; a watch ends its stream).
        self.connection.settimeout(self.server.idle_timeout)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the CLI do not want an access log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- plumbing ---------------------------------------------------------------

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        self._watch_rt = self._convert_in = self._convert_out = None
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.body = self._read_body()
        self.warnings: list[str] = []
        target = self.path
        try:
            delay = self.server.faults.delay(target)
            if delay > 0:
                time.sleep(delay)
            if not parts.path.startswith(CONTROL_PREFIX):
                self._authenticate()
                failure = self.server.faults.take_failure(method, target)
                if failure is not None:
                    message = f"injected fault ({failure.status})"
                    if failure.status == 429:
                        raise errors.too_many_requests(failure.retry_after or 1)
                    if failure.status == 500:
                        raise errors.internal(message)
                    raise ApiError(
                        failure.status,
                        failure.reason,
                        message,
                        {},
                        ({"Retry-After": str(failure.retry_after)} if failure.retry_after else {}),
                    )
            self._route(method, parts.path.rstrip("/") or "/")
        except ApiError as exc:
            self._json(exc.code, exc.status(), exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the emulator: say so like the server would
            self._json(500, errors.internal(f"emulator bug: {exc!r}").status())
            raise

    def _authenticate(self) -> None:
        """Record bearer tokens (tests check which reached us); demand one if configured."""
        header = self.headers.get("Authorization") or ""
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token:
            with self.server._connections_lock:
                if token not in self.server.tokens_seen:
                    self.server.tokens_seen.append(token)
        elif self.server.require_token:
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        body = self._outgoing(body)
        data = json.dumps(body, separators=(",", ":")).encode()
        self._send(code, data, "application/json", headers)

    def _send(
        self, code: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if "Cache-Control" not in (headers or {}):
            self.send_header("Cache-Control", "no-cache, private")
        for warning in self.warnings:
            self.send_header("Warning", f'299 - "{_escape(warning)}"')
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _outgoing(self, body: Any) -> Any:
        """A stored object (or list of them) in the version the request named."""
        convert = self._convert_out
        if convert is None or not isinstance(body, dict):
            return body
        if str(body.get("kind", "")).endswith("List") and isinstance(body.get("items"), list):
            body = dict(body, items=[convert(i) for i in body["items"]])
            body["apiVersion"] = convert({"apiVersion": body.get("apiVersion")})["apiVersion"]
            return body
        return convert(body)

    def _parsed_body(self) -> Any:
        if not self.body:
            return None
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype == protobuf.MEDIA_TYPE:
            # kubectl >= 1.32 sends `create configmap|deployment|...` as protobuf.
            return self._protobuf_body()
        if ctype not in BODY_TYPES:
            raise errors.unsupported_media_type(ctype, list(BODY_TYPES[:2]))
        try:
            if "yaml" in ctype:
                parsed = yaml.safe_load(self.body.decode())
            else:
                parsed = json.loads(self.body)
            return self._convert_in(parsed) if self._convert_in is not None else parsed
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(
                f"couldn't get version/kind; json parse error: {exc}"
            ) from None

    def _protobuf_body(self) -> Any:
        """A built-in kind's protobuf body as the dict its JSON body would be."""
        try:
            parsed = protobuf.decode_body(self.body)
        except protobuf.UnknownKind:
            # As a real server answers for kinds without protobuf (custom resources).
            raise errors.unsupported_media_type(protobuf.MEDIA_TYPE, list(BODY_TYPES[:2])) from None
        except protobuf.ProtobufError as exc:
            raise errors.bad_request(f"protobuf body: {exc}") from None
        return self._convert_in(parsed) if self._convert_in is not None else parsed

    # -- routing ----------------------------------------------------------------

    def _route(self, method: str, path: str) -> None:
        if path.startswith(CONTROL_PREFIX):
            self._control(method, path)
            return
        segments = [s for s in path.split("/") if s]
        reg = self.server.cluster.registry
        if path in ("/healthz", "/livez", "/readyz"):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if path == "/version":
            self._json(200, VERSION_INFO)
            return
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            self._openapi_v3(path[len("/openapi/v3/") :])
            return
        if segments[:1] == ["api"]:
            if len(segments) == 1:
                port = self.server.server_address[1]
                self._json(200, reg.core_versions(f"127.0.0.1:{port}"))
                return
            if segments[1] != "v1":
                raise errors.not_found_path()
            if len(segments) == 2:
                self._json(200, reg.resource_list("", "v1"))
                return
            self._resource(method, "", "v1", segments[2:])
            return
        if segments[:1] == ["apis"]:
            if len(segments) == 1:
                self._json(200, reg.group_list())
                return
            if len(segments) == 2:
                group = reg.api_group(segments[1])
                if group is None:
                    raise errors.not_found_path()
                self._json(200, group)
                return
            if len(segments) == 3:
                listing = reg.resource_list(segments[1], segments[2])
                if listing is None:
                    raise errors.not_found_path()
                self._json(200, listing)
                return
            self._resource(method, segments[1], segments[2], segments[3:])
            return
        raise errors.not_found_path()

    def _openapi_v3(self, path: str) -> None:
        types = self.server.cluster.registry.all()
        if not path:
            self._json(200, self.server.openapi.root(types))
            return
        found = self.server.openapi.document(types, path)
        if found is None:
            raise errors.not_found_path()
        data, digest = found
        headers = {"Etag": f'"{digest}"'}
        if self.query.get("hash") == digest:
            headers["Cache-Control"] = "public, immutable"
        self._send(200, data, "application/json", headers)

    def _resource(self, method: str, group: str, version: str, rest: list[str]) -> None:
        reg = self.server.cluster.registry
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        rt = reg.lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise errors.not_found_path()
        if rt.namespaced != bool(namespace) and not (
            rt.namespaced and len(rest) == 1 and method == "GET"
        ):
            raise errors.not_found_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise errors.not_found_path()
        scope = namespace if namespace else None
        if rt.kind in REVIEWS:
            if method != "POST" or name is not None:
                raise errors.method_not_allowed()
            self._json(201, virtual.review(rt.kind, rt.api_version, self._parsed_body()))
            return
        if sub == "token" and name is not None:
            if method != "POST":
                raise errors.method_not_allowed()
            account = self.server.cluster.get(rt, namespace, name)
            answer = virtual.token_request(
                namespace, name, account["metadata"]["uid"], self._parsed_body(), time.time()
            )
            self._json(201, answer)
            return
        if (rt.group, rt.version, rt.kind) == ("autoscaling", "v1", "HorizontalPodAutoscaler"):
            stored = reg.lookup("autoscaling", "v2", rt.plural)
            if stored is not None:  # served as v1, stored as v2: convert both ways
                rt, self._convert_in, self._convert_out = (
                    stored,
                    virtual.hpa_from_v1,
                    virtual.hpa_to_v1,
                )
        if name is None:
            self._collection(method, rt, scope, namespace)
        elif sub == "log":
            self._log(rt, namespace, name)
        elif sub == "scale":
            self._scale(method, rt, namespace, name)
        else:
            self._object(method, rt, namespace, name, sub if sub != "finalize" else None)

    def _number(self, name: str) -> int:
        """An integer query parameter (0 when absent); 400 when it is not a number."""
        text = self.query.get(name) or "0"
        try:
            return int(text)
        except ValueError:
            raise errors.bad_request(f'invalid value for {name}: "{text}"') from None

    def _opts(self, subresource: str | None = None, apply: bool = False) -> WriteOptions:
        dry = self.query.get("dryRun")
        if dry not in (None, "", "All"):
            raise errors.bad_request(f'Invalid dry run value: "{dry}"')
        manager = self.query.get("fieldManager")
        if manager is None and not apply:
            manager = (self.headers.get("User-Agent") or "unknown").split("/")[0]
        validation = self.query.get("fieldValidation") or "Warn"
        return WriteOptions(
            manager=manager or "",
            dry_run=dry == "All",
            validation=validation,
            force=self.query.get("force") in ("true", "1", "True"),
            subresource=subresource,
            warnings=self.warnings,
        )

    def _collection(self, method: str, rt: ResourceType, scope: str | None, namespace: str) -> None:
        cluster = self.server.cluster
        if method == "GET":
            if self.query.get("watch") in ("true", "1", "True"):
                self._watch(rt, scope)
                return
            items, rv = cluster.list_objects(
                rt, scope, self.query.get("labelSelector"), self.query.get("fieldSelector")
            )
            body = self._list_body(rt, items, rv)
            self._json(200, self._as_table(rt, body["items"], body["metadata"]) or body)
        elif method == "POST":
            obj = cluster.create(rt, namespace, self._parsed_body(), self._opts())
            self._json(201, obj)
        elif method == "DELETE":
            items, _ = cluster.list_objects(
                rt, scope, self.query.get("labelSelector"), self.query.get("fieldSelector")
            )
            deleted = []
            for item in items:
                meta = item["metadata"]
                try:
                    obj, _ = cluster.delete(
                        rt, meta.get("namespace", ""), meta["name"], dry_run=self._opts().dry_run
                    )
                    deleted.append(obj)
                except ApiError:
                    continue
            self._json(200, self._list_body(rt, deleted, cluster.store.resource_version))
        else:
            raise errors.method_not_allowed()

    def _as_table(
        self, rt: ResourceType, items: list[dict[str, Any]], meta: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The Table kubectl asked for in Accept (``as=Table``), or None for plain JSON."""
        api_version = wants_table(self.headers.get("Accept") or "")
        if api_version is None:
            return None
        if meta.get("resourceVersion") == "":
            meta = {}
        return table(
            rt,
            items,
            time.time(),
            api_version=api_version,
            include_object=self.query.get("includeObject") or "PartialObjectMetadata",
            list_meta=meta,
            printer_columns=self._printer_columns(rt) if rt.custom else None,
        )

    def _printer_columns(self, rt: ResourceType) -> list[dict[str, Any]] | None:
        cluster = self.server.cluster
        crds = cluster.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        if crds is None:
            return None
        crd = cluster.find(crds, "", f"{rt.plural}.{rt.group}")
        if crd is None:
            return None
        for version in (crd.get("spec") or {}).get("versions") or []:
            if version.get("name") == rt.version:
                columns = version.get("additionalPrinterColumns")
                return list(columns) if columns else None
        return None

    def _list_body(self, rt: ResourceType, items: list[dict[str, Any]], rv: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = self._number("limit")
        start = 0
        token = self.query.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start, rv = int(state["start"]), int(state["rv"])
                meta["resourceVersion"] = str(rv)
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid") from None
        if limit > 0 or start:
            end = start + limit if limit > 0 else len(items)
            if end < len(items):
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"start": end, "rv": rv}).encode()
                ).decode()
                meta["remainingItemCount"] = len(items) - end
            items = items[start:end]
        if not rt.custom:
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }

    def _object(
        self, method: str, rt: ResourceType, namespace: str, name: str, sub: str | None
    ) -> None:
        cluster = self.server.cluster
        if method == "GET":
            obj = cluster.get(rt, namespace, name)
            self._json(200, self._as_table(rt, [obj], {"resourceVersion": ""}) or obj)
        elif method == "PUT":
            obj = cluster.replace(rt, namespace, name, self._parsed_body(), self._opts(sub))
            self._json(200, obj)
        elif method == "PATCH":
            ctype = self.headers.get("Content-Type") or ""
            apply = ctype.startswith("application/apply-patch")
            obj, created = cluster.patch(
                rt, namespace, name, self.body, ctype, self._opts(sub, apply)
            )
            self._json(201 if created else 200, obj)
        elif method == "DELETE" and sub is None:
            options = self._parsed_body() or {}
            grace = self.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
            obj, finished = cluster.delete(
                rt,
                namespace,
                name,
                propagation=self.query.get("propagationPolicy") or options.get("propagationPolicy"),
                grace=int(grace) if grace is not None else None,
                preconditions=options.get("preconditions"),
                dry_run=self._opts().dry_run or "All" in (options.get("dryRun") or []),
            )
            if finished and rt.kind != "Pod":
                self._json(200, errors.success_status(rt, name, obj["metadata"]["uid"]))
            else:
                self._json(200 if finished or rt.kind == "Pod" else 202, obj)
        else:
            raise errors.method_not_allowed()

    def _scale(self, method: str, rt: ResourceType, namespace: str, name: str) -> None:
        cluster = self.server.cluster
        obj = cluster.get(rt, namespace, name)
        if method in ("PUT", "PATCH"):
            body = self._parsed_body() or {}
            if method == "PATCH":
                ctype = self.headers.get("Content-Type") or ""
                replicas = (
                    (body.get("spec") or {}).get("replicas") if isinstance(body, dict) else None
                )
                if "json-patch" in ctype and isinstance(body, list):
                    replicas = next(
                        (op.get("value") for op in body if op.get("path") == "/spec/replicas"), None
                    )
            else:
                replicas = (body.get("spec") or {}).get("replicas")
            if replicas is not None:
                obj["spec"]["replicas"] = int(replicas)
                obj = cluster.write(rt, obj, manager=self._opts().manager)
        elif method != "GET":
            raise errors.method_not_allowed()
        status = obj.get("status") or {}
        selector = (obj.get("spec") or {}).get("selector") or {}
        labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
        self._json(
            200,
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    k: obj["metadata"][k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                },
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": status.get("replicas", 0), "selector": labels},
            },
        )

    def _log(self, rt: ResourceType, namespace: str, name: str) -> None:
        pod = self.server.cluster.get(rt, namespace, name)
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = self.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, "
                    f"choose one of: [{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers and container not in [
            c["name"] for c in pod["spec"].get("initContainers") or []
        ]:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        previous = self.query.get("previous") in ("true", "1", "True")
        lines = self.server.logs(pod, container, previous)
        if self.query.get("tailLines") is not None:
            count = self._number("tailLines")
            lines = lines[-count:] if count > 0 else []
        stamp = _started_at(pod, container, previous)
        if not self._logged_since(stamp):
            lines = []  # every canned line was written when the container started
        if self.query.get("timestamps") in ("true", "1", "True"):
            lines = [f"{stamp} {line}" for line in lines]
        text = "".join(line + "\n" for line in lines)
        if self.query.get("limitBytes") is not None:
            text = text.encode()[: max(self._number("limitBytes"), 0)].decode(errors="ignore")
        follow = self.query.get("follow") in ("true", "1", "True") and not previous
        instance = self.server.log_running(pod, container) if follow else None
        if instance is None:
            self._send(200, text.encode(), "text/plain")
            return
        self._follow(pod, container, instance, text.encode())

    def _logged_since(self, stamp: str) -> bool:
        """Whether lines written at ``stamp`` pass ``sinceSeconds``/``sinceTime``."""
        written = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
        if self.query.get("sinceSeconds") is not None:
            return written >= time.time() - self._number("sinceSeconds")
        since = self.query.get("sinceTime")
        if since:
            try:
                return written >= calendar.timegm(time.strptime(since[:19], "%Y-%m-%dT%H:%M:%S"))
            except ValueError:
                raise errors.bad_request(f'invalid value for sinceTime: "{since}"') from None
        return True

    def _follow(self, pod: dict[str, Any], container: str, instance: int, first: bytes) -> None:
        """``logs -f``: the lines so far, then hold the stream open while the container runs."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if first:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
                self.wfile.flush()
            while not self.server.closing.wait(0.1):
                if self.server.log_running(pod, container) != instance:
                    break
            self._end_stream()
        except OSError:
            self.close_connection = True

    # -- watch ------------------------------------------------------------------

    def _watch(self, rt: ResourceType, scope: str | None) -> None:
        server = self.server
        store = server.cluster.store
        labels = label_matcher(self.query.get("labelSelector"))
        fields = field_matcher(self.query.get("fieldSelector"), rt.kind)
        bookmarks = self.query.get("allowWatchBookmarks") in ("true", "1", "True")
        initial_events = self.query.get("sendInitialEvents") in ("true", "1", "True")
        timeout = float(self._number("timeoutSeconds")) or DEFAULT_WATCH_TIMEOUT
        requested = self.query.get("resourceVersion") or ""
        self._watch_rt = rt

        def matches(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if scope is not None and meta.get("namespace") != scope:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        with store.lock:
            current = store.resource_version
            initial: list[dict[str, Any]] = []
            gone: str | None = None
            if requested in ("", "0") or initial_events:
                initial = [clone(o) for o in store.items(rt.key, scope) if matches(o)]
                last = current
            else:
                try:
                    last = int(requested)
                except ValueError:
                    raise errors.bad_request(f"invalid resource version {requested!r}") from None
                if last < store.oldest_resumable():
                    gone = f"too old resource version: {last} ({store.oldest_resumable() + 1})"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with self.server._connections_lock:
            self.server.watches += 1
        try:
            if gone is not None:
                self._event("ERROR", errors.gone(gone).status())
                self._end_stream()
                return
            for obj in initial:
                self._event("ADDED", obj)
            if initial_events and bookmarks:
                self._bookmark(rt, current, initial_end=True)
            self._stream(rt, last, matches, bookmarks, timeout)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            with self.server._connections_lock:
                self.server.watches -= 1

    def _stream(
        self,
        rt: ResourceType,
        last: int,
        matches: Callable[[dict[str, Any] | None], bool],
        bookmarks: bool,
        timeout: float,
    ) -> None:
        server = self.server
        store = server.cluster.store
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + server.bookmark_interval
        while True:
            if server.faults.take_drop():
                self._drop()
                return
            with store.lock:
                if last < store.oldest_resumable():
                    events: list[WatchEvent] | None = None
                else:
                    events = store.events_after(last)
                    if not events and not store.closed:
                        wait = min(0.05, max(0.0, deadline - time.monotonic()))
                        store.changed.wait(wait)
                        events = store.events_after(last)
                closed = store.closed
                current = store.resource_version
            if events is None:
                self._event(
                    "ERROR",
                    errors.gone(
                        f"too old resource version: {last} ({store.oldest_resumable() + 1})"
                    ).status(),
                )
                break
            for event in events:
                last = event.rv
                if event.resource != rt.key:
                    continue
                now_in, was_in = matches(event.obj), matches(event.old)
                if event.type == "DELETED":
                    if was_in:
                        self._event("DELETED", event.obj)
                elif now_in and was_in:
                    self._event("MODIFIED", event.obj)
                elif now_in:
                    self._event("ADDED", event.obj)
                elif was_in:
                    self._event("DELETED", event.obj)
            if closed or server.closing.is_set():
                break
            now = time.monotonic()
            if now >= deadline:
                break
            if bookmarks and now >= next_bookmark:
                self._bookmark(rt, current)
                next_bookmark = now + server.bookmark_interval
        self._end_stream()

    def _bookmark(self, rt: ResourceType, rv: int, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        self._event("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED", "DELETED") and self._watch_rt is not None:
            obj = self._as_table(self._watch_rt, [obj], {}) or self._outgoing(obj)
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection mid-stream, without the final chunk."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- control endpoint (a path the real API never uses) ----------------------

    def _control(self, method: str, path: str) -> None:
        faults, store = self.server.faults, self.server.cluster.store
        if path == "/_sandbox/faults" and method == "POST":
            body = self._parsed_body() or {}
            try:
                faults.arm(body)
            except (TypeError, ValueError) as exc:
                raise errors.bad_request(f"bad fault spec: {exc}") from None
            self._json(200, {"armed": body})
        elif path == "/_sandbox/faults" and method == "DELETE":
            faults.clear()
            self._json(200, {"cleared": True})
        elif path == "/_sandbox/compact" and method == "POST":
            store.compact()
            self._json(200, {"compacted": store.resource_version})
        else:
            raise errors.not_found_path()


def _started_at(pod: dict[str, Any], container: str, previous: bool) -> str:
    """When the container (or its previous instance) started, as RFC 3339 with nanoseconds."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    stamp = ""
    for cs in statuses:
        if cs.get("name") == container:
            state = (cs.get("lastState") if previous else cs.get("state")) or {}
            for value in state.values():
                if isinstance(value, dict) and value.get("startedAt"):
                    stamp = value["startedAt"]
    stamp = stamp or pod["metadata"].get("creationTimestamp", "1970-01-01T00:00:00Z")
    return stamp.replace("Z", ".000000000Z") if "." not in stamp else stamp


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
