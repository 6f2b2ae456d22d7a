"""Digest resolution against a real registry on loopback, and scripted servers.

The real docker-registry checks that we agree with it about digests, indexes
and basic auth; small scripted servers in this file stand in for what it cannot
do (Bearer tokens, failures, a registry that omits the digest header).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fixtures_registry import ImagePusher

from steps.lib.errors import ExternalError, StepError, UsageError
from steps.lib.imageref import ImageRef
from steps.lib.output import redact
from steps.lib.registry import ACCEPT, RegistryClient, parse_challenge
from steps.lib.registry_auth import is_google_registry
from steps.sandbox.registry import DOCKER_MANIFEST, OCI_MANIFEST, LocalRegistry

DIGEST = "sha256:" + "ab" * 32


# -- a scripted loopback server -------------------------------------------------


@dataclass
class Seen:
    """One request a scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


Reply = tuple[int, dict[str, str], bytes]


class ScriptedServer:
    """An HTTP server on 127.0.0.1 whose answers come from ``respond``."""

    def __init__(self, respond: Callable[[Seen], Reply]) -> None:
        self.requests: list[Seen] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Seen(self.command, self.path, dict(self.headers.items()), body)
                seen.append(request)
                status, headers, body = respond(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def forward(upstream: str, request: Seen) -> Reply:
    """Pass a request on to the real registry and its answer back."""
    connection = http.client.HTTPConnection(upstream, timeout=10)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() == "accept"}
        connection.request(request.method, request.path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        keep = ("content-type", "docker-content-digest")
        return (
            response.status,
            {k: v for k, v in response.getheaders() if k.lower() in keep},
            body,
        )
    finally:
        connection.close()


def scripted(replies: list[Reply]) -> Callable[[Seen], Reply]:
    """Answer with ``replies`` in turn, repeating the last one."""
    remaining = list(replies)

    def respond(request: Seen) -> Reply:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return respond


def client_for(
    address: str, *, attempts: int = 4, environ: dict[str, str] | None = None
) -> RegistryClient:
    """A client that talks plain HTTP to ``address`` and retries quickly."""
    return RegistryClient(
        insecure_registries=[address],
        environ=environ if environ is not None else {"HOME": "/nonexistent"},
        timeout=5.0,
        attempts=attempts,
        backoff=0.01,
    )


def write_docker_config(directory: Path, config: dict[str, object]) -> dict[str, str]:
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory), "HOME": "/nonexistent"}


def basic_auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


# -- against the real registry --------------------------------------------------


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_resolves_a_tag_to_the_digest_the_registry_reports(
    images: ImagePusher, media_type: str
) -> None:
    pushed = images.push("app", "v1", media_type=media_type)

    digest = client_for(images.registry.address).resolve_digest(images.ref("app", "v1"))

    assert digest == pushed


def test_no_tag_means_latest(images: ImagePusher) -> None:
    pushed = images.push("app", "latest", seed="latest")
    images.push("app", "other", seed="other")

    ref = ImageRef.parse(images.repository("app"))

    assert client_for(images.registry.address).resolve_digest(ref) == pushed


def test_an_index_resolves_to_the_index_digest(images: ImagePusher) -> None:
    amd64 = images.push("multi", "amd64", seed="a", architecture="amd64")
    arm64 = images.push("multi", "arm64", seed="b", architecture="arm64")
    index = images.push_index("multi", "v2", [amd64, arm64])

    digest = client_for(images.registry.address).resolve_digest(images.ref("multi", "v2"))

    assert digest == index
    assert digest not in (amd64, arm64)


@pytest.mark.parametrize("name, tag", [("app", "no-such-tag"), ("no-such-repo", "v1")])
def test_a_missing_image_is_a_usage_error_naming_it(
    images: ImagePusher, name: str, tag: str
) -> None:
    images.push("app", "v1")
    ref = images.ref(name, tag)

    with pytest.raises(UsageError) as caught:
        client_for(images.registry.address).resolve_digest(ref)

    assert f"image {ref} not found on {images.registry.address}" in caught.value.message


def test_https_is_used_unless_the_registry_is_listed_insecure(images: ImagePusher) -> None:
    images.push("app", "v1")
    client = RegistryClient(attempts=2, backoff=0.01, timeout=5.0, environ={})

    with pytest.raises(StepError) as caught:
        client.resolve_digest(images.ref("app", "v1"))

    assert isinstance(caught.value, UsageError | ExternalError)
    assert "HTTPS" in caught.value.message
    assert "insecure" in caught.value.message


