"""A real OCI registry on loopback: Debian's ``docker-registry`` in a temp dir.

Tests, benchmarks and the demo push small but valid images to it through the
registry HTTP API, so the digest client is checked against the registry's own
idea of a digest rather than against our own arithmetic.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import ctypes.util
import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from steps.lib.errors import ExternalError, UsageError
from steps.sandbox.service import Service

DOCKER_REGISTRY = "/usr/bin/docker-registry"
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class LocalRegistry(Service):
    """``docker-registry serve`` on 127.0.0.1, optionally behind htpasswd basic auth.

    Storage goes to ``directory`` when given (kept), else to a temp dir
    (removed by ``stop``). ``port=0`` picks a free port.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
        binary: str = DOCKER_REGISTRY,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.directory = Path(directory) if directory is not None else None
        self.port = port
        self.username = username
        self.password = password
        self.binary = binary
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` (the registry part of image references)."""
        if self._process is None:
            raise RuntimeError("the registry is not running; call start() first")
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> LocalRegistry:
        """Start the registry and wait (bounded) until ``/v2/`` answers."""
        if self._process is not None:
            return self
        if not os.access(self.binary, os.X_OK):
            raise UsageError(
                f"{self.binary} not found: install Debian's docker-registry (run scripts/setup)"
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="gitops-registry-"))
        storage = self.directory or self._workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        htpasswd = None
        if self.username is not None and self.password is not None:
            htpasswd = self._workdir / "htpasswd"
            htpasswd.write_text(f"{self.username}:{bcrypt_hash(self.password)}\n")
        # A port picked here may be taken before the registry binds it; try again.
        tries = 3 if self.port == 0 else 1
        requested = self.port
        for attempt in range(1, tries + 1):
            self.port = requested or free_port()
            config = self._workdir / "config.yml"
            config.write_text(registry_config(storage, self.port, htpasswd))
            log = self._workdir / "registry.log"
            with log.open("wb") as log_file:
                self._process = subprocess.Popen(
                    [self.binary, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            try:
                self._wait_ready()
                return self
            except ExternalError:
                self.stop(keep_workdir=True)
                if attempt == tries:
                    tail = log.read_text(errors="replace")[-2000:]
                    self._remove_workdir()
                    raise ExternalError(
                        f"docker-registry did not start on {HOST}:{self.port}: {tail.strip()}"
                    ) from None
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ExternalError(f"docker-registry exited with {self._process.returncode}")
            try:
                status, _, _ = _call(f"{HOST}:{self.port}", "GET", "/v2/", timeout=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if status in (200, 401):
                return
            time.sleep(0.05)
        raise ExternalError(f"docker-registry did not answer within {self.startup_timeout:.0f}s")

    def stop(self, *, keep_workdir: bool = False) -> None:
        """Stop the registry (TERM, then KILL) and remove the temp dir."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if not keep_workdir:
            self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def wait(self) -> int:
        """Block until the registry exits; its exit code."""
        if self._process is None:
            raise RuntimeError("the registry is not running")
        return self._process.wait()

    def push_image(self, repository: str, tag: str, **kwargs: Any) -> str:
        """``push_image`` to this registry, with its credentials."""
        return push_image(
            self.address,
            repository,
            tag,
            username=self.username,
            password=self.password,
            **kwargs,
        )

    def push_index(self, repository: str, tag: str, manifest_digests: Sequence[str]) -> str:
        """``push_index`` to this registry, with its credentials."""
        return push_index(
            self.address,
            repository,
            tag,
            manifest_digests,
            username=self.username,
            password=self.password,
        )


def registry_config(storage: Path, port: int, htpasswd: Path | None) -> str:
    """docker-registry's YAML config (JSON is YAML): loopback, quiet, filesystem."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"{HOST}:{port}", "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "gitops-sandbox", "path": str(htpasswd)}}
    return json.dumps(config, indent=2) + "\n"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt hash for htpasswd, which docker-registry insists on.

    Uses libcrypt (libxcrypt, always present on Debian) through ctypes, or the
    ``bcrypt`` package when that is installed; low cost, as this is a sandbox.
    """
    try:
        import bcrypt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=max(cost, 4)))
        return hashed.decode()
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise UsageError(
            "htpasswd needs bcrypt: install libcrypt1 (Debian) or the bcrypt package"
        ) from None
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2y$", cost, None, 0)
    result = lib.crypt(password.encode(), salt) if salt else None
    if not result or not result.startswith(b"$2"):
        raise UsageError("this libcrypt cannot make bcrypt hashes; install the bcrypt package")
    return str(result.decode())


# -- pushing images through the registry API -----------------------------------


def push_image(
    address: str,
    repository: str,
    tag: str,
    *,
    seed: str = "gitops-sandbox",
    architecture: str = "amd64",
    media_type: str = OCI_MANIFEST,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Push a one-layer image built from ``seed``; the manifest digest the registry reports.

    The same seed gives the same digest; ``media_type`` picks an OCI or a
    Docker v2 schema 2 manifest.
    """
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise ValueError(f"unsupported manifest media type {media_type!r}")
    oci = media_type == OCI_MANIFEST
    auth = _basic(username, password)
    tar = _layer_tar(seed)
    layer = gzip.compress(tar, mtime=0)
    config = _json_bytes(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Labels": {"gitops.sandbox.seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
        }
    )
    _push_blob(address, repository, config, auth)
    _push_blob(address, repository, layer, auth)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "digest": _digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                "digest": _digest(layer),
                "size": len(layer),
            }
        ],
    }
    return _push_manifest(address, repository, tag, _json_bytes(manifest), media_type, auth)


def push_index(
    address: str,
    repository: str,
    tag: str,
    manifest_digests: Sequence[str],
    *,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Push an OCI image index over manifests already in ``repository``; its digest.

    Each entry's size, media type and platform are read back from the registry.
    """
    auth = _basic(username, password)
    entries = []
    for digest in manifest_digests:
        body, media_type = _get(address, f"/v2/{repository}/manifests/{digest}", auth)
        manifest = json.loads(body)
        config_digest = manifest["config"]["digest"]
        config, _ = _get(address, f"/v2/{repository}/blobs/{config_digest}", auth)
        image = json.loads(config)
        entries.append(
            {
                "mediaType": media_type,
                "digest": digest,
                "size": len(body),
                "platform": {"architecture": image["architecture"], "os": image["os"]},
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return _push_manifest(address, repository, tag, _json_bytes(index), OCI_INDEX, auth)


def _layer_tar(seed: str) -> bytes:
    """A deterministic tar with one file, so equal seeds give equal digests."""
    content = f"{seed}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("seed.txt")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _basic(username: str | None, password: str | None) -> dict[str, str]:
    if username is None or password is None:
        return {}
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _push_blob(address: str, repository: str, data: bytes, auth: Mapping[str, str]) -> None:
    """Monolithic upload: POST for an upload URL, then one PUT with the digest."""
    digest = _digest(data)
    status, _, _ = _call(address, "HEAD", f"/v2/{repository}/blobs/{digest}", headers=auth)
    if status == 200:
        return
    status, headers, body = _call(address, "POST", f"/v2/{repository}/blobs/uploads/", headers=auth)
    location = headers.get("location")
    if status != 202 or not location:
        raise ExternalError(
            f"starting a blob upload to {address}/{repository}: {_said(status, body)}"
        )
    if "://" in location:
        location = "/" + location.split("://", 1)[1].split("/", 1)[1]
    location += ("&" if "?" in location else "?") + f"digest={digest}"
    status, _, body = _call(
        address,
        "PUT",
        location,
        body=data,
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    if status != 201:
        raise ExternalError(f"uploading a blob to {address}/{repository}: {_said(status, body)}")


def _push_manifest(
    address: str,
    repository: str,
    tag: str,
    body: bytes,
    media_type: str,
    auth: Mapping[str, str],
) -> str:
    status, headers, answer = _call(
        address,
        "PUT",
        f"/v2/{repository}/manifests/{tag}",
        body=body,
        headers={**auth, "Content-Type": media_type},
    )
    digest = headers.get("docker-content-digest")
    if status != 201 or not digest:
        raise ExternalError(f"pushing {address}/{repository}:{tag}: {_said(status, answer)}")
    return digest


def _get(address: str, path: str, auth: Mapping[str, str]) -> tuple[bytes, str]:
    accept = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST))
    status, headers, body = _call(address, "GET", path, headers={**auth, "Accept": accept})
    if status != 200:
        raise ExternalError(f"reading {address}{path}: {_said(status, body)}")
    return body, headers.get("content-type", "")


def _said(status: int, body: bytes) -> str:
    return f"HTTP {status} {body[:300].decode(errors='replace').strip()}"


def _call(
    address: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> tuple[int, dict[str, str], bytes]:
    """One plain-HTTP request to the loopback registry; headers keyed lower-case."""
    connection = http.client.HTTPConnection(address, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


# -- gitops-sandbox registry ----------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run a registry in the foreground until interrupted, printing its address."""
    parser = argparse.ArgumentParser(
        prog="gitops-sandbox registry",
        description="Run Debian's docker-registry on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--port", type=int, default=5000, help="port (0: any free port)")
    parser.add_argument("--dir", metavar="DIR", help="storage directory (default: a temp dir)")
    parser.add_argument("--username", help="require htpasswd basic auth with this user")
    parser.add_argument("--password", help="the password for --username")
    args = parser.parse_args(argv)
    if (args.username is None) != (args.password is None):
        parser.error("--username and --password go together")
    registry = LocalRegistry(
        args.dir, port=args.port, username=args.username, password=args.password
    )
    # Let SIGTERM stop it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        registry.start()
    except (UsageError, ExternalError) as exc:
        print(f"gitops-sandbox registry: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(registry.address, flush=True)
    try:
        code = registry.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        registry.stop()
    return code
