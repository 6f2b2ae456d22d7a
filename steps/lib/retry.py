"""One retry policy for the outside calls: Git, the registry, gitops-history.

Exponential backoff with "equal jitter": before attempt ``n + 1`` wait a
random time in ``[ceiling / 2, ceiling]`` where ``ceiling = min(cap, base *
2 ** (n - 1))``. Jitter keeps many builds that failed together from retrying
in step; the floor keeps a retry from coming back at once. A server's
``Retry-After`` replaces the computed delay, capped at ``RETRY_AFTER_CAP``.

Two schedules: ``FAILURE`` after a network or server failure (give it time)
and ``CONTENTION`` after losing a race (someone else made progress; come back
soon). Callers bound failures by a count and lost races by time
(``steps.lib.git_retry.push_with_retry``): many writers on one branch each lose
many races, and every loss is another writer's success.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import random

RETRY_AFTER_CAP = 10.0
"""Seconds: the most a server's Retry-After may make us wait."""


class Backoff(NamedTuple):
    base: float
    cap: float

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt`` (1-based)."""
        return min(self.cap, self.base * 2.0 ** max(0, attempt - 1))


FAILURE = Backoff(0.5, 8.0)
CONTENTION = Backoff(0.1, 3.0)


def backoff_delay(
    attempt: int,
    rng: random.Random | None = None,
    policy: Backoff = FAILURE,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after failed attempt ``attempt`` before the next one."""
    if retry_after is not None:
        return max(0.0, min(retry_after, RETRY_AFTER_CAP))
    ceiling = policy.ceiling(attempt)
    if rng is None:
        import random  # only once something failed: its import (math, bisect, _sha512) is start-up

        return random.uniform(ceiling / 2, ceiling)
    return rng.uniform(ceiling / 2, ceiling)
