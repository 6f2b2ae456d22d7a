"""The Lease lock: one build at a time per environment (acquire with a deadline,
renew while applying, release, and know when another holder took it)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from steps.lib.cluster_flags import LEASE_DURATION
from steps.lib.errors import ExternalError
from steps.lib.kube import ApiError, KubeApi
from steps.lib.timefmt import parse_rfc3339

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------- Lease lock


LEASE_POLL = 0.5


def micro_time(epoch: float) -> str:
    """The API's MicroTime format."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_holder(lease: Mapping[str, Any], now: float) -> tuple[str | None, float]:
    """Who holds ``lease`` at ``now`` (None: free or expired) and for how long still (pure)."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or None
    renewed = parse_rfc3339(spec.get("renewTime")) or parse_rfc3339(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if holder is None:
        return None, 0.0
    if renewed is None or not isinstance(duration, int):
        return str(holder), float(LEASE_DURATION)
    left = renewed + duration - now
    return (str(holder), left) if left > 0 else (None, 0.0)


def default_identity() -> str:
    build = os.environ.get("BUILD_ID") or "local"
    return f"build {build} on {os.uname().nodename} pid {os.getpid()}"


class LeaseLock:
    """A ``coordination.k8s.io`` Lease held while a rollout runs.

    ``acquire`` waits (saying who holds it) until the Lease is free or expired,
    then takes it with an optimistic-concurrency write; a thread renews it
    every third of its duration; ``release`` clears the holder.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        duration: int = LEASE_DURATION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.duration = max(int(duration), 1)
        self.clock = clock
        self.lost = threading.Event()
        self.held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def path(self) -> str:
        return (
            f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace, safe='')}"
            f"/leases/{quote(self.name, safe='')}"
        )

    def _spec(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self.clock())
        old = (previous or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        if old.get("holderIdentity") and old.get("holderIdentity") != self.identity:
            transitions += 1
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _body(self, previous: Mapping[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if previous is not None:
            metadata["resourceVersion"] = (previous.get("metadata") or {}).get("resourceVersion")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def try_acquire(self) -> tuple[bool, str | None, float]:
        """One attempt: (taken, current holder, seconds its hold has left)."""
        lease = self.api.get(self.path)
        try:
            if lease is None:
                collection = self.path.rsplit("/", 1)[0]
                self.api.request("POST", collection, body=self._body(None, self._spec(None)))
                return True, self.identity, float(self.duration)
            holder, left = lease_holder(lease, self.clock())
            if holder is not None and holder != self.identity:
                return False, holder, left
            self.api.request("PUT", self.path, body=self._body(lease, self._spec(lease)))
            return True, self.identity, float(self.duration)
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote first: look again
                return False, None, 0.0
            raise

    def acquire(
        self, deadline: float, on_wait: Callable[[str, float], None] | None = None
    ) -> float:
        """Take the lock before ``deadline`` (monotonic); seconds waited, or LockTimeout."""
        started = time.monotonic()
        reported: str | None = None
        while True:
            taken, holder, left = self.try_acquire()
            if taken:
                self.held = True
                self._start_renewing()
                return time.monotonic() - started
            if holder is not None and holder != reported and on_wait is not None:
                on_wait(holder, left)
                reported = holder
            if time.monotonic() >= deadline:
                raise LockTimeout(self.name, holder or "another build")
            time.sleep(min(LEASE_POLL, max(deadline - time.monotonic(), 0.01)))

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lease renew", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        interval = self.duration / 3
        while not self._stop.wait(interval):
            try:
                lease = self.api.get(self.path)
                holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
                if lease is None or holder != self.identity:
                    self.lost.set()
                    return
                spec = dict(lease.get("spec") or {})
                spec["renewTime"] = micro_time(self.clock())
                self.api.request("PUT", self.path, body=self._body(lease, spec))
            except (ApiError, ExternalError):
                continue  # tried again in a third of the duration, well before expiry

    def release(self) -> None:
        """Give the lock up (best effort: an unreleased lock expires anyway)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if not self.held:
            return
        self.held = False
        for _ in range(3):
            try:
                lease = self.api.get(self.path)
                spec = dict((lease or {}).get("spec") or {})
                if lease is None or spec.get("holderIdentity") != self.identity:
                    return
                spec.pop("holderIdentity", None)
                spec["leaseDurationSeconds"] = 1
                self.api.request("PUT", self.path, body=self._body(lease, spec))
                return
            except ApiError as exc:
                if exc.status != 409:
                    break
            except ExternalError:
                break


class LockTimeout(Exception):
    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"lock {name} still held by {holder}")
        self.name = name
        self.holder = holder
