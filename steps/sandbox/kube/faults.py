"""Fault injection: failed requests, 429s with Retry-After, dropped watches, latency.

Tests arm faults in-process (``emulator.faults``); the CLI arms them through
``/_sandbox/faults``. Patterns are regular expressions searched, ignoring case, in the
request target (path and query), so ``"watch=true"`` (the client sends
``watch=True``) or ``"/deployments"`` both work.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Failure:
    """An armed failure; ``remaining`` None means until cleared."""

    pattern: re.Pattern[str]
    status: int
    remaining: int | None
    method: str | None
    retry_after: int | None

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "InternalError")


class FaultInjector:
    """Faults the server consults on every request; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._drops: int | None = 0
        self._latency: list[tuple[re.Pattern[str] | None, float]] = []
        self.injected = 0  # how many requests got a fault (failures and drops)

    def fail(
        self,
        path_pattern: str,
        status: int = 500,
        count: int | None = 1,
        method: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (429 gets Retry-After)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._failures.append(
                Failure(
                    re.compile(path_pattern, re.IGNORECASE),
                    status,
                    count,
                    method and method.upper(),
                    retry_after,
                )
            )

    def drop_watches(self, count: int | None = 1) -> None:
        """Cut the next ``count`` watch streams (open now or opened later) mid-stream."""
        with self._lock:
            if count is None or self._drops is None:
                self._drops = None
            else:
                self._drops += count

    def latency(self, seconds: float, path_pattern: str | None = None) -> None:
        """Delay every matching request by ``seconds`` until cleared."""
        with self._lock:
            pattern = re.compile(path_pattern, re.IGNORECASE) if path_pattern else None
            self._latency.append((pattern, seconds))

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._drops = 0
            self._latency.clear()

    # -- consulted by the server ----------------------------------------------

    def take_failure(self, method: str, target: str) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.method and failure.method != method:
                    continue
                if not failure.pattern.search(target):
                    continue
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                self.injected += 1
                return failure
            return None

    def delay(self, target: str) -> float:
        with self._lock:
            return sum(s for p, s in self._latency if p is None or p.search(target))

    def take_drop(self) -> bool:
        with self._lock:
            if self._drops is None:
                self.injected += 1
                return True
            if self._drops > 0:
                self._drops -= 1
                self.injected += 1
                return True
            return False

    def arm(self, spec: dict[str, Any]) -> None:
        """Arm from a JSON body: {"fail": {...}} | {"drop_watches": {...}} | {"latency": {...}}."""
        if "fail" in spec:
            self.fail(**spec["fail"])
        if "drop_watches" in spec:
            self.drop_watches(**(spec["drop_watches"] or {}))
        if "latency" in spec:
            self.latency(**spec["latency"])
