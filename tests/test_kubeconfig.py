"""Our kubeconfig reader and transport: contexts, TLS, tokens, exec plugins, errors.

Real parts throughout: the emulator over HTTPS with a throwaway CA, real exec
plugin scripts run as processes, a TLS server that demands a client
certificate, and the official client as an independent reference reading the
same kubeconfig.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import ssl
import stat
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.lib import kube, kube_access
from steps.lib.errors import ExternalError, UsageError
from steps.lib.kube import KubeApi
from steps.lib.kube_access import Access, connect
from steps.lib.kubeconfig import (
    ExecConfig,
    ExecCredentials,
    load_client_config,
    parse_exec_credential,
)
from steps.lib.kubehttp import Transport
from steps.lib.output import redact
from steps.sandbox.kube import KubeEmulator, Timings

# --------------------------------------------------------------------------- helpers


def kubeconfig(
    path: Path,
    *,
    clusters: dict[str, dict[str, Any]],
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]],
    current: str | None = None,
) -> Path:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
        "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
    }
    if current:
        document["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def tls_kube() -> Iterator[KubeEmulator]:
    """The emulator over HTTPS (its own CA) that wants a bearer token."""
    with KubeEmulator(timings=Timings.fast(), tls=True, token="emulator-token") as emulator:
        yield emulator


def namespaces(api: KubeApi) -> list[str]:
    listing = api.request("GET", "/api/v1/namespaces")
    return sorted(item["metadata"]["name"] for item in listing["items"])


@dataclass
class Pki:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, as PEM."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_pki() -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def builder(subject: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("test-ca"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("test-ca", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder("server", server_key)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("kube.test")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        builder("system:admin", client_key)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca.public_bytes(pem).decode(),
        server.public_bytes(pem).decode(),
        pem_key(server_key),
        client.public_bytes(pem).decode(),
        pem_key(client_key),
    )


class RecordingServer:
    """An API server stand-in: answers GET /api/v1/namespaces, records what it was sent.

    ``accept`` says which Authorization headers get 200 (others get 401); with
    ``pki`` it serves TLS and demands a client certificate signed by the CA.
    ``/redirect`` answers 302 to ``redirect_to``.
    """

    def __init__(
        self,
        tmp: Path,
        accept: Callable[[str | None], bool] = lambda header: True,
        pki: Pki | None = None,
    ) -> None:
        self.headers: list[str | None] = []
        self.peers: list[str] = []
        self.paths: list[str] = []
        self.redirect_to = ""
        self.hang_up = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                header = self.headers.get("Authorization")
                outer.headers.append(header)
                outer.paths.append(self.path)
                peer = getattr(self.connection, "getpeercert", lambda: None)()
                if peer:
                    subject = dict(x[0] for x in peer["subject"])
                    outer.peers.append(str(subject.get("commonName")))
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ok = accept(header)
                body = json.dumps(
                    {"kind": "NamespaceList", "items": [{"metadata": {"name": "default"}}]}
                    if ok
                    else {"kind": "Status", "code": 401, "message": "Unauthorized"}
                ).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                # Hang up without saying so (no "Connection: close"), as a server
                # closing idle keep-alive connections does.
                self.close_connection = outer.hang_up

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if pki is not None:
            for name, text in (("ca.pem", pki.ca), ("s.crt", pki.server_cert),
                               ("s.key", pki.server_key)):  # fmt: skip
                (tmp / name).write_text(text)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tmp / "s.crt"), str(tmp / "s.key"))
            context.load_verify_locations(str(tmp / "ca.pem"))
            context.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if pki is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def plugin(directory: Path, body: str) -> Path:
    """An executable exec credential plugin: a Python script run as its own process."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "plugin"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


TOKEN_PLUGIN = """
    import json, os, sys, time, datetime
    log = os.environ["PLUGIN_LOG"]
    runs = sum(1 for _ in open(log)) if os.path.exists(log) else 0
    with open(log, "a") as out:
        out.write(json.dumps({"args": sys.argv[1:], "info": os.environ.get("KUBERNETES_EXEC_INFO"),
                              "extra": os.environ.get("EXTRA")}) + "\\n")
    lifetime = float(os.environ.get("LIFETIME", "3600"))
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
    print(json.dumps({
        "apiVersion": os.environ.get("ANSWER_VERSION", "client.authentication.k8s.io/v1"),
        "kind": "ExecCredential",
        "status": {"token": f"exec-token-{runs + 1}",
                   "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }))
"""


