"""Reading a kubeconfig into what a client needs: server, TLS and credentials.

Why our own: the official ``kubernetes`` package costs 0.4-1 s to import and
about 125 MB in an image, and the stages use it only to read this file and to
send HTTP requests. This module is the reading half (pure, given the files);
``steps.lib.kubehttp`` sends the requests, and ``ExecCredentials`` runs exec
credential plugins such as ``gke-gcloud-auth-plugin``.

What is understood, as kubectl does:

- several files in ``KUBECONFIG`` (``os.pathsep``-separated) merged, the
  first file to name a cluster, user or context winning, as does the first
  ``current-context``; missing files in that list are skipped;
- ``--context`` or ``current-context``; the context's ``namespace``;
- cluster ``server``, ``certificate-authority`` / ``-data``,
  ``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url``;
- user ``client-certificate`` / ``-data``, ``client-key`` / ``-data``,
  ``token``, ``tokenFile``, ``username`` / ``password``, ``exec``
  (``client.authentication.k8s.io/v1`` and ``v1beta1``), and ``auth-provider``
  ``oidc`` with an ``id-token`` (sent as is, never refreshed);
- relative file paths (and an exec ``command`` containing a ``/``) are
  relative to the kubeconfig file that names them.

Every error is a ``UsageError`` naming the file, the context and the entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from steps.lib.errors import ExternalError, UsageError
from steps.lib.output import register_secret
from steps.lib.timefmt import parse_rfc3339

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
EXEC_TIMEOUT = 60.0
"""Seconds an exec credential plugin may run (gke-gcloud-auth-plugin takes about one)."""
DEFAULT_KUBECONFIG = "~/.kube/config"


class ExecConfig(NamedTuple):
    """A user's ``exec`` credential plugin, its paths resolved."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_API_VERSIONS[0]
    interactive_mode: str = "IfAvailable"
    install_hint: str | None = None
    provide_cluster_info: bool = False


class ClientConfig(NamedTuple):
    """Everything needed to talk to one cluster as one user."""

    server: str
    namespace: str = "default"
    ca_pem: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: str | None = None
    token: str | None = None
    token_file: Path | None = None
    username: str | None = None
    password: str | None = None
    exec: ExecConfig | None = None
    where: str = ""
    """Which file, context and user this came from, for error messages."""

    def __repr__(self) -> str:
        """Where it came from and the server; never a credential."""
        return f"ClientConfig({self.where or 'no origin'}: {self.server})"


# --------------------------------------------------------------------------- files


