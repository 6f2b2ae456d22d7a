"""What the controllers share, below them all: owner references, the
pod-template-hash, int-or-percent arithmetic, and ``ControllerHost``, what the
kind controllers (``crds``, ``cronjobs``, ``network``, ``workloads``) need
from the controller loop that runs them (``controllers.Controllers``).

The kind controllers depend on this module, never on ``controllers``, which
imports them: no import cycle.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from steps.sandbox.kube.api import Cluster
from steps.sandbox.kube.events import EventRecorder
from steps.sandbox.kube.resources import ResourceType
from steps.sandbox.kube.timings import Timings

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def semantic(value: Any) -> Any:
    """``value`` without what Go's zero values make equal: nulls, empty maps and lists.

    The real controllers compare and hash typed structs, so a template that says
    ``creationTimestamp: null`` or ``resources: {}`` (as ``kubectl rollout undo``
    sends it back) is the same template as one that leaves them out.
    """
    if isinstance(value, dict):
        out = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def template_hash(template: Any, collisions: int = 0) -> str:
    """A pod-template-hash in the controller's alphabet (FNV-1a over the template)."""
    data = json.dumps(semantic(template), sort_keys=True, separators=(",", ":")).encode()
    data += str(collisions).encode()
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in str(value))


def resolve(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent against ``total`` (maxSurge rounds up, maxUnavailable down)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return int(math.ceil(scaled) if round_up else math.floor(scaled))
    return int(value)


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class ControllerHost(Protocol):
    """The controller loop as the kind controllers see it."""

    cluster: Cluster
    events: EventRecorder
    timings: Timings

    def rt(self, group: str, plural: str, version: str = "v1") -> ResourceType: ...

    def observed(self, obj: dict[str, Any]) -> bool: ...

    def after(self, key: str, delay: float) -> bool: ...

    def pods_of(self, owner: dict[str, Any]) -> list[dict[str, Any]]: ...

    def pod_ready(self, pod: dict[str, Any]) -> bool: ...

    def pod_available(self, pod: dict[str, Any], min_ready: int) -> bool: ...

    def create_pod(
        self,
        owner: dict[str, Any],
        template: dict[str, Any],
        name: str,
        extra_labels: dict[str, str] | None = None,
    ) -> dict[str, Any] | None: ...

    def delete_pod(self, owner: dict[str, Any], pod: dict[str, Any]) -> None: ...
