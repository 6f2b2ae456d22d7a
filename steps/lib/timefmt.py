"""Times as the outside world writes them, and durations as people read them (pure).

The one RFC 3339 parser: the Kubernetes API's timestamps (rollout rules,
events, the Lease lock) and gitops-history's own records all go through it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def parse_rfc3339(text: Any) -> float | None:
    """RFC 3339 (``2026-11-26T06:00:00Z``, with or without fraction) -> seconds since
    the epoch; None when absent or not a time."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def duration(seconds: float | None) -> str:
    """``3m 20s``, ``2h 05m``, ``1d 4h``; ``-`` for None."""
    if seconds is None:
        return "-"
    total = round(seconds)
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"