def exec_user(command: Path | str, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(command),
            "args": ["--cluster", "prod"],
            "env": [{"name": "EXTRA", "value": "from-kubeconfig"}],
            "interactiveMode": "Never",
            "provideClusterInfo": True,
            **extra,
        }
    }


# --------------------------------------------------------------------------- contexts


def test_contexts_namespace_and_merged_files(tmp_path: Path) -> None:
    first = kubeconfig(
        tmp_path / "a" / "config",
        clusters={"c1": {"server": "https://one.example:6443/"}},
        users={"u": {"token": "first-token"}},
        contexts={"prod": {"cluster": "c1", "user": "u", "namespace": "shop"}},
        current="prod",
    )
    second = kubeconfig(
        tmp_path / "b" / "config",
        clusters={"c1": {"server": "https://ignored"}, "c2": {"server": "http://two:8080"}},
        users={"u": {"token": "ignored"}, "v": {"username": "ann", "password": "pw"}},
        contexts={"dev": {"cluster": "c2", "user": "v"}},
        current="dev",
    )
    env = {"KUBECONFIG": os.pathsep.join([str(first), str(tmp_path / "absent"), str(second)])}
    current = load_client_config(None, None, env)
    # The first file's current-context and entries win, as in kubectl.
    assert (current.server, current.namespace, current.token) == (
        "https://one.example:6443",
        "shop",
        "first-token",
    )
    dev = load_client_config(None, "dev", env)
    assert (dev.server, dev.namespace, dev.username, dev.password) == (
        "http://two:8080",
        "default",
        "ann",
        "pw",
    )
    assert "context dev user v" in dev.where
    explicit = load_client_config(str(second), None, env)  # --kubeconfig wins over $KUBECONFIG
    assert explicit.server == "http://two:8080"


