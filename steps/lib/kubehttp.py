"""HTTP to a Kubernetes API server: TLS, credentials and a pool of connections.

``KubeApi`` sends every request through a ``Transport``: the server URL, an
``ssl.SSLContext`` built from the CA (or the system's trust store), a client
certificate when there is one, and an ``Auth`` that says what goes in the
``Authorization`` header and whether a 401 is worth one retry with a fresh
credential (exec plugins, token files, ADC). No redirects are followed (an
API server does not redirect, and a redirect must never carry the token
elsewhere) and nothing is retried here: ``KubeApi`` decides what to retry.

Built on sockets, with the little of HTTP/1.1 an API server speaks (one
request per write; bodies by Content-Length, chunked, or up to the close):
importing urllib3 (with logging and importlib.metadata) cost 15 ms on an
idle machine and 35-110 ms under load before the first request of every
stage, and the standard library's ``http.client`` (with the ``email``
package it parses headers with) 7 ms idle and 15-20 ms under load; a
verdict's speed is mostly start-up. ``ssl`` is imported only for an https
server. Keep-alive connections are pooled (watches each hold one); an idle
connection the server closed is noticed before reuse, or replaced once when
a request on it fails at once.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from steps.lib.errors import UsageError
from steps.lib.httpwire import Connection, RawResponse
from steps.lib.kubeconfig import ClientConfig, ExecCredentials
from steps.lib.output import register_secret, warn

if TYPE_CHECKING:
    import ssl

POOL_SIZE = 16
"""Idle connections kept per server (watches and parallel dry runs each use one)."""
TOKEN_FILE_REREAD = 60.0
"""Seconds between re-reads of a token file (projected tokens rotate), as client-go does."""


# --------------------------------------------------------------------------- credentials


class Auth:
    """No credentials (a client certificate alone, or an open server)."""

    def header(self) -> str | None:
        return None

    def client_certificate(self) -> tuple[str, str] | None:
        return None

    def rejected(self, sent: str | None) -> bool:
        """The server said 401 to ``sent``: True when a fresh credential is now ready."""
        return False


class StaticToken(Auth):
    def __init__(self, value: str) -> None:
        register_secret(value)
        self.value = f"Bearer {value}"

    def header(self) -> str | None:
        return self.value


class BasicAuth(Auth):
    def __init__(self, username: str, password: str) -> None:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        register_secret(pair)
        self.value = f"Basic {pair}"

    def header(self) -> str | None:
        return self.value


class TokenFile(Auth):
    """A token read from a file, re-read every minute and after a 401."""

    def __init__(self, path: Path, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.where = where
        self.clock = clock
        self._value: str | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()
        self._read()

    def _read(self) -> str:
        try:
            token = self.path.read_text().strip()
        except OSError as exc:
            raise UsageError(f"{self.where}: token file {self.path}: cannot read: {exc}") from None
        if not token:
            raise UsageError(f"{self.where}: token file {self.path} is empty")
        register_secret(token)
        self._value, self._read_at = token, self.clock()
        return token

    def header(self) -> str | None:
        with self._lock:
            token = self._value
            if token is None or self.clock() - self._read_at >= TOKEN_FILE_REREAD:
                token = self._read()
            return f"Bearer {token}"

    def rejected(self, sent: str | None) -> bool:
        with self._lock:
            old = self._value
            return self._read() != old


class ExecAuth(Auth):
    """Credentials from an exec plugin: its token and/or its client certificate."""

    def __init__(self, credentials: ExecCredentials) -> None:
        self.credentials = credentials

    def header(self) -> str | None:
        token = self.credentials.current().token
        return f"Bearer {token}" if token else None

    def client_certificate(self) -> tuple[str, str] | None:
        found = self.credentials.current()
        if found.client_cert_pem and found.client_key_pem:
            return found.client_cert_pem, found.client_key_pem
        return None

    def rejected(self, sent: str | None) -> bool:
        fresh = self.credentials.current(refresh=True)
        return (f"Bearer {fresh.token}" if fresh.token else None) != sent


class CallbackToken(Auth):
    """A bearer token from a function (ADC for --cluster), asked before every request."""

    def __init__(self, token: Callable[[], str]) -> None:
        self.token = token

    def header(self) -> str | None:
        return f"Bearer {self.token()}"


def auth_for(config: ClientConfig) -> Auth:
    """The credential a kubeconfig user names (token file over token, as client-go)."""
    if config.exec is not None:
        return ExecAuth(
            ExecCredentials(
                config.exec,
                server=config.server,
                ca_pem=config.ca_pem,
                insecure=config.insecure,
                where=config.where,
            )
        )
    if config.token_file is not None:
        return TokenFile(config.token_file, config.where)
    if config.token:
        return StaticToken(config.token)
    if config.username is not None and config.password is not None:
        return BasicAuth(config.username, config.password)
    return Auth()


# --------------------------------------------------------------------------- TLS


def ssl_context(
    ca_pem: str | None,
    *,
    insecure: bool = False,
    client_cert: tuple[str, str] | None = None,
    where: str = "",
) -> ssl.SSLContext:
    """Verify against ``ca_pem`` (else the system's CAs), present ``client_cert`` if any.

    The system's CA bundle is read only when it is the one to verify against:
    parsing it costs about 20 ms, and a kubeconfig's cluster (GKE's too) names
    its own CA.
    """
    import ssl

    if insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_pem:
        try:
            context = ssl.create_default_context(cadata=ca_pem)
        except ssl.SSLError as exc:
            raise UsageError(f"{where}: certificate-authority: not a usable CA: {exc}") from None
    else:
        context = ssl.create_default_context()
    if client_cert is not None:
        _load_client_certificate(context, *client_cert, where=where)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str, where: str) -> None:
    import ssl

    try:
        with _pem_files(cert, key) as (cert_file, key_file):
            context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise UsageError(
            f"{where}: client-certificate and client-key do not make a usable pair: {exc}"
        ) from None


@contextlib.contextmanager
def _pem_files(cert: str, key: str) -> Iterator[tuple[str, str]]:
    """Paths ``ssl`` can read the certificate and key from (it reads only files).

    On Linux, anonymous in-memory files (``memfd_create``): the key never
    touches a disk, and there is no ``tempfile`` to import (3 ms). Elsewhere,
    a private temporary directory, removed as soon as the key is loaded.
    """
    descriptors = _memory_files({"gitops-client-cert": cert, "gitops-client-key": key})
    if descriptors:
        try:
            yield (f"/proc/self/fd/{descriptors[0]}", f"/proc/self/fd/{descriptors[1]}")
        finally:
            for descriptor in descriptors:
                os.close(descriptor)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gitops-tls-") as directory:
        cert_file, key_file = Path(directory, "client.crt"), Path(directory, "client.key")
        cert_file.write_text(cert)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key)
        yield (str(cert_file), str(key_file))


def _memory_files(texts: Mapping[str, str]) -> list[int]:
    """An open memfd per named text, in order; none where Linux's memfd is missing or refused."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is None or not os.path.isdir("/proc/self/fd"):
        return []
    descriptors: list[int] = []
    try:
        for name, text in texts.items():
            descriptors.append(memfd(name))
            with open(descriptors[-1], "w", closefd=False) as handle:
                handle.write(text)
    except OSError:  # refused here (a seccomp profile): the caller uses temporary files
        for descriptor in descriptors:
            os.close(descriptor)
        return []
    return descriptors


