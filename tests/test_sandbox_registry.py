"""The loopback registry launcher and its image pushers."""

from __future__ import annotations

import http.client
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_registry import ImagePusher

from steps.lib.errors import ExternalError, UsageError
from steps.sandbox.registry import LocalRegistry, push_image


def get_status(address: str, path: str) -> int:
    connection = http.client.HTTPConnection(address, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_missing_binary_says_to_run_setup(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="run scripts/setup"):
        LocalRegistry(binary=str(tmp_path / "docker-registry")).start()


def test_address_is_loopback_and_storage_is_removed(tmp_path: Path) -> None:
    registry = LocalRegistry().start()
    try:
        assert registry.address.startswith("127.0.0.1:")
        assert get_status(registry.address, "/v2/") == 200
        workdir = registry._workdir
        assert workdir is not None and workdir.exists()
    finally:
        registry.stop()
    assert not workdir.exists()


def test_same_seed_same_digest(images: ImagePusher) -> None:
    first = images.push("app", "a", seed="same")
    second = images.push("app", "b", seed="same")
    other = images.push("app", "c", seed="different")

    assert first == second != other
    assert first.startswith("sha256:") and len(first) == 71


def test_auth_registry_refuses_pushes_without_credentials(auth_registry: LocalRegistry) -> None:
    assert get_status(auth_registry.address, "/v2/") == 401
    with pytest.raises(ExternalError, match="401"):
        push_image(auth_registry.address, "anon/app", "v1")


def test_command_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    process = subprocess.Popen(
        [sys.executable, "-m", "steps.sandbox", "registry", "--port", "0", "--dir", str(storage)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=30), "no address printed"
        address = process.stdout.readline().strip()
        assert address.startswith("127.0.0.1:")

        push_image(address, "demo/app", "v1")

        assert (storage / "docker/registry/v2/repositories/demo/app").is_dir()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
