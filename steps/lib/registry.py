"""Turn ``repo:tag`` into ``sha256:...`` by asking the image's registry.

A small OCI distribution client on the standard library: one ``HEAD`` of the
manifest (a ``GET`` when the registry does not say the digest), the 401
challenge followed to Basic or Bearer auth (with the credentials
``registry_auth`` finds), and retries for what is worth retrying. Errors
follow the project's family: a tag or repository that does not exist, or
credentials that are refused, are the user's to fix (``UsageError``); a
registry that keeps failing is ``ExternalError``.

Every secret obtained here goes through ``register_secret`` the moment it is
read, and no message is built from one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlencode, urljoin, urlsplit

from steps import __version__
from steps.lib.errors import ExternalError, UsageError
from steps.lib.imageref import DOCKER_HUB, ImageRef
from steps.lib.output import redact, register_secret, say
from steps.lib.registry_auth import DOCKER_HUB_API, Credentials, CredentialSources
from steps.lib.retry import RETRY_AFTER_CAP, Backoff, backoff_delay

# Most specific first: an index is what a multi-platform tag points at, and
# its digest is the one that pins every platform.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

"""Seconds: a registry asking for a longer pause gets this much, then a retry."""
BACKOFF_CAP = 8.0
MAX_BODY = 8 * 1024 * 1024
"""Manifests are capped at 4 MiB by the common registries; twice that is plenty."""
MAX_REDIRECTS = 5

_SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class _Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class _Token:
    value: str
    expires: float


def api_host(registry: str) -> str:
    """The host that serves the registry API (Docker Hub's differs from its name)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def parse_challenge(values: list[str]) -> tuple[str, dict[str, str]] | None:
    """The preferred ``WWW-Authenticate`` challenge: Bearer over Basic."""
    found: dict[str, dict[str, str]] = {}
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        params = {
            m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
            for m in _CHALLENGE_PARAM.finditer(rest)
        }
        found.setdefault(scheme.lower(), params)
    for scheme in ("bearer", "basic"):
        if scheme in found:
            return scheme, found[scheme]
    return None


def _error_detail(response: _Response) -> str:
    """``CODE: message`` from a distribution error body, else the HTTP status."""
    try:
        errors = json.loads(response.body)["errors"]
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ") for e in errors]
    except (ValueError, KeyError, TypeError, AttributeError):
        parts = []
    detail = "; ".join(parts)[:300]
    return redact(f"{detail} (HTTP {response.status})" if detail else f"HTTP {response.status}")


def _error_codes(response: _Response) -> set[str]:
    try:
        return {str(e.get("code")) for e in json.loads(response.body)["errors"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return set()


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")


def _retry_after(response: _Response) -> float | None:
    value = response.header("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), RETRY_AFTER_CAP))
    except ValueError:
        # An HTTP date: rarely sent by registries; fall back to our backoff.
        return None


class RegistryClient:
    """Resolves tags to digests; caches digests per tag and tokens per scope."""

    def __init__(
        self,
        *,
        insecure_registries: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._insecure = {host.lower() for host in insecure_registries}
        self._auth = CredentialSources(os.environ if environ is None else environ)
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._ssl = ssl.create_default_context()
        self._digests: dict[tuple[str, str, str], str] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic: set[str] = set()

    # -- public ---------------------------------------------------------------

    def resolve_digest(self, ref: ImageRef) -> str:
        """The digest ``ref`` points at now, without a call when it has one."""
        if ref.digest:
            return ref.digest
        registry, path, tag = ref.registry, ref.path, ref.tag or "latest"
        key = (registry, path, tag)
        if key in self._digests:
            return self._digests[key]
        url = f"{self._scheme(registry)}://{api_host(registry)}/v2/{path}/manifests/{tag}"
        response = self._fetch(ref, "HEAD", url)
        digest = response.header("Docker-Content-Digest") if response.status == 200 else None
        if response.status == 405 or (response.status == 200 and not _valid(digest)):
            # No digest header (or no HEAD): the digest is the sha256 of the
            # exact bytes the registry serves for the tag.
            response = self._fetch(ref, "GET", url)
            if response.status == 200:
                digest = "sha256:" + hashlib.sha256(response.body).hexdigest()
        if response.status != 200 or digest is None:
            self._fail(ref, response)
        self._digests[key] = digest
        return digest

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials to offer ``registry`` (None means anonymous); looked up once."""
        return self._auth.lookup(registry)

    # -- auth -----------------------------------------------------------------

    def _fetch(self, ref: ImageRef, method: str, url: str) -> _Response:
        """One manifest request, authenticated as the registry's challenge asks."""
        registry = ref.registry
        scope = f"repository:{ref.path}:pull"
        headers = {"Accept": ACCEPT}
        sent = self._cached_authorization(registry, scope)
        if sent:
            headers["Authorization"] = sent
        where = f"registry {registry}"
        response = self._request(where, method, url, headers)
        if response.status != 401:
            return response
        challenge = parse_challenge(response.headers.get_all("WWW-Authenticate") or [])
        if challenge is None:
            return response
        scheme, params = challenge
        if scheme == "basic":
            credentials = self.credentials_for(registry)
            if credentials is None:
                raise UsageError(
                    f"registry {registry} requires credentials for {ref} and none were found "
                    f"({self._auth.docker_config_hint()})"
                )
            self._basic.add(registry)
            headers["Authorization"] = credentials.basic_header()
        else:
            scope = params.get("scope") or scope
            stale = sent if sent and sent.startswith("Bearer ") else None
            token = self._bearer_token(registry, params, scope, stale=stale)
            headers["Authorization"] = f"Bearer {token}"
        return self._request(where, method, url, headers)

    def _cached_authorization(self, registry: str, scope: str) -> str | None:
        if registry in self._basic:
            credentials = self.credentials_for(registry)
            return credentials.basic_header() if credentials else None
        token = self._tokens.get((registry, scope))
        if token and token.expires > time.monotonic():
            return f"Bearer {token.value}"
        return None

    def _bearer_token(
        self, registry: str, params: Mapping[str, str], scope: str, *, stale: str | None
    ) -> str:
        """A token for ``scope`` from the challenge's realm, reused until it expires."""
        cached = self._tokens.get((registry, scope))
        if cached and cached.expires > time.monotonic() and f"Bearer {cached.value}" != stale:
            return cached.value
        realm = params.get("realm")
        if not realm:
            raise ExternalError(f"registry {registry} sent a Bearer challenge without a realm")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ExternalError(f"registry {registry} sent an unusable token realm {realm!r}")
        if parts.scheme == "http" and not self._may_use_http(registry, parts.netloc):
            raise UsageError(
                f"registry {registry} asks for a token over plain HTTP from {parts.netloc}; "
                "list that host as an insecure registry if this is intended"
            )
        query = [("service", params["service"])] if params.get("service") else []
        query.append(("scope", scope))
        url = realm + ("&" if parts.query else "?") + urlencode(query)
        credentials = self.credentials_for(registry)
        headers = {"Accept": "application/json"}
        if credentials:
            headers["Authorization"] = credentials.basic_header()
        where = f"token service {parts.netloc} for {registry}"
        response = self._request(where, "GET", url, headers)
        if response.status in (401, 403):
            raise UsageError(
                f"registry {registry}: the token service {parts.netloc} refused a token "
                f"for {scope} (credentials: {self._auth.source(registry)}): "
                f"{_error_detail(response)}"
            )
        if response.status != 200:
            raise ExternalError(
                f"registry {registry}: the token service {parts.netloc} answered "
                f"{_error_detail(response)}"
            )
        token, lifetime = _token_from(response.body)
        if not token:
            raise ExternalError(f"registry {registry}: the token service returned no token")
        register_secret(token)
        # Renew a little early so a token never expires between check and use.
        expires = time.monotonic() + max(lifetime - 10, 1)
        self._tokens[(registry, scope)] = _Token(token, expires)
        return token

    # -- transport ------------------------------------------------------------

    def _scheme(self, registry: str) -> str:
        return "http" if registry.lower() in self._insecure else "https"

    def _may_use_http(self, registry: str, host: str) -> bool:
        return registry.lower() in self._insecure or host.lower() in self._insecure

    def _request(self, where: str, method: str, url: str, headers: Mapping[str, str]) -> _Response:
        """``_send`` following redirects; credentials stay with their origin."""
        current = dict(headers)
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(where, method, url, current)
            location = response.header("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            target = urljoin(url, location)
            parts = urlsplit(target)
            if parts.scheme != "https" and parts.netloc.lower() not in self._insecure:
                raise ExternalError(f"{where} redirected to plain HTTP at {parts.netloc}")
            if parts.netloc != origin:
                current.pop("Authorization", None)
            url = target
        raise ExternalError(f"{where}: more than {MAX_REDIRECTS} redirects")

    def _send(self, where: str, method: str, url: str, headers: Mapping[str, str]) -> _Response:
        """One request, retried on connection errors, timeouts, 429 and 5xx."""
        failure = ""
        for attempt in range(1, self._attempts + 1):
            retry_after: float | None = None
            try:
                response = self._once(method, url, headers)
            except ssl.SSLError as exc:
                if not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                    raise _tls_error(where, exc) from None
                failure = _describe_exception(exc)
            except (OSError, http.client.HTTPException) as exc:
                failure = _describe_exception(exc)
            else:
                if response.status != 429 and response.status < 500:
                    return response
                failure = _error_detail(response)
                retry_after = _retry_after(response)
            if attempt == self._attempts:
                break
            delay = self._backoff_delay(attempt, retry_after)
            say(
                f"{where}: {method} failed ({failure}); "
                f"retrying in {delay:.1f}s (attempt {attempt}/{self._attempts})"
            )
            time.sleep(delay)
        raise ExternalError(
            f"{where}: {method} {urlsplit(url).path} failed after {self._attempts} "
            f"attempt{'s' if self._attempts > 1 else ''}: {failure}"
        )

    def _backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The shared policy (``steps.lib.retry``), from this client's first delay."""
        policy = Backoff(self._backoff, BACKOFF_CAP)
        return backoff_delay(attempt, policy=policy, retry_after=retry_after)

    def _once(self, method: str, url: str, headers: Mapping[str, str]) -> _Response:
        parts = urlsplit(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.netloc, timeout=self._timeout, context=self._ssl
            )
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=self._timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(
                method, target, headers={"User-Agent": f"gitops-steps/{__version__}", **headers}
            )
            response = connection.getresponse()
            body = response.read(MAX_BODY + 1) if method != "HEAD" else b""
            if len(body) > MAX_BODY:
                raise http.client.HTTPException(f"response larger than {MAX_BODY} bytes")
            return _Response(response.status, response.headers, body)
        finally:
            connection.close()

    def _fail(self, ref: ImageRef, response: _Response) -> NoReturn:
        """Raise the error that a final non-200 manifest answer means."""
        registry = ref.registry
        codes = _error_codes(response)
        if response.status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}:
            detail = (
                _error_detail(response) if codes else f"manifest unknown (HTTP {response.status})"
            )
            raise UsageError(f"image {ref} not found on {registry}: {detail}")
        if response.status in (401, 403):
            raise UsageError(
                f"registry {registry} refused access to {ref} "
                f"(credentials: {self._auth.source(registry)}): {_error_detail(response)}"
            )
        if 400 <= response.status < 500:
            raise UsageError(f"registry {registry} rejected {ref}: {_error_detail(response)}")
        raise ExternalError(
            f"registry {registry} answered {_error_detail(response)} for {ref} without a digest"
        )


def _valid(digest: str | None) -> bool:
    return digest is not None and bool(_SHA256_DIGEST.match(digest))


def _tls_error(where: str, exc: ssl.SSLError) -> UsageError:
    """TLS that fails outright will fail again: usually a plain-HTTP registry."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"certificate not trusted ({exc.verify_message})"
    else:
        reason = exc.reason or type(exc).__name__
    return UsageError(
        f"{where}: HTTPS failed ({redact(str(reason))}); if this registry serves plain HTTP, "
        "list it as an insecure registry (HOST:PORT)"
    )


def _token_from(body: bytes) -> tuple[str, float]:
    try:
        answer = json.loads(body)
    except ValueError:
        return "", 0.0
    if not isinstance(answer, dict):
        return "", 0.0
    token = answer.get("token") or answer.get("access_token") or ""
    try:
        lifetime = float(answer.get("expires_in") or 60)
    except (TypeError, ValueError):
        lifetime = 60.0
    return str(token), lifetime