# -- basic auth and where credentials come from ---------------------------------


@pytest.mark.parametrize("form", ["auth", "username-password", "scheme-key"])
def test_basic_auth_from_docker_config(
    auth_images: ImagePusher, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    registry = auth_images.registry
    assert registry.username and registry.password
    pushed = auth_images.push("app", "v1")
    entry: dict[str, str]
    key = registry.address
    if form == "username-password":
        entry = {"username": registry.username, "password": registry.password}
    else:
        entry = {"auth": basic_auth(registry.username, registry.password)}
        if form == "scheme-key":
            key = f"http://{registry.address}/v2/"
    environ = write_docker_config(tmp_path, {"auths": {key: entry}})

    digest = client_for(registry.address, environ=environ).resolve_digest(
        auth_images.ref("app", "v1")
    )

    assert digest == pushed
    assert redact(registry.password) == "[REDACTED]"
    assert registry.password not in capsys.readouterr().err


def test_a_refused_password_names_the_source_but_never_the_secret(
    auth_images: ImagePusher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = auth_images.registry
    wrong = "wrong-password-1234"
    environ = write_docker_config(
        tmp_path, {"auths": {registry.address: {"auth": basic_auth("gitops", wrong)}}}
    )
    auth_images.push("app", "v1")

    with pytest.raises(UsageError) as caught:
        client_for(registry.address, environ=environ).resolve_digest(auth_images.ref("app", "v1"))

    message = caught.value.message
    assert registry.address in message
    assert f"Docker config {tmp_path / 'config.json'}" in message
    for secret in (wrong, basic_auth("gitops", wrong)):
        assert secret not in message
        assert secret not in capsys.readouterr().err


def test_no_credentials_for_a_registry_that_wants_them(
    auth_images: ImagePusher, tmp_path: Path
) -> None:
    auth_images.push("app", "v1")
    environ = {"DOCKER_CONFIG": str(tmp_path), "HOME": "/nonexistent"}

    with pytest.raises(UsageError, match="requires credentials"):
        client_for(auth_images.registry.address, environ=environ).resolve_digest(
            auth_images.ref("app", "v1")
        )


def test_credentials_from_a_docker_credential_helper(
    auth_images: ImagePusher, tmp_path: Path
) -> None:
    registry = auth_images.registry
    assert registry.username and registry.password
    pushed = auth_images.push("app", "v1")
    answer = json.dumps(
        {"ServerURL": registry.address, "Username": registry.username, "Secret": registry.password}
    )
    helper = tmp_path / "docker-credential-fake"
    # The helper answers only for the host it is asked about on stdin.
    helper.write_text(
        "#!/bin/sh\n"
        'read host\n[ "$1" = get ] || exit 1\n'
        f'[ "$host" = "{registry.address}" ] || {{ echo "credentials not found"; exit 1; }}\n'
        f"echo '{answer}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    environ = write_docker_config(tmp_path, {"credHelpers": {registry.address: "fake"}})
    environ["PATH"] = f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"

    client = client_for(registry.address, environ=environ)

    assert client.resolve_digest(auth_images.ref("app", "v1")) == pushed
    credentials = client.credentials_for(registry.address)
    assert credentials is not None
    assert "docker-credential-fake" in credentials.source
    assert registry.password not in repr(credentials)


def test_google_hosts_without_adc_say_how_to_provide_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A missing key file makes google.auth.default fail before any network call.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    client = RegistryClient(environ={})

    with pytest.raises(UsageError) as caught:
        client.credentials_for("europe-docker.pkg.dev")

    assert "Application Default Credentials" in caught.value.message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in caught.value.message


def test_google_hosts_use_application_default_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A service-account key whose token endpoint is a loopback server.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    access_token = "ya29.loopback-" + "y" * 20
    answer = {"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"}
    reply: Reply = (200, {"Content-Type": "application/json"}, json.dumps(answer).encode())
    with ScriptedServer(scripted([reply])) as server:
        key_file = tmp_path / "sa.json"
        key_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "sandbox",
                    "private_key_id": "k1",
                    "private_key": pem,
                    "client_email": "deployer@sandbox.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": f"http://{server.address}/token",
                }
            )
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        client = RegistryClient(environ={})

        gcr = client.credentials_for("gcr.io")
        artifact_registry = client.credentials_for("europe-docker.pkg.dev")

    assert gcr is not None
    assert (gcr.username, gcr.password, gcr.source) == (
        "oauth2accesstoken",
        access_token,
        "Application Default Credentials",
    )
    assert artifact_registry == gcr
    assert [r.method for r in server.requests] == ["POST"]
    assert redact(access_token) == "[REDACTED]"
    assert access_token not in repr(gcr)


@pytest.mark.parametrize(
    "host, google",
    [
        ("gcr.io", True),
        ("eu.gcr.io", True),
        ("us-central1-docker.pkg.dev", True),
        ("docker.io", False),
        ("ghcr.io", False),
        ("127.0.0.1:5000", False),
        ("notgcr.io", False),
    ],
)
def test_google_hosts(host: str, google: bool) -> None:
    assert is_google_registry(host) is google


def test_parse_challenge_prefers_bearer() -> None:
    challenge = parse_challenge(
        [
            'Basic realm="r"',
            'Bearer realm="https://auth.example/token",service="reg",'
            'scope="repository:a/b:pull",error="insufficient_scope"',
        ]
    )

    assert challenge == (
        "bearer",
        {
            "realm": "https://auth.example/token",
            "service": "reg",
            "scope": "repository:a/b:pull",
            "error": "insufficient_scope",
        },
    )


# -- Bearer tokens ---------------------------------------------------------------


@contextmanager
def token_front(
    upstream: LocalRegistry, *, accept: str | None = None
) -> Iterator[tuple[ScriptedServer, list[dict[str, list[str]]], list[Seen]]]:
    """A registry front that wants a Bearer token, and its token service.

    ``accept`` is the only Basic credential the token service takes (None:
    anonymous tokens). Yields the server, the token requests' queries, and
    the token requests themselves.
    """
    token = "tok-" + "x" * 24
    queries: list[dict[str, list[str]]] = []
    token_requests: list[Seen] = []
    address: list[str] = []

    def respond(request: Seen) -> Reply:
        parts = urlsplit(request.path)
        if parts.path == "/token":
            token_requests.append(request)
            queries.append(parse_qs(parts.query))
            if accept is not None and request.headers.get("Authorization") != f"Basic {accept}":
                return 401, {}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
            return 200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()
        if request.headers.get("Authorization") == f"Bearer {token}":
            return forward(upstream.address, request)
        repository = parts.path.removeprefix("/v2/").split("/manifests/")[0]
        challenge = (
            f'Bearer realm="http://{address[0]}/token",service="sandbox",'
            f'scope="repository:{repository}:pull"'
        )
        return 401, {"WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'

    with ScriptedServer(respond) as server:
        address.append(server.address)
        yield server, queries, token_requests


def test_bearer_token_flow_requests_the_scope_and_reuses_the_token(
    images: ImagePusher,
) -> None:
    pushed = images.push("app", "v1")
    other = images.push("app", "v2", seed="v2")
    with token_front(images.registry) as (front, queries, _):
        client = client_for(front.address)
        ref = ImageRef.parse(f"{front.address}/{images.prefix}/app:v1")

        assert client.resolve_digest(ref) == pushed
        assert client.resolve_digest(ImageRef.parse(f"{front.address}/{images.prefix}/app:v2")) == (
            other
        )

    assert queries == [{"service": ["sandbox"], "scope": [f"repository:{images.prefix}/app:pull"]}]
    manifest_requests = [r for r in front.requests if "/manifests/" in r.path]
    # v1: anonymous then with the token; v2: straight away with the token.
    assert [r.headers.get("Authorization", "") for r in manifest_requests] == [
        "",
        "Bearer tok-" + "x" * 24,
        "Bearer tok-" + "x" * 24,
    ]
    assert manifest_requests[0].headers["Accept"] == ACCEPT
    assert redact("tok-" + "x" * 24) == "[REDACTED]"


def test_bearer_token_service_gets_basic_credentials(images: ImagePusher, tmp_path: Path) -> None:
    pushed = images.push("app", "v1")
    good = basic_auth("robot", "token-service-password")
    with token_front(images.registry, accept=good) as (front, _, token_requests):
        environ = write_docker_config(tmp_path, {"auths": {front.address: {"auth": good}}})
        ref = ImageRef.parse(f"{front.address}/{images.prefix}/app:v1")

        assert client_for(front.address, environ=environ).resolve_digest(ref) == pushed

    assert token_requests[0].headers["Authorization"] == f"Basic {good}"


def test_bearer_token_service_refusal_is_a_usage_error_without_the_secret(
    images: ImagePusher, tmp_path: Path
) -> None:
    images.push("app", "v1")
    wrong = basic_auth("robot", "not-the-password")
    with token_front(images.registry, accept=basic_auth("robot", "right")) as (front, _, _):
        environ = write_docker_config(tmp_path, {"auths": {front.address: {"auth": wrong}}})
        ref = ImageRef.parse(f"{front.address}/{images.prefix}/app:v1")

        with pytest.raises(UsageError) as caught:
            client_for(front.address, environ=environ).resolve_digest(ref)

    assert "Docker config" in caught.value.message
    assert "not-the-password" not in caught.value.message
    assert wrong not in caught.value.message


# -- retries, failures, shortcuts -------------------------------------------------


def test_retries_500_and_429_then_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    replies: list[Reply] = [
        (500, {}, b""),
        (429, {"Retry-After": "0"}, b""),
        (200, {"Docker-Content-Digest": DIGEST}, b"{}"),
    ]
    with ScriptedServer(scripted(replies)) as server:
        ref = ImageRef.parse(f"{server.address}/team/app:v1")

        assert client_for(server.address, attempts=4).resolve_digest(ref) == DIGEST

    assert len(server.requests) == 3
    assert "retrying" in capsys.readouterr().err


def test_gives_up_after_the_attempts_with_an_external_error() -> None:
    with ScriptedServer(scripted([(503, {}, b"down")])) as server:
        ref = ImageRef.parse(f"{server.address}/team/app:v1")

        with pytest.raises(ExternalError) as caught:
            client_for(server.address, attempts=3).resolve_digest(ref)

    assert len(server.requests) == 3
    assert server.address in caught.value.message
    assert "HTTP 503" in caught.value.message
    assert "3 attempts" in caught.value.message


def test_connection_refused_is_an_external_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        # Bound but not listening: connections are refused.
        with pytest.raises(ExternalError, match=address):
            client_for(address, attempts=2).resolve_digest(ImageRef.parse(f"{address}/a:v1"))


def test_a_digest_in_the_reference_means_no_network_call() -> None:
    with ScriptedServer(scripted([(500, {}, b"")])) as server:
        ref = ImageRef.parse(f"{server.address}/team/app:v1@{DIGEST}")

        assert client_for(server.address).resolve_digest(ref) == DIGEST

    assert server.requests == []


def test_get_fallback_hashes_the_exact_body_when_the_header_is_missing(
    images: ImagePusher,
) -> None:
    pushed = images.push("app", "v1")

    def strip_digest(request: Seen) -> Reply:
        status, headers, body = forward(images.registry.address, request)
        headers.pop("Docker-Content-Digest", None)
        headers.pop("docker-content-digest", None)
        return status, headers, body

    with ScriptedServer(strip_digest) as server:
        ref = ImageRef.parse(f"{server.address}/{images.prefix}/app:v1")

        assert client_for(server.address).resolve_digest(ref) == pushed

    assert [r.method for r in server.requests] == ["HEAD", "GET"]


def test_get_fallback_on_canned_bytes() -> None:
    body = b'{"schemaVersion": 2,  "odd": "spacing is part of the digest"}\n'
    with ScriptedServer(scripted([(200, {}, body)])) as server:
        ref = ImageRef.parse(f"{server.address}/team/app:v1")

        digest = client_for(server.address).resolve_digest(ref)

    assert digest == "sha256:" + hashlib.sha256(body).hexdigest()


def test_digests_are_cached_per_tag(images: ImagePusher) -> None:
    pushed = images.push("app", "v1")
    with ScriptedServer(lambda r: forward(images.registry.address, r)) as server:
        client = client_for(server.address)
        ref = ImageRef.parse(f"{server.address}/{images.prefix}/app:v1")

        assert client.resolve_digest(ref) == pushed
        assert client.resolve_digest(ref) == pushed

    assert len(server.requests) == 1