# --------------------------------------------------------------------------- transport


class Transport:
    """One API server: base URL, a pool of keep-alive connections with our TLS, the credential."""

    def __init__(
        self,
        server: str,
        auth: Auth | None = None,
        *,
        ca_pem: str | None = None,
        insecure: bool = False,
        tls_server_name: str | None = None,
        proxy_url: str | None = None,
        client_cert: tuple[str, str] | None = None,
        where: str = "",
    ) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{where}: server {server!r} is not an http(s) URL")
        self.server = server.rstrip("/")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.base_path = parts.path.rstrip("/")
        self.auth = auth or Auth()
        self.ca_pem = ca_pem
        self.insecure = insecure
        self.tls_server_name = tls_server_name
        self.proxy = _proxy_address(
            proxy_url if proxy_url is not None else _proxy_from_environment(server), where
        )
        self.client_cert = client_cert
        self.where = where
        self._idle: list[Connection] = []
        self._context: ssl.SSLContext | None = None
        self._context_cert: tuple[str, str] | None = None
        self._lock = threading.Lock()
        if insecure and self.tls:
            warn(f"{where or server}: TLS certificate verification is off "
                 "(insecure-skip-tls-verify)")  # fmt: skip

    @classmethod
    def from_config(cls, config: ClientConfig) -> Transport:
        return cls(
            config.server,
            auth_for(config),
            ca_pem=config.ca_pem,
            insecure=config.insecure,
            tls_server_name=config.tls_server_name,
            proxy_url=config.proxy_url,
            client_cert=(
                (config.client_cert_pem, config.client_key_pem)
                if config.client_cert_pem and config.client_key_pem
                else None
            ),
            where=config.where,
        )

    # -- connections

    def _tls_context(self) -> ssl.SSLContext:
        """Built once; again when an exec plugin hands over a new client certificate."""
        cert = self.client_cert or self.auth.client_certificate()
        with self._lock:
            if self._context is None or cert != self._context_cert:
                self._context = ssl_context(
                    self.ca_pem, insecure=self.insecure, client_cert=cert, where=self.where
                )
                self._context_cert = cert
                for stale in self._idle:  # made with the old certificate
                    stale.close()
                self._idle.clear()
            return self._context

    def _connection(self, connect_timeout: float) -> tuple[Connection, bool]:
        """An idle connection still open (reused: True), or a new one."""
        context = self._tls_context() if self.tls else None
        with self._lock:
            while self._idle:
                idle = self._idle.pop()
                if not _dropped(idle):
                    return idle, True
                idle.close()
        host, port = self.proxy or (self.host, self.port)
        connection = Connection(
            host,
            port,
            timeout=connect_timeout,
            context=context,
            server_name=self.tls_server_name,
            tunnel=(self.host, self.port) if self.proxy and context is not None else None,
        )
        return connection, False

    def give_back(self, connection: Connection) -> None:
        with self._lock:
            if len(self._idle) < POOL_SIZE:
                self._idle.append(connection)
                return
        connection.close()

    # -- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | tuple[float, float],
        preload: bool = True,
    ) -> Response:
        """The response (body read unless not ``preload``: watches stream).

        After a 401, one retry with a fresh credential when there is one. A
        kept-alive connection the server closed meanwhile is replaced once.
        Raises ``OSError`` when no answer came.
        """
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        target = self.base_path + path
        if self.proxy and not self.tls:
            target = f"http://{self.host}:{self.port}{target}"  # absolute form, for the proxy
        for attempt in (1, 2):
            sent = self.auth.header()
            all_headers = {"Host": _host_header(self.host, self.port, self.tls), **headers}
            if sent:
                all_headers["Authorization"] = sent
            response = self._exchange(method, target, all_headers, body, connect, read, preload)
            if response.status != 401 or attempt == 2 or not self.auth.rejected(sent):
                return response
            response.close()
        raise AssertionError("unreachable")

    def _exchange(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
        connect: float,
        read: float,
        preload: bool,
    ) -> Response:
        while True:
            connection, reused = self._connection(connect)
            try:
                if connection.sock is None:
                    connection.connect()
                sock = connection.sock
                if sock is not None:
                    sock.settimeout(read)
                raw = connection.request(method, target, body, headers)
                response = Response(self, connection, raw)
                if preload:
                    response.data  # noqa: B018 -- read now, inside this try
                return response
            except OSError as exc:
                connection.close()
                stale = isinstance(exc, BrokenPipeError | ConnectionResetError)
                if reused and stale:
                    continue  # the server closed a kept-alive connection: a new one, once
                raise


