"""Fixtures for the Kubernetes API emulator (see steps/sandbox/kube/).

Each test gets its own emulator (starting one takes milliseconds), so tests
never see each other's objects or faults. The emulator's default timings are a
real kubelet's (crash and image-pull back-off from 10 s); these fixtures opt
into ``Timings.fast()`` explicitly, since no test here makes a claim about how
long a real cluster takes. Pass ``timings=`` to ``kube_factory`` to choose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from steps.sandbox.kube import KubeEmulator, Timings

__all__ = ["kube", "kube_api", "kube_factory"]


@pytest.fixture
def kube_factory() -> Iterator[Callable[..., KubeEmulator]]:
    """Start emulators with ``KubeEmulator``'s keyword arguments (fast timings by default)."""
    started: list[KubeEmulator] = []

    def make(**kwargs: Any) -> KubeEmulator:
        kwargs.setdefault("timings", Timings.fast())
        emulator = KubeEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def kube(kube_factory: Callable[..., KubeEmulator]) -> KubeEmulator:
    """A started emulator: fast timings, three nodes, no registry."""
    return kube_factory()


@pytest.fixture
def kube_api(kube: KubeEmulator) -> Iterator[Any]:
    """An official-client ``ApiClient`` for ``kube``, loaded from its kubeconfig."""
    from kubernetes import config

    client = config.new_client_from_config(str(kube.kubeconfig))
    yield client
    client.close()