@pytest.mark.parametrize(
    ("document", "context", "message"),
    [
        ({"contexts": []}, None, "no current-context; pass --context NAME"),
        ({"contexts": [{"name": "a", "context": {}}]}, "b", "--context b: no such context"),
        ({"current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "x"}}]},
         None, "context a: cluster 'x' is not defined"),
        ({"current-context": "a", "clusters": [{"name": "x", "cluster": {}}],
          "contexts": [{"name": "a", "context": {"cluster": "x"}}]},
         None, "cluster x has no server"),
        ({"current-context": "a", "clusters": [{"name": "x", "cluster": {"server": "https://s"}}],
          "contexts": [{"name": "a", "context": {"cluster": "x", "user": "nobody"}}]},
         None, "user 'nobody' is not defined"),
        ({"current-context": "a",
          "clusters": [{"name": "x", "cluster": {"server": "https://s",
                                                 "certificate-authority-data": "%%%"}}],
          "contexts": [{"name": "a", "context": {"cluster": "x"}}]},
         None, "cluster x: certificate-authority-data is not base64"),
        ({"current-context": "a",
          "clusters": [{"name": "x", "cluster": {"server": "https://s",
                                                 "certificate-authority": "missing.pem"}}],
          "contexts": [{"name": "a", "context": {"cluster": "x"}}]},
         None, "certificate-authority .*missing.pem: cannot read"),
        ({"current-context": "a", "clusters": [{"name": "x", "cluster": {"server": "https://s"}}],
          "users": [{"name": "u", "user": {"token": "t", "username": "a", "password": "b"}}],
          "contexts": [{"name": "a", "context": {"cluster": "x", "user": "u"}}]},
         None, "user u: a token and a username/password exclude each other"),
        ({"current-context": "a", "clusters": [{"name": "x", "cluster": {"server": "https://s"}}],
          "users": [{"name": "u", "user": {"auth-provider": {"name": "gcp"}}}],
          "contexts": [{"name": "a", "context": {"cluster": "x", "user": "u"}}]},
         None, "auth-provider gcp was removed .* gke-gcloud-auth-plugin"),
        ({"current-context": "a", "clusters": [{"name": "x", "cluster": {"server": "https://s"}}],
          "users": [{"name": "u", "user": {"exec": {"command": "p",
                     "apiVersion": "client.authentication.k8s.io/v1alpha1"}}}],
          "contexts": [{"name": "a", "context": {"cluster": "x", "user": "u"}}]},
         None, "exec apiVersion 'client.authentication.k8s.io/v1alpha1' is not supported"),
        ({"current-context": "a", "clusters": [{"name": "x", "cluster": {"server": "https://s"}}],
          "users": [{"name": "u", "user": {"exec": {"command": "p",
                     "apiVersion": "client.authentication.k8s.io/v1"}}}],
          "contexts": [{"name": "a", "context": {"cluster": "x", "user": "u"}}]},
         None, "exec needs interactiveMode with client.authentication.k8s.io/v1"),
        ([1, 2], None, "not a kubeconfig"),
    ],
)  # fmt: skip
def test_bad_kubeconfigs_name_the_file_and_the_entry(
    tmp_path: Path, document: Any, context: str | None, message: str
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(UsageError, match=message) as caught:
        load_client_config(str(path), context)
    assert str(path) in caught.value.message


def test_bad_kubeconfig_is_exit_2_in_the_stage(tmp_path: Path, capsys: Any) -> None:
    from steps import verify_rollout

    (tmp_path / "m.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "config").write_text("clusters: [\n")
    argv = ["--manifests", str(tmp_path / "m.yaml"), "--kubeconfig", str(tmp_path / "config")]
    assert verify_rollout.main(argv) == 2
    err = capsys.readouterr().err
    assert f"kubeconfig {tmp_path / 'config'}: not valid YAML" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- TLS


def test_ca_data_ca_file_and_a_wrong_ca(tls_kube: KubeEmulator, tmp_path: Path) -> None:
    assert tls_kube.ca_pem is not None
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text(tls_kube.ca_pem)
    config = kubeconfig(
        tmp_path / "config",
        clusters={
            "data": {"server": tls_kube.url, "certificate-authority-data": b64(tls_kube.ca_pem)},
            # A relative path is relative to the kubeconfig file, not to the cwd.
            "file": {"server": tls_kube.url, "certificate-authority": "certs/ca.pem"},
            "wrong": {"server": tls_kube.url, "certificate-authority-data": b64(make_pki().ca)},
            "insecure": {"server": tls_kube.url, "insecure-skip-tls-verify": True},
        },
        users={"u": {"token": "kubeconfig-token"}},
        contexts={name: {"cluster": name, "user": "u", "namespace": "kube-system"}
                  for name in ("data", "file", "wrong", "insecure")},
        current="data",
    )  # fmt: skip
    for context in ("data", "file", "insecure"):
        api = connect(Access(kubeconfig=str(config), context=context))
        assert api.default_namespace == "kube-system"
        assert "kube-system" in namespaces(api)
    assert tls_kube.tokens_seen == ["kubeconfig-token"]
    wrong = load_client_config(str(config), "wrong")
    api = KubeApi(Transport.from_config(wrong), attempts=1)
    with pytest.raises(ExternalError, match="CERTIFICATE_VERIFY_FAILED"):
        namespaces(api)


@pytest.mark.parametrize("key_files", ["memfd", "memfd-refused", "no-memfd"])
def test_client_certificate_data_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_files: str
) -> None:
    """ssl loads a certificate and key only from files: in memory where Linux
    allows it (the key never on disk), else a temporary directory."""
    import tempfile

    made: list[str] = []
    real_temporary_directory = tempfile.TemporaryDirectory

    def spied(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("prefix", ""))
        return real_temporary_directory(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spied)
    if key_files == "no-memfd":
        monkeypatch.delattr(os, "memfd_create", raising=False)
    elif key_files == "memfd-refused":

        def refused(name: str, flags: int = 0) -> int:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "memfd_create", refused)
    pki = make_pki()
    server = RecordingServer(tmp_path, pki=pki)
    try:
        (tmp_path / "client.crt").write_text(pki.client_cert)
        (tmp_path / "client.key").write_text(pki.client_key)
        config = kubeconfig(
            tmp_path / "config",
            clusters={"c": {"server": server.url, "certificate-authority-data": b64(pki.ca)},
                      "by-name": {"server": server.url.replace("127.0.0.1", "localhost"),
                                  "certificate-authority-data": b64(pki.ca),
                                  "tls-server-name": "kube.test"}},
            users={
                "data": {"client-certificate-data": b64(pki.client_cert),
                         "client-key-data": b64(pki.client_key)},
                "files": {"client-certificate": "client.crt", "client-key": "client.key"},
                "none": {},
            },
            contexts={"data": {"cluster": "c", "user": "data"},
                      "files": {"cluster": "c", "user": "files"},
                      "named": {"cluster": "by-name", "user": "files"},
                      "none": {"cluster": "c", "user": "none"}},
            current="data",
        )  # fmt: skip
        for context in ("data", "files", "named"):
            assert namespaces(connect(Access(kubeconfig=str(config), context=context)))
        assert server.peers == ["system:admin"] * 3
        # Without a client certificate the server refuses the handshake.
        bare = KubeApi(Transport.from_config(load_client_config(str(config), "none")), attempts=1)
        with pytest.raises(ExternalError):
            namespaces(bare)
        # The key never shows up in what we print.
        assert "PRIVATE KEY" not in redact(pki.client_key)
        if key_files == "memfd" and hasattr(os, "memfd_create"):
            assert made == []
        else:
            assert "gitops-tls-" in made
    finally:
        server.close()


# --------------------------------------------------------------------------- tokens


def test_token_file_is_reread_after_a_401(tmp_path: Path) -> None:
    valid = {"Bearer rotated-token-2b"}
    server = RecordingServer(tmp_path, accept=lambda header: header in valid)
    try:
        # Tokens become registered secrets, masked in all later output of this
        # process: never a common word (a token "second" would mask "seconds").
        (tmp_path / "token").write_text("mounted-token-1a\n")
        config = kubeconfig(
            tmp_path / "config",
            clusters={"c": {"server": server.url}},
            users={"u": {"tokenFile": "token", "token": "ignored-when-a-file-is-given"}},
            contexts={"a": {"cluster": "c", "user": "u"}},
            current="a",
        )
        api = connect(Access(kubeconfig=str(config)))
        (tmp_path / "token").write_text("rotated-token-2b\n")  # rotated, as projected tokens are
        assert namespaces(api) == ["default"]
        assert server.headers == ["Bearer mounted-token-1a", "Bearer rotated-token-2b"]
    finally:
        server.close()


def test_redirects_are_not_followed_and_carry_no_token(tmp_path: Path) -> None:
    elsewhere = RecordingServer(tmp_path)
    server = RecordingServer(tmp_path)
    server.redirect_to = elsewhere.url + "/api/v1/namespaces"
    try:
        transport = Transport(server.url, kube_static("secret-token"))
        api = KubeApi(transport, attempts=1)
        with pytest.raises(kube.ApiError) as caught:
            api.request("GET", "/redirect")
        assert caught.value.status == 302
        assert elsewhere.headers == []
    finally:
        server.close()
        elsewhere.close()


def test_connections_are_kept_alive_and_replaced_when_the_server_hung_up(tmp_path: Path) -> None:
    server = RecordingServer(tmp_path)
    try:
        transport = Transport(server.url, kube_static("keep-alive-token"))
        api = KubeApi(transport, attempts=1)  # no retry: a stale connection must not fail
        namespaces(api)
        namespaces(api)
        assert len(transport._idle) == 1  # one connection, reused
        server.hang_up = True
        namespaces(api)  # served, then the server closes the connection silently
        time.sleep(0.1)
        namespaces(api)  # the dead idle connection is noticed and replaced
        assert server.headers == ["Bearer keep-alive-token"] * 4
    finally:
        server.close()


def kube_static(token: str) -> Any:
    from steps.lib.kubehttp import StaticToken

    return StaticToken(token)


# --------------------------------------------------------------------------- exec plugins


def test_exec_plugin_token_is_cached_and_sent(tls_kube: KubeEmulator, tmp_path: Path) -> None:
    assert tls_kube.ca_pem is not None
    log = tmp_path / "plugin.log"
    script = plugin(tmp_path / "bin", TOKEN_PLUGIN)
    config = kubeconfig(
        tmp_path / "config",
        clusters={
            "c": {"server": tls_kube.url, "certificate-authority-data": b64(tls_kube.ca_pem)}
        },
        # A command with a slash is relative to the kubeconfig, as kubectl has it.
        users={"u": exec_user("bin/plugin")},
        contexts={"a": {"cluster": "c", "user": "u"}},
        current="a",
    )
    os.environ["PLUGIN_LOG"] = str(log)
    try:
        api = connect(Access(kubeconfig=str(config)))
        for _ in range(3):
            namespaces(api)
    finally:
        del os.environ["PLUGIN_LOG"]
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 1  # cached until it expires
    assert tls_kube.tokens_seen == ["exec-token-1"]
    assert runs[0]["args"] == ["--cluster", "prod"] and runs[0]["extra"] == "from-kubeconfig"
    info = json.loads(runs[0]["info"])
    assert info["apiVersion"] == "client.authentication.k8s.io/v1"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == tls_kube.url
    assert base64.b64decode(info["spec"]["cluster"]["certificate-authority-data"]).decode() == (
        tls_kube.ca_pem
    )
    assert script.exists()


def test_exec_plugin_refreshes_when_expired_and_after_a_401(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "plugin.log"
    plugin(tmp_path / "bin", TOKEN_PLUGIN)
    monkeypatch.setenv("PLUGIN_LOG", str(log))
    clock = [1000.0]
    config = ExecConfig(
        command=str(tmp_path / "bin" / "plugin"),
        api_version="client.authentication.k8s.io/v1beta1",
        env=(("ANSWER_VERSION", "client.authentication.k8s.io/v1beta1"), ("LIFETIME", "60")),
    )
    credentials = ExecCredentials(
        config, server="https://s", ca_pem=None, insecure=False, where="w", clock=lambda: clock[0]
    )
    first = credentials.current()
    assert first.token == "exec-token-1" and first.expires is not None
    clock[0] = first.expires - 1
    assert credentials.current().token == "exec-token-1"
    clock[0] = first.expires
    assert credentials.current().token == "exec-token-2"
    assert credentials.runs == 2

    # A 401 makes the transport ask the plugin again, once.
    valid = {"Bearer exec-token-2"}
    server = RecordingServer(tmp_path, accept=lambda header: header in valid)
    try:
        monkeypatch.setenv("LIFETIME", "3600")
        user = exec_user(tmp_path / "bin" / "plugin")
        path = kubeconfig(
            tmp_path / "config",
            clusters={"c": {"server": server.url}},
            users={"u": user},
            contexts={"a": {"cluster": "c", "user": "u"}},
            current="a",
        )
        log.unlink()
        api = connect(Access(kubeconfig=str(path)))
        assert namespaces(api) == ["default"]
        assert server.headers == ["Bearer exec-token-1", "Bearer exec-token-2"]
        valid.clear()  # now nothing is accepted: one retry, then the 401 is the answer
        with pytest.raises(kube.ApiError) as caught:
            namespaces(api)
        assert caught.value.status == 401
        assert server.headers[2:] == ["Bearer exec-token-2", "Bearer exec-token-3"]
    finally:
        server.close()


@pytest.mark.parametrize(
    ("body", "extra", "message"),
    [
        ("import sys; print('boom: no credentials', file=sys.stderr); sys.exit(3)", {},
         "exit 3: boom: no credentials"),
        ("print('not json')", {}, "did not print an ExecCredential"),
        ("import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',"
         " 'kind': 'ExecCredential', 'status': {'token': 't'}}))", {},
         "printed apiVersion 'client.authentication.k8s.io/v1beta1', expected .*/v1"),
        ("print('{}')", {"interactiveMode": "Always"}, "needs an interactive terminal"),
    ],
)  # fmt: skip
def test_exec_plugin_failures_are_usage_errors(
    tmp_path: Path, body: str, extra: dict[str, Any], message: str
) -> None:
    script = plugin(tmp_path / "bin", body)
    config = kubeconfig(
        tmp_path / "config",
        clusters={"c": {"server": "http://127.0.0.1:9"}},
        users={"gke": exec_user(script, **extra)},
        contexts={"a": {"cluster": "c", "user": "gke"}},
        current="a",
    )
    api = connect(Access(kubeconfig=str(config)))
    with pytest.raises(UsageError, match=message) as caught:
        namespaces(api)
    assert f"kubeconfig {config} context a user gke: exec plugin" in caught.value.message


def test_missing_exec_plugin_shows_the_install_hint(tmp_path: Path) -> None:
    config = kubeconfig(
        tmp_path / "config",
        clusters={"c": {"server": "http://127.0.0.1:9"}},
        users={"gke": exec_user("gke-gcloud-auth-plugin-absent", installHint="Install it: x")},
        contexts={"a": {"cluster": "c", "user": "gke"}},
        current="a",
    )
    api = connect(Access(kubeconfig=str(config)))
    with pytest.raises(UsageError, match=r"not found on PATH \(Install it: x\)"):
        namespaces(api)


def test_exec_credential_parsing() -> None:
    v1 = "client.authentication.k8s.io/v1"
    found = parse_exec_credential(
        json.dumps(
            {
                "apiVersion": v1,
                "kind": "ExecCredential",
                "status": {"token": "tok-secret", "expirationTimestamp": "2030-01-02T03:04:05Z"},
            }
        ),
        v1,
        "w",
    )
    assert found.token == "tok-secret"
    assert found.expires == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()
    assert "tok-secret" not in redact("sent tok-secret")
    with pytest.raises(UsageError, match="neither a token nor a client certificate"):
        parse_exec_credential(json.dumps({"apiVersion": v1, "kind": "ExecCredential",
                                          "status": {}}), v1, "w")  # fmt: skip
    soon = {"token": "t", "expirationTimestamp": "soon"}
    with pytest.raises(UsageError, match="expirationTimestamp 'soon' is not a time"):
        parse_exec_credential(
            json.dumps({"apiVersion": v1, "kind": "ExecCredential", "status": soon}), v1, "w"
        )


# --------------------------------------------------------------------------- in-cluster


def test_in_cluster_service_account(
    tls_kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_kube.ca_pem is not None
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text(tls_kube.ca_pem)
    (account / "namespace").write_text("team-a\n")
    monkeypatch.setattr(kube_access, "SERVICE_ACCOUNT_NAMESPACE", account / "namespace")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(tls_kube.port))
    api = connect(Access(in_cluster=True))
    assert api.default_namespace == "team-a"
    assert "default" in namespaces(api)
    assert tls_kube.tokens_seen == ["pod-token"]
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT")
    with pytest.raises(UsageError, match="--in-cluster: KUBERNETES_SERVICE_HOST and"):
        connect(Access(in_cluster=True))


# --------------------------------------------------------------------------- the reference


def test_official_client_reads_the_same_kubeconfig_the_same_way(
    tls_kube: KubeEmulator, tmp_path: Path
) -> None:
    """The official client, as an independent reader, agrees with ours on one kubeconfig."""
    from kubernetes import client, config

    assert tls_kube.ca_pem is not None
    path = kubeconfig(
        tmp_path / "config",
        clusters={
            "c": {"server": tls_kube.url, "certificate-authority-data": b64(tls_kube.ca_pem)}
        },
        users={"u": {"token": "shared-token"}},
        contexts={"x": {"cluster": "c", "user": "u", "namespace": "kube-public"}},
        current="x",
    )
    theirs_config = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=theirs_config)
    _, active = config.list_kube_config_contexts(str(path))
    with client.ApiClient(theirs_config) as theirs:
        listed = client.CoreV1Api(theirs).list_namespace()
        their_names = sorted(ns.metadata.name for ns in listed.items)
    ours = connect(Access(kubeconfig=str(path)))
    assert ours.host == theirs_config.host
    assert ours.default_namespace == active["context"]["namespace"] == "kube-public"
    assert namespaces(ours) == their_names
    assert tls_kube.tokens_seen == ["shared-token"]


def test_a_rollout_never_imports_the_kubernetes_package(tmp_path: Path) -> None:
    """The product path: a whole verify-rollout and promote --require-live, in a child."""
    import subprocess

    with KubeEmulator(timings=Timings.fast()) as emulator:
        manifest = tmp_path / "cm.yaml"
        manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
        code = (
            "import sys\n"
            "from steps import verify_rollout\n"
            f"code = verify_rollout.main(['--manifests', {str(manifest)!r}, "
            f"'--kubeconfig', {str(emulator.kubeconfig)!r}])\n"
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'kubernetes', "
            "'requests'}))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    assert proc.stdout.split("\n")[0] == "0 []", proc.stderr


class ForwardProxy:
    """An HTTP proxy for http:// targets (absolute-form requests), recording what it forwards."""

    def __init__(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        self.forwarded: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.forwarded.append(self.path)
                target = urlsplit(self.path)
                upstream = http.client.HTTPConnection(target.netloc, timeout=5)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
                upstream.request("GET", target.path, headers=headers)
                answer = upstream.getresponse()
                body = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type") or "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                upstream.close()

            def do_CONNECT(self) -> None:
                import socket

                outer.forwarded.append(f"CONNECT {self.path}")
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=5)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                client = self.connection

                def pump(source: socket.socket, sink: socket.socket) -> None:
                    try:
                        while data := source.recv(65536):
                            sink.sendall(data)
                    except OSError:
                        pass
                    finally:
                        for end in (source, sink):
                            with contextlib.suppress(OSError):
                                end.shutdown(socket.SHUT_RDWR)

                back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
                back.start()
                pump(client, upstream)
                back.join(5)
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_through_a_proxy_tunnel(
    tls_kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY: a CONNECT tunnel, TLS to the API server inside it, verified with the CA."""
    assert tls_kube.ca_pem is not None
    proxy = ForwardProxy()
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    try:
        path = kubeconfig(
            tmp_path / "config",
            clusters={"c": {"server": tls_kube.url,
                            "certificate-authority-data": b64(tls_kube.ca_pem)}},
            users={"u": {"token": "tunnelled-token"}},
            contexts={"c": {"cluster": "c", "user": "u"}},
            current="c",
        )  # fmt: skip
        api = connect(Access(kubeconfig=str(path)))
        assert "default" in namespaces(api)
        assert "default" in namespaces(api)  # the same tunnel, kept alive
        assert proxy.forwarded == [f"CONNECT 127.0.0.1:{tls_kube.port}"]
        assert tls_kube.tokens_seen == ["tunnelled-token"]
    finally:
        proxy.close()


def test_proxies_from_the_kubeconfig_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RecordingServer(tmp_path)
    proxy = ForwardProxy()
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        path = kubeconfig(
            tmp_path / "config",
            clusters={"direct": {"server": server.url},
                      "proxied": {"server": server.url, "proxy-url": proxy.url}},
            users={"u": {"token": "through-the-proxy"}},
            contexts={"direct": {"cluster": "direct", "user": "u"},
                      "proxied": {"cluster": "proxied", "user": "u"}},
            current="direct",
        )  # fmt: skip
        assert namespaces(connect(Access(kubeconfig=str(path), context="proxied")))
        assert proxy.forwarded == [f"{server.url}/api/v1/namespaces"]
        assert namespaces(connect(Access(kubeconfig=str(path))))
        assert len(proxy.forwarded) == 1  # no proxy named, none in the environment
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert namespaces(connect(Access(kubeconfig=str(path))))
        assert len(proxy.forwarded) == 2
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert namespaces(connect(Access(kubeconfig=str(path))))
        assert len(proxy.forwarded) == 2
        assert server.headers == ["Bearer through-the-proxy"] * 4
        bad = kubeconfig(
            tmp_path / "bad",
            clusters={"c": {"server": server.url, "proxy-url": "socks5://127.0.0.1:1080"}},
            contexts={"c": {"cluster": "c"}},
            current="c",
        )
        with pytest.raises(UsageError, match=r"proxy-url 'socks5:.*': only http:// proxies"):
            connect(Access(kubeconfig=str(bad)))
    finally:
        proxy.close()
        server.close()


def test_config_records_never_show_a_credential_in_their_repr() -> None:
    """A record printed in a traceback or a debug line must not carry the secret."""
    from steps.lib.kubeconfig import ClientConfig, ExecResult

    config = ClientConfig(
        "https://127.0.0.1:6443",
        token="tok-e9f1",
        password="pw-71c2",
        client_key_pem="-----BEGIN PRIVATE KEY-----\nk3y\n",
        where="kubeconfig f context c user u",
    )
    result = ExecResult(
        "tok-e9f1", 12.0, "-----BEGIN CERTIFICATE-----\n", "-----BEGIN PRIVATE KEY-----\nk3y\n"
    )
    for text in (repr(config), str(config), repr(result), repr([config, result])):
        for secret in ("tok-e9f1", "pw-71c2", "k3y", "PRIVATE KEY"):
            assert secret not in text, text
    assert "127.0.0.1:6443" in repr(config) and "user u" in repr(config)
