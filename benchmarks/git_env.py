"""What the git benchmarks share: a clean, reproducible git environment."""

from __future__ import annotations

import os
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.test",
}


def clean_env(home: Path) -> dict[str, str]:
    """The environment minus the caller's git/gitops settings, with a fixed identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITOPS_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, **IDENTITY)
    return env
