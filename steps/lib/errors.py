"""One error family per kind of failure, each carrying its exit code.

Stages raise these; ``steps.lib.cli.run_step`` turns them into one clean line on
stderr and the exit code. Anything else escaping a stage is a bug and gets a
traceback.
"""

from __future__ import annotations


class StepError(Exception):
    """A failure the user should read as one line, with a fixed exit code."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CheckFailed(StepError):
    """The stage ran and the thing it checks failed (tests, rollout, conflict)."""

    exit_code = 1


class UsageError(StepError):
    """Bad input or configuration: a user mistake that names what is wrong."""

    exit_code = 2


class ManifestError(UsageError):
    """A manifest or template that cannot be used, located by file and line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class ExternalError(StepError):
    """An outside system (registry, Git server, API server) failed after retries."""

    exit_code = 3


class InternalError(StepError):
    """Our own code failed (a script of ours, a broken invariant): a bug, never the
    outside world's fault, so never exit 3. Exit 70, as for an uncaught exception."""

    exit_code = 70
