"""Where a build came from: Cloud Build's built-in substitutions, as a value.

The git stages carry it in their configs and write it into commit trailers;
every result gets the same fields as a dictionary from ``cli.provenance_of``,
which reads the variables (kept there: ``run_step`` needs them before the flags).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from steps.lib.cli import provenance_of


@dataclass(frozen=True)
class Provenance:
    """Cloud Build's built-in substitutions, when the step runs there."""

    project_id: str | None = None
    build_id: str | None = None
    commit_sha: str | None = None
    short_sha: str | None = None
    repo_name: str | None = None
    branch_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Provenance:
        return cls(**provenance_of(environ))
