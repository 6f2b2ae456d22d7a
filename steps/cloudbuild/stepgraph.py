"""A checked, substituted build config's steps as data, and their ``waitFor`` graph.

What the runner executes: ``Step`` (one step after substitution, with its
volumes) built from ``config.resolve``'s result, and ``dependencies``, Cloud
Build's rules for ``waitFor``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steps.cloudbuild.config import parse_duration


@dataclass(frozen=True)
class Volume:
    name: str
    path: str


@dataclass(frozen=True)
class Step:
    """One build step after substitution."""

    index: int
    id: str
    name: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    dir: str = ""
    entrypoint: str | None = None
    script: str | None = None
    wait_for: tuple[str, ...] | None = None
    timeout: float | None = None
    allow_failure: bool = False
    allow_exit_codes: tuple[int, ...] = ()
    secret_env: tuple[str, ...] = ()
    volumes: tuple[Volume, ...] = ()
    automap: bool | None = None

    @property
    def label(self) -> str:
        return f'Step #{self.index} - "{self.id}"' if self.id else f"Step #{self.index}"

    @property
    def key(self) -> str:
        """The id, or the index for steps without one."""
        return self.id or str(self.index)


def build_steps(data: Mapping[str, Any]) -> list[Step]:
    steps: list[Step] = []
    for index, raw in enumerate(data.get("steps") or []):
        timeout = raw.get("timeout")
        wait_for = raw.get("waitFor")
        steps.append(
            Step(
                index=index,
                id=str(raw.get("id") or ""),
                name=str(raw["name"]),
                args=tuple(str(a) for a in raw.get("args") or []),
                env=tuple(str(e) for e in raw.get("env") or []),
                dir=str(raw.get("dir") or ""),
                entrypoint=raw.get("entrypoint") or None,
                script=raw.get("script"),
                wait_for=None if wait_for is None else tuple(str(w) for w in wait_for),
                timeout=parse_duration(timeout) if timeout else None,
                allow_failure=bool(raw.get("allowFailure")),
                allow_exit_codes=tuple(int(c) for c in raw.get("allowExitCodes") or []),
                secret_env=tuple(str(s) for s in raw.get("secretEnv") or []),
                volumes=tuple(
                    Volume(str(v["name"]), str(v["path"])) for v in raw.get("volumes") or []
                ),
                automap=raw.get("automapSubstitutions"),
            )
        )
    return steps


def dependencies(steps: Sequence[Step]) -> dict[str, list[str]]:
    """Step key -> the keys it waits for (Cloud Build's rules for ``waitFor``).

    No ``waitFor``: every earlier step. ``["-"]``: nothing (starts at once).
    """
    deps: dict[str, list[str]] = {}
    for position, step in enumerate(steps):
        if step.wait_for is None:
            deps[step.key] = [s.key for s in steps[:position]]
        else:
            deps[step.key] = [w for w in step.wait_for if w != "-"]
    return deps
