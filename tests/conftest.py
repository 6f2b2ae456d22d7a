"""Shared fixtures. Each service's fixtures live in its own module."""

from fixtures_git import *  # noqa: F403
from fixtures_kube import *  # noqa: F403
from fixtures_registry import *  # noqa: F403
