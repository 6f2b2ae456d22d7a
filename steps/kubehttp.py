"""HTTP to a Kubernetes API server: TLS, credentials and one urllib3 pool.

``KubeApi`` sends every request through a ``Transport``: the server URL, an
``ssl.SSLContext`` built from the CA (or the system's trust store), a client
certificate when there is one, and an ``Auth`` that says what goes in the
``Authorization`` header and whether a 401 is worth one retry with a fresh
credential (exec plugins, token files, ADC). No redirects are followed (an
API server does not redirect, and a redirect must never carry the token
elsewhere) and urllib3 retries nothing: ``KubeApi`` decides what to retry.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from steps.errors import UsageError
from steps.kubeconfig import ClientConfig, ExecCredentials
from steps.output import register_secret, warn

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
    """Verify against ``ca_pem`` (else the system's CAs), present ``client_cert`` if any."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_pem:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=ca_pem)
        except ssl.SSLError as exc:
            raise UsageError(f"{where}: certificate-authority: not a usable CA: {exc}") from None
    if client_cert is not None:
        _load_client_certificate(context, *client_cert, where=where)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str, where: str) -> None:
    # ssl wants files: a private directory, removed as soon as the key is loaded.
    with tempfile.TemporaryDirectory(prefix="gitops-tls-") as directory:
        cert_file, key_file = Path(directory, "client.crt"), Path(directory, "client.key")
        cert_file.write_text(cert)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key)
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except ssl.SSLError as exc:
            raise UsageError(
                f"{where}: client-certificate and client-key do not make a usable pair: {exc}"
            ) from None


# --------------------------------------------------------------------------- transport


class Transport:
    """One API server: base URL, a urllib3 pool with our TLS, and the credential."""

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
        self.auth = auth or Auth()
        self.ca_pem = ca_pem
        self.insecure = insecure
        self.tls_server_name = tls_server_name
        self.proxy_url = proxy_url if proxy_url is not None else _proxy_from_environment(server)
        self.client_cert = client_cert
        self.where = where
        self._pool: Any = None
        self._pool_cert: tuple[str, str] | None = None
        self._lock = threading.Lock()
        if insecure and parts.scheme == "https":
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

    def _client_certificate(self) -> tuple[str, str] | None:
        # The kubeconfig's own certificate, else one an exec plugin gave.
        return self.client_cert or self.auth.client_certificate()

    def pool(self) -> Any:
        """The urllib3 pool, rebuilt when an exec plugin hands over a new certificate."""
        import urllib3

        cert = self._client_certificate() if self.server.startswith("https") else None
        with self._lock:
            if self._pool is not None and cert == self._pool_cert:
                return self._pool
            options: dict[str, Any] = {"maxsize": 16, "retries": False}
            if self.server.startswith("https"):
                options["ssl_context"] = ssl_context(
                    self.ca_pem, insecure=self.insecure, client_cert=cert, where=self.where
                )
                if self.insecure:
                    options["cert_reqs"] = "CERT_NONE"
                    options["assert_hostname"] = False
                    # Said once, when the transport was made; not on every request.
                    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                elif self.tls_server_name:
                    options["server_hostname"] = self.tls_server_name
                    options["assert_hostname"] = self.tls_server_name
            if self.proxy_url:
                self._pool = urllib3.ProxyManager(self.proxy_url, **options)
            else:
                self._pool = urllib3.PoolManager(**options)
            self._pool_cert = cert
            return self._pool

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | tuple[float, float],
        preload: bool = True,
    ) -> Any:
        """The urllib3 response (body read unless not ``preload``: watches stream).

        After a 401, one retry with a fresh credential when there is one.
        """
        import urllib3

        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        limits = urllib3.Timeout(connect=connect, read=read)
        url = self.server + path
        for attempt in (1, 2):
            sent = self.auth.header()
            all_headers = dict(headers)
            if sent:
                all_headers["Authorization"] = sent
            response = self.pool().request(
                method,
                url,
                body=body,
                headers=all_headers,
                timeout=limits,
                preload_content=preload,
                redirect=False,
                retries=False,
            )
            if response.status != 401 or attempt == 2 or not self.auth.rejected(sent):
                return response
            if not preload:
                response.drain_conn()
                response.release_conn()
        raise AssertionError("unreachable")


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
    import google.auth.exceptions
    import google.auth.transport
    import urllib3

    http = pool or urllib3.PoolManager(ssl_context=ssl.create_default_context())

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
                response = http.request(
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