def kubeconfig_paths(explicit: str | None, environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The files to read: ``--kubeconfig``, else ``$KUBECONFIG``'s list, else ~/.kube/config."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"--kubeconfig {explicit}: no such file")
        return [path]
    listed = [p for p in (environ.get("KUBECONFIG") or "").split(os.pathsep) if p]
    if listed:
        found = [Path(p).expanduser() for p in listed if Path(p).expanduser().is_file()]
        if not found:
            raise UsageError(f"KUBECONFIG={environ['KUBECONFIG']}: no such file")
        return found
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    if not default.is_file():
        raise UsageError(
            f"no kubeconfig: {DEFAULT_KUBECONFIG} does not exist "
            "(pass --kubeconfig, --cluster or --in-cluster)"
        )
    return [default]


class _Named(NamedTuple):
    """One cluster, user or context entry, and the file it came from."""

    body: dict[str, Any]
    origin: Path


class Merged:
    """The kubeconfig files merged as kubectl merges them (first one wins)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.clusters: dict[str, _Named] = {}
        self.users: dict[str, _Named] = {}
        self.contexts: dict[str, _Named] = {}
        self.current_context: str | None = None

    @property
    def label(self) -> str:
        return os.pathsep.join(str(p) for p in self.files)


def read_kubeconfigs(paths: Sequence[Path]) -> Merged:
    import yaml

    merged = Merged(list(paths))
    for path in paths:
        try:
            document = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_loader())
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"kubeconfig {path}: cannot read: {exc}") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"kubeconfig {path}: not valid YAML: {exc}") from None
        merge_document(merged, path, document)
    return merged


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def merge_document(merged: Merged, path: Path, document: Any) -> None:
    """Add one file's entries to ``merged`` (pure)."""
    if document is None:
        return
    if not isinstance(document, dict):
        raise UsageError(f"kubeconfig {path}: not a kubeconfig (a mapping)")
    for section, key, target in (
        ("clusters", "cluster", merged.clusters),
        ("users", "user", merged.users),
        ("contexts", "context", merged.contexts),
    ):
        entries = document.get(section) or []
        if not isinstance(entries, list):
            raise UsageError(f"kubeconfig {path}: {section} is not a list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise UsageError(f"kubeconfig {path}: {section}[{index}] has no name")
            body = entry.get(key) or {}
            if not isinstance(body, dict):
                raise UsageError(f"kubeconfig {path}: {key} {entry['name']}: not a mapping")
            target.setdefault(entry["name"], _Named(body, path))
    current = document.get("current-context")
    if merged.current_context is None and isinstance(current, str) and current:
        merged.current_context = current


# --------------------------------------------------------------------------- resolving


def load_client_config(
    explicit: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ClientConfig:
    """The cluster, user and namespace of ``context`` (or the current one)."""
    merged = read_kubeconfigs(kubeconfig_paths(explicit, environ))
    return resolve(merged, context)


def resolve(merged: Merged, context: str | None) -> ClientConfig:
    """Pick the context and turn its cluster and user into a ``ClientConfig``."""
    label = f"kubeconfig {merged.label}"
    name = context or merged.current_context
    if not name:
        raise UsageError(f"{label}: no current-context; pass --context NAME")
    chosen = merged.contexts.get(name)
    if chosen is None:
        known = ", ".join(sorted(merged.contexts)) or "none"
        flag = "--context" if context else "current-context"
        raise UsageError(f"{label}: {flag} {name}: no such context (contexts: {known})")
    where = f"kubeconfig {chosen.origin} context {name}"
    cluster_name = chosen.body.get("cluster")
    cluster = merged.clusters.get(str(cluster_name)) if cluster_name else None
    if cluster is None:
        raise UsageError(f"{where}: cluster {cluster_name!r} is not defined")
    server = cluster.body.get("server")
    if not isinstance(server, str) or not server.strip():
        raise UsageError(f"{where}: cluster {cluster_name} has no server")
    user_name = chosen.body.get("user")
    user = merged.users.get(str(user_name)) if user_name else None
    if user_name and user is None:
        raise UsageError(f"{where}: user {user_name!r} is not defined")
    user_where = f"{where} user {user_name}"
    tls = _cluster_tls(cluster, f"{where} cluster {cluster_name}")
    credentials = _user_credentials(user, user_where) if user is not None else {}
    namespace = chosen.body.get("namespace")
    return ClientConfig(
        server=server.strip().rstrip("/"),
        namespace=str(namespace) if namespace else "default",
        where=user_where if user is not None else where,
        **tls,
        **credentials,
    )


def _cluster_tls(cluster: _Named, where: str) -> dict[str, Any]:
    body = cluster.body
    ca_pem = _pem(body, "certificate-authority", cluster.origin, where)
    insecure = body.get("insecure-skip-tls-verify") is True
    if insecure and ca_pem:
        # kubectl refuses this combination too.
        raise UsageError(
            f"{where}: certificate-authority and insecure-skip-tls-verify exclude each other"
        )
    proxy = body.get("proxy-url")
    if proxy is not None and not (isinstance(proxy, str) and proxy.startswith("http://")):
        raise UsageError(f"{where}: proxy-url {proxy!r}: only http:// proxies are supported")
    server_name = body.get("tls-server-name")
    return {
        "ca_pem": ca_pem,
        "insecure": insecure,
        "tls_server_name": str(server_name) if server_name else None,
        "proxy_url": proxy,
    }


def _user_credentials(user: _Named, where: str) -> dict[str, Any]:
    body = user.body
    cert = _pem(body, "client-certificate", user.origin, where)
    key = _pem(body, "client-key", user.origin, where)
    if bool(cert) != bool(key):
        raise UsageError(f"{where}: client-certificate and client-key go together")
    if key:
        register_secret(key)
    token = body.get("token")
    token_file = body.get("tokenFile")
    username, password = body.get("username"), body.get("password")
    provider = body.get("auth-provider")
    if provider is not None:
        token = _auth_provider_token(provider, where) if token is None else token
    if (token or token_file) and (username or password):
        raise UsageError(f"{where}: a token and a username/password exclude each other")
    if token is not None:
        token = str(token)
        register_secret(token)
    if password is not None:
        register_secret(str(password))
    exec_config = _exec_config(body["exec"], user.origin, where) if body.get("exec") else None
    return {
        "client_cert_pem": cert,
        "client_key_pem": key,
        "token": token,
        "token_file": _path(token_file, user.origin) if token_file else None,
        "username": str(username) if username is not None else None,
        "password": str(password) if password is not None else None,
        "exec": exec_config,
    }


def _auth_provider_token(provider: Any, where: str) -> str:
    name = provider.get("name") if isinstance(provider, dict) else None
    config = (provider.get("config") or {}) if isinstance(provider, dict) else {}
    if name == "oidc" and isinstance(config, dict) and config.get("id-token"):
        return str(config["id-token"])
    if name == "gcp":
        raise UsageError(
            f"{where}: auth-provider gcp was removed from Kubernetes clients; install "
            "gke-gcloud-auth-plugin and run `gcloud container clusters get-credentials` again, "
            "or use --cluster"
        )
    raise UsageError(
        f"{where}: auth-provider {name}: not supported (use an exec credential plugin)"
    )


def _exec_config(body: Any, origin: Path, where: str) -> ExecConfig:
    if not isinstance(body, dict):
        raise UsageError(f"{where}: exec is not a mapping")
    command = body.get("command")
    if not isinstance(command, str) or not command:
        raise UsageError(f"{where}: exec has no command")
    api_version = body.get("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise UsageError(
            f"{where}: exec apiVersion {api_version!r} is not supported "
            f"(use {' or '.join(EXEC_API_VERSIONS)})"
        )
    mode = body.get("interactiveMode") or ("" if api_version.endswith("/v1") else "IfAvailable")
    if not mode:
        raise UsageError(f"{where}: exec needs interactiveMode with {api_version} (Never here)")
    if mode not in INTERACTIVE_MODES:
        raise UsageError(
            f"{where}: exec interactiveMode {mode!r}: "
            f"expected one of {', '.join(INTERACTIVE_MODES)}"
        )
    args = body.get("args") or []
    env = body.get("env") or []
    if not isinstance(args, list) or not isinstance(env, list):
        raise UsageError(f"{where}: exec args and env are lists")
    pairs = []
    for item in env:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise UsageError(f"{where}: exec env entries need a name and a value")
        pairs.append((item["name"], str(item.get("value", ""))))
    if "/" in command and not os.path.isabs(os.path.expanduser(command)):
        command = str(origin.parent / command)  # relative to the kubeconfig, as kubectl does
    hint = body.get("installHint")
    return ExecConfig(
        command=os.path.expanduser(command),
        args=tuple(str(a) for a in args),
        env=tuple(pairs),
        api_version=api_version,
        interactive_mode=mode,
        install_hint=str(hint).strip() if hint else None,
        provide_cluster_info=body.get("provideClusterInfo") is True,
    )


def _pem(body: Mapping[str, Any], key: str, origin: Path, where: str) -> str | None:
    """``key-data`` (base64) or the file ``key`` names, as PEM text; data wins, as in kubectl."""
    data = body.get(f"{key}-data")
    if data:
        try:
            text = base64.b64decode(str(data), validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise UsageError(f"{where}: {key}-data is not base64 of a PEM file") from None
        if "-----BEGIN" not in text:
            raise UsageError(f"{where}: {key}-data is not a PEM file")
        return text
    name = body.get(key)
    if not name:
        return None
    path = _path(name, origin)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: {key} {path}: cannot read: {exc.__class__.__name__}") from None
    if "-----BEGIN" not in text:
        raise UsageError(f"{where}: {key} {path}: not a PEM file")
    return text


def _path(value: Any, origin: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else origin.parent / path


# --------------------------------------------------------------------------- exec plugins


class ExecResult(NamedTuple):
    token: str | None
    expires: float | None
    client_cert_pem: str | None = None
    client_key_pem: str | None = None

    def __repr__(self) -> str:
        """What the plugin gave, never the credential itself."""
        given = [name for name in ("token", "client_cert_pem") if getattr(self, name)]
        return f"ExecResult({', '.join(given) or 'nothing'}; expires {self.expires})"


if TYPE_CHECKING:
    import subprocess

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class ExecCredentials:
    """Runs an exec credential plugin; caches what it returns until it expires.

    Thread-safe: watches in several threads may ask for a token at once, and
    the plugin runs once for all of them.
    """

    def __init__(
        self,
        config: ExecConfig,
        *,
        server: str,
        ca_pem: str | None,
        insecure: bool,
        where: str,
        clock: Callable[[], float] = time.time,
        runner: Runner | None = None,
    ) -> None:
        self.config = config
        self.server = server
        self.ca_pem = ca_pem
        self.insecure = insecure
        self.where = where
        self.clock = clock
        self.runner = runner
        self.runs = 0
        self._cached: ExecResult | None = None
        self._lock = threading.Lock()

    def current(self, *, refresh: bool = False) -> ExecResult:
        """The cached credential, or a fresh one when asked, absent or expired."""
        with self._lock:
            cached = self._cached
            if (
                refresh
                or cached is None
                or (cached.expires is not None and self.clock() >= cached.expires)
            ):
                cached = self._cached = self._run()
            return cached

    def _exec_info(self) -> str:
        spec: dict[str, Any] = {"interactive": False}
        if self.config.provide_cluster_info:
            cluster: dict[str, Any] = {"server": self.server}
            if self.ca_pem:
                cluster["certificate-authority-data"] = base64.b64encode(
                    self.ca_pem.encode()
                ).decode()
            if self.insecure:
                cluster["insecure-skip-tls-verify"] = True
            spec["cluster"] = cluster
        return json.dumps({"apiVersion": self.config.api_version, "kind": "ExecCredential",
                           "spec": spec})  # fmt: skip

    def _run(self) -> ExecResult:
        import shutil  # with subprocess, only for exec plugins: start-up otherwise
        import subprocess

        config = self.config
        what = f"{self.where}: exec plugin {config.command}"
        if config.interactive_mode == "Always":
            raise UsageError(
                f"{what}: needs an interactive terminal (interactiveMode Always); "
                "a build step has none"
            )
        command = config.command
        if "/" not in command and shutil.which(command) is None:
            hint = f" ({config.install_hint})" if config.install_hint else ""
            raise UsageError(f"{what}: not found on PATH{hint}")
        env = dict(os.environ)
        env.update(config.env)
        env["KUBERNETES_EXEC_INFO"] = self._exec_info()
        self.runs += 1
        try:
            proc = (self.runner or subprocess.run)(
                [command, *config.args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=EXEC_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            hint = f" ({config.install_hint})" if config.install_hint else ""
            raise UsageError(f"{what}: no such file{hint}") from None
        except PermissionError:
            raise UsageError(f"{what}: not executable") from None
        except subprocess.TimeoutExpired:
            raise ExternalError(f"{what}: no answer within {EXEC_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            detail = (proc.stderr or "").strip().splitlines()
            raise UsageError(
                f"{what}: exit {proc.returncode}" + (f": {detail[-1]}" if detail else "")
            )
        return parse_exec_credential(proc.stdout, config.api_version, what)


def parse_exec_credential(text: str, api_version: str, what: str) -> ExecResult:
    """An ``ExecCredential`` from a plugin's stdout (pure, secrets registered)."""
    try:
        document = json.loads(text)
    except ValueError:
        raise UsageError(f"{what}: did not print an ExecCredential (JSON)") from None
    if not isinstance(document, dict) or document.get("kind") != "ExecCredential":
        raise UsageError(f"{what}: did not print an ExecCredential")
    if document.get("apiVersion") != api_version:
        raise UsageError(
            f"{what}: printed apiVersion {document.get('apiVersion')!r}, expected {api_version}"
        )
    status = document.get("status")
    if not isinstance(status, dict):
        raise UsageError(f"{what}: ExecCredential has no status")
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if bool(cert) != bool(key):
        raise UsageError(f"{what}: clientCertificateData and clientKeyData go together")
    if not token and not cert:
        raise UsageError(f"{what}: ExecCredential has neither a token nor a client certificate")
    for secret in (token, key):
        if secret:
            register_secret(str(secret))
    expires = None
    stamp = status.get("expirationTimestamp")
    if stamp:
        expires = parse_rfc3339(str(stamp))
        if expires is None:
            raise UsageError(f"{what}: expirationTimestamp {stamp!r} is not a time")
    return ExecResult(
        str(token) if token else None,
        expires,
        str(cert) if cert else None,
        str(key) if key else None,
    )
