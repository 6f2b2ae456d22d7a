"""Fixtures for the loopback OCI registry (see steps/sandbox/registry.py).

The registries are per session (starting one takes a fraction of a second,
but there is no reason to do it per test); each test pushes under its own
repository prefix, through ``images`` / ``auth_images``, so tests never see
each other's tags.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from steps.lib.imageref import ImageRef
from steps.sandbox.registry import LocalRegistry

__all__ = ["ImagePusher", "auth_images", "auth_registry", "images", "registry"]


@pytest.fixture(scope="session")
def registry() -> Iterator[LocalRegistry]:
    """A docker-registry on 127.0.0.1 without auth."""
    with LocalRegistry() as running:
        yield running


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[LocalRegistry]:
    """A docker-registry behind htpasswd basic auth (``.username`` / ``.password``)."""
    with LocalRegistry(username="gitops", password=secrets.token_urlsafe(18)) as running:
        yield running


@dataclass
class ImagePusher:
    """Pushes small images to one registry under a prefix private to one test."""

    registry: LocalRegistry
    prefix: str

    def repository(self, name: str) -> str:
        """``ADDRESS/PREFIX/name``: the repository as an image reference spells it."""
        return f"{self.registry.address}/{self.prefix}/{name}"

    def ref(self, name: str, tag: str) -> ImageRef:
        return ImageRef.parse(f"{self.repository(name)}:{tag}")

    def push(self, name: str, tag: str, **kwargs: Any) -> str:
        """Push an image (see ``steps.sandbox.registry.push_image``); its digest."""
        return self.registry.push_image(f"{self.prefix}/{name}", tag, **kwargs)

    def push_index(self, name: str, tag: str, digests: Sequence[str]) -> str:
        """Push an OCI image index over ``digests``; its digest."""
        return self.registry.push_index(f"{self.prefix}/{name}", tag, digests)


@pytest.fixture
def images(registry: LocalRegistry) -> ImagePusher:
    """Push images to ``registry``."""
    return ImagePusher(registry, f"t{secrets.token_hex(4)}")


@pytest.fixture
def auth_images(auth_registry: LocalRegistry) -> ImagePusher:
    """Push images to ``auth_registry`` (with its credentials)."""
    return ImagePusher(auth_registry, f"t{secrets.token_hex(4)}")
