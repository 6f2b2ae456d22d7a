"""Following one collection: list it, then watch it in a thread, until stopped.

A ``CollectionWatch`` resumes from the last ``resourceVersion`` (bookmarks
included) after a dropped stream and re-lists after ``410 Gone``; it puts what
it sees on a queue as ``Event`` records. Only the wait after an apply uses it,
so it is kept out of ``steps.lib.kube``, which the path to the first write loads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steps.lib.kube import API_BACKOFF, WATCH_SECONDS, ApiError, transport_errors
from steps.lib.retry import backoff_delay

if TYPE_CHECKING:
    import queue

    from steps.lib.kube import KubeApi, WatchStream

UNREACHABLE_AFTER = 60.0
"""A watch failing without a single success for this long means the API is gone."""


@dataclass(frozen=True)
class Event:
    """What a ``CollectionWatch`` puts on its queue.

    ``type`` is ADDED/MODIFIED/DELETED for one object, SYNC for a full listing
    (``items``), FATAL (``error``, an ApiError) when the API stayed unreachable or
    refused, or BUG (``error``, with its traceback) when the watch thread itself
    raised something that is not an API or network error: a bug, never retried.
    """

    key: str
    type: str
    obj: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None


def typed_items(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A list's items with apiVersion and kind, which the API server leaves out of them."""
    api_version = listing.get("apiVersion")
    kind = str(listing.get("kind") or "").removesuffix("List")
    items = []
    for item in listing.get("items") or []:
        if isinstance(item, dict):
            if api_version and "apiVersion" not in item:
                item["apiVersion"] = api_version
            if kind and "kind" not in item:
                item["kind"] = kind
            items.append(item)
    return items


class CollectionWatch:
    """List, then watch, one collection in a daemon thread until stopped."""

    def __init__(
        self,
        api: KubeApi,
        key: str,
        path: str,
        sink: queue.Queue[Event],
        *,
        selectors: Sequence[tuple[str, str]] = (),
        unreachable_after: float = UNREACHABLE_AFTER,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.api = api
        self.key = key
        self.path = path
        self.sink = sink
        self.selectors = list(selectors)
        self.unreachable_after = unreachable_after
        self.watch_seconds = watch_seconds
        self.restarts = 0
        self.last_ok = time.monotonic()
        self.failing = False
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {key}", daemon=True)

    def start(self) -> CollectionWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end; it closes its stream itself (``WatchStream.interrupt``)."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.interrupt()

    def unreachable_for(self) -> float:
        """Seconds since this watch last heard from the API server while failing (0: fine)."""
        return time.monotonic() - self.last_ok if self.failing else 0.0

    def _run(self) -> None:
        version: str | None = None
        failures = 0  # in a row: the backoff's attempt number
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = self.api.request("GET", self.path, query=self.selectors, retry=False)
                    self._heard()
                    version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                    self.sink.put(Event(self.key, "SYNC", items=typed_items(listing)))
                opened = time.monotonic()
                version, events = self._follow(version)
                if events or time.monotonic() - opened > 1.0:
                    failures = 0
                    continue
                # An empty stream that ended at once: do not spin.
                raise ApiError(0, "watch stream closed at once")
            except Exception as exc:
                if self._stop.is_set():
                    return
                if isinstance(exc, ApiError):
                    error = exc
                elif isinstance(exc, transport_errors()):  # a broken stream: retried like a drop
                    error = ApiError(0, f"{type(exc).__name__}: {exc}")
                else:  # anything else is a bug: retrying it until the deadline would hide it
                    self.sink.put(Event(self.key, "BUG", error=exc))
                    return
                if error.status == 410:
                    version = None
                    continue
                self.failing = True
                self.restarts += 1
                if not error.transient or self.unreachable_for() > self.unreachable_after:
                    self.sink.put(Event(self.key, "FATAL", error=error))
                    return
                failures += 1
                self._stop.wait(
                    backoff_delay(failures, policy=API_BACKOFF, retry_after=error.retry_after)
                )

    def _heard(self) -> None:
        self.last_ok = time.monotonic()
        self.failing = False

    def _follow(self, version: str) -> tuple[str | None, int]:
        """Watch from ``version`` until the stream ends; the version to resume from."""
        stream = self.api.watch(
            self.path, version, selectors=self.selectors, timeout_seconds=self.watch_seconds
        )
        self._stream = stream
        self._heard()
        count = 0
        try:
            for event in stream.events():
                if self._stop.is_set():
                    break
                kind = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        return None, count
                    raise ApiError(int(code or 0), str(obj.get("message", "watch error")), obj)
                self._heard()
                new_version = (obj.get("metadata") or {}).get("resourceVersion")
                if new_version:
                    version = str(new_version)
                count += 1
                if kind != "BOOKMARK":
                    self.sink.put(Event(self.key, kind, obj=obj))
        finally:
            self._stream = None
            stream.close()
        return version, count
