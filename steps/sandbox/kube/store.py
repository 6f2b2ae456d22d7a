"""The object store: objects by resource, one global resourceVersion, a bounded event log.

Everything that changes an object goes through ``put``/``remove`` under one
lock, so the resourceVersion sequence and the watch log always agree. Watchers
wait on the store's condition and read the log from their last version; a
version older than the log reaches back is "too old" (410), as with etcd
compaction.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, TypeVar, cast

T = TypeVar("T")
# Changes a watch can resume across (etcd keeps ~5 minutes; a fast sandbox makes
# thousands of changes a minute, so keep enough that only compact() forces a 410).
HISTORY = 5000
ObjKey = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: tuple[str, str]  # (group, plural)
    obj: dict[str, Any]
    old: dict[str, Any] | None


def clone(value: T) -> T:
    """A deep copy of JSON-shaped data, several times faster than ``copy.deepcopy``."""
    return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


class Store:
    """In-memory objects keyed by (group, plural) then (namespace, name)."""

    def __init__(self, history: int = HISTORY) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._objects: dict[tuple[str, str], dict[ObjKey, dict[str, Any]]] = {}
        self._rv = 0
        self._log: deque[WatchEvent] = deque(maxlen=history)
        self._floor = 0  # versions below this are too old to resume a watch from
        self.closed = False

    @property
    def resource_version(self) -> int:
        return self._rv

    def oldest_resumable(self) -> int:
        """Watches may resume from any version >= this (older ones get 410)."""
        with self.lock:
            floor = self._floor
            if self._log and len(self._log) == self._log.maxlen:
                floor = max(floor, self._log[0].rv - 1)
            return floor

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def get(self, resource: tuple[str, str], namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self._objects.get(resource, {}).get((namespace, name))

    def items(
        self, resource: tuple[str, str], namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a resource (all namespaces when ``namespace`` is None), by namespace/name."""
        with self.lock:
            found = self._objects.get(resource, {})
            keys = sorted(k for k in found if namespace is None or k[0] == namespace)
            return [found[k] for k in keys]

    def resources(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self._objects)

    def put(self, resource: tuple[str, str], obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (a new version) and log ADDED or MODIFIED; returns the stored object."""
        with self.lock:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            bucket = self._objects.setdefault(resource, {})
            old = bucket.get(key)
            meta["resourceVersion"] = str(self.next_rv())
            bucket[key] = obj
            self._log_event("MODIFIED" if old else "ADDED", resource, obj, old)
            return obj

    def remove(self, resource: tuple[str, str], namespace: str, name: str) -> dict[str, Any] | None:
        """Remove an object and log DELETED (with a fresh resourceVersion, as the server does)."""
        with self.lock:
            bucket = self._objects.get(resource, {})
            old = bucket.pop((namespace, name), None)
            if old is None:
                return None
            gone = clone(old)
            gone["metadata"]["resourceVersion"] = str(self.next_rv())
            self._log_event("DELETED", resource, gone, old)
            return gone

    def _log_event(
        self, kind: str, resource: tuple[str, str], obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        self._log.append(WatchEvent(self._rv, kind, resource, obj, old))
        self.changed.notify_all()

    def events_after(self, rv: int) -> list[WatchEvent]:
        """The logged events newer than ``rv``, oldest first.

        Read from the newest end: the log is in version order, and a watch asks
        on every change for the few events since its last, so the cost is what
        is new, not the log's length (which made each watch stream slow down
        the whole emulator, controllers included, as the log filled).
        """
        with self.lock:
            newer: list[WatchEvent] = []
            for event in reversed(self._log):
                if event.rv <= rv:
                    break
                newer.append(event)
            newer.reverse()
            return newer

    def compact(self) -> None:
        """Forget the event log, as etcd compaction does: older versions now get 410."""
        with self.lock:
            self._log.clear()
            self._floor = self._rv

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()