class Response:
    """One answer: ``status``, ``headers``, ``data`` (all of it), ``read1`` (a watch).

    The connection goes back to the pool once the body has been read to its
    end; ``close`` drops it, ``shutdown`` also wakes a thread blocked reading.
    """

    chunked = False  # ``read1`` already decodes chunked bodies

    def __init__(self, transport: Transport, connection: Connection, raw: RawResponse) -> None:
        self._transport = transport
        self._connection: Connection | None = connection
        self._raw = raw
        self._data: bytes | None = None
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.headers

    @property
    def data(self) -> bytes:
        if self._data is None:
            try:
                self._data = self._raw.read()
            except BaseException:
                self.close()
                raise
            self.release_conn()
        return self._data

    def read1(self, size: int = 65536) -> bytes:
        chunk = self._raw.read1(size)
        if not chunk:
            self.release_conn()
        return chunk

    def release_conn(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._raw.isclosed() and not self._raw.will_close:
            self._transport.give_back(connection)  # read to the end: reusable
        else:
            connection.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def shutdown(self) -> None:
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def _dropped(connection: Connection) -> bool:
    """An idle connection the server closed (readable at rest means EOF or garbage)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _host_header(host: str, port: int, tls: bool) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if tls else 80) else f"{name}:{port}"


def _proxy_address(url: str | None, where: str) -> tuple[str, int] | None:
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"{where}: proxy {url!r}: only http:// proxies are supported")
    return parts.hostname, parts.port or 80


def _proxy_from_environment(server: str) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY unless NO_PROXY covers the host, as kubectl does."""
    if not any(name.lower() in ("https_proxy", "http_proxy") for name in os.environ):
        return None  # the common case, without importing urllib.request (~5 ms)
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(server)
    proxy = proxies.get(parts.scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parts.netloc, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


# --------------------------------------------------------------------------- google-auth


def google_request(pool: Any = None) -> Any:
    """A ``google.auth.transport.Request`` over urllib3 (no ``requests`` needed).

    google-auth asks it for tokens (metadata server, STS, OAuth); errors
    become google-auth's ``TransportError`` so its own retries apply.
    """
    import ssl

    import google.auth.exceptions
    import google.auth.transport
    import urllib3

    manager = pool or urllib3.PoolManager(ssl_context=ssl.create_default_context())

    class Response(google.auth.transport.Response):
        def __init__(self, response: Any) -> None:
            self._response = response

        @property
        def status(self) -> int:
            return int(self._response.status)

        @property
        def headers(self) -> Mapping[str, str]:
            # urllib3's HTTPHeaderDict: case-insensitive, as google-auth expects.
            headers: Mapping[str, str] = self._response.headers
            return headers

        @property
        def data(self) -> bytes:
            return bytes(self._response.data)

    class Request(google.auth.transport.Request):
        def __call__(
            self,
            url: str,
            method: str = "GET",
            body: Any = None,
            headers: Mapping[str, str] | None = None,
            timeout: float | None = None,
            **kwargs: Any,
        ) -> Response:
            try:
                response = manager.request(
                    method,
                    url,
                    body=body,
                    headers=dict(headers or {}),
                    timeout=urllib3.Timeout(total=timeout or 120),
                    redirect=False,
                    retries=False,
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise google.auth.exceptions.TransportError(exc) from exc  # type: ignore[no-untyped-call]
            return Response(response)

    return Request()
