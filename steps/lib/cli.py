"""What every stage's command line has in common.

- Every long flag also reads an environment variable: ``--env-repo`` reads
  ``GITOPS_ENV_REPO``. A flag on the command line wins over the variable.
- Cloud Build's built-in substitutions are read for provenance when present.
- ``run_step`` is the one place that turns errors into exit codes.

Every stage imports this before it parses its flags, so ``--help`` pays for
each import here: only ``argparse`` (which brings ``re``) and the error types.
Anything else (``dataclasses``, ``typing``, ``json``, ``pathlib``) is imported
where it is used, after the flags (``tests/test_packaging.py`` checks).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence

from steps.lib.errors import StepError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a millisecond at every start; mypy alone needs it
    from typing import Any, NoReturn

ENV_PREFIX = "GITOPS_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(flag: str) -> str:
    """``--env-repo`` -> ``GITOPS_ENV_REPO``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class StepParser(argparse.ArgumentParser):
    """An ArgumentParser whose long options fall back to environment variables.

    Errors are raised as ``UsageError`` (one line, exit 2) instead of argparse
    printing usage and exiting from deep inside.
    """

    def __init__(self, prog: str, description: str, **kwargs: Any) -> None:
        super().__init__(
            prog=prog,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )
        self._env_options: list[tuple[argparse.Action, str]] = []
        self._required: set[str] = set()
        self._defaults: dict[str, Any] = {}
        self._exclusive: list[tuple[frozenset[str], ...]] = []

    def add_option(self, *flags: str, env: bool = True, **kwargs: Any) -> argparse.Action:
        """Add an option that also reads ``GITOPS_<FLAG>`` when not given."""
        long_flag = next((f for f in flags if f.startswith("--")), None)
        variable = env_name(long_flag) if (env and long_flag) else None
        help_text = kwargs.get("help")
        if variable and help_text is not argparse.SUPPRESS:
            kwargs["help"] = f"{help_text or ''} [env: {variable}]".strip()
        required = bool(kwargs.pop("required", False))
        # The default is applied after the environment is read, or a default
        # would hide GITOPS_<FLAG>.
        default = kwargs.pop("default", None)
        action = self.add_argument(*flags, **kwargs)
        if default is not None:
            self._defaults[action.dest] = default
        action.required = False
        if required:
            self._required.add(action.dest)
        if variable:
            self._env_options.append((action, variable))
        elif required:
            action.required = True
        return action

    def exclusive(self, *ways: Sequence[str]) -> None:
        """Declare ``ways`` (each a list of long flags) as excluding each other.

        A flag given on the command line wins over every variable, including the
        variables of another way: ``--kubeconfig`` given while ``GITOPS_CLUSTER``
        is set means the kubeconfig, not a conflict. Flags that contradict each
        other on the command line itself are still the stage's to refuse."""
        dests = []
        for way in ways:
            found = {a.dest for a in self._actions if set(a.option_strings) & set(way)}
            if len(found) != len(way):
                raise ValueError(f"exclusive: unknown flag in {list(way)}")
            dests.append(frozenset(found))
        self._exclusive.append(tuple(dests))

    def _outranked(self, given: set[str]) -> set[str]:
        """Options whose variables a command-line flag of another way overrides."""
        ignored: set[str] = set()
        for ways in self._exclusive:
            chosen = [way for way in ways if way & given]
            if chosen:
                ignored.update(d for way in ways if way not in chosen for d in way)
        return ignored

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_step_args(
        self, argv: Sequence[str] | None, environ: Mapping[str, str] | None = None
    ) -> argparse.Namespace:
        """Parse flags, then fill what was not given from the environment."""
        env = os.environ if environ is None else environ
        args = self.parse_args(argv)
        given = {a.dest for a, _ in self._env_options if not _is_unset(a, getattr(args, a.dest))}
        outranked = self._outranked(given)
        for action, variable in self._env_options:
            current = getattr(args, action.dest)
            if _is_unset(action, current) and variable in env and action.dest not in outranked:
                setattr(args, action.dest, _from_env(action, variable, env[variable]))
            if action.dest in self._defaults and _is_unset(action, getattr(args, action.dest)):
                setattr(args, action.dest, self._defaults[action.dest])
            if action.dest in self._required and _is_unset(action, getattr(args, action.dest)):
                flag = max(action.option_strings, key=len)
                raise UsageError(f"{flag} is required (or set {variable})")
        return args


def _is_unset(action: argparse.Action, value: Any) -> bool:
    if isinstance(action, argparse._StoreTrueAction):
        return value is False
    return value is None or value == []


def _from_env(action: argparse.Action, variable: str, raw: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(f"{variable}={raw!r}: expected true or false")
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    try:
        if isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*"):
            values = [convert(item) for item in raw.split()]
            if isinstance(action, argparse._AppendAction) and action.nargs in ("+", "*"):
                return [values]
            return values
        value = convert(raw)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise UsageError(f"{variable}={raw!r}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UsageError(f"{variable}={raw!r}: expected one of {choices}")
    return value


PROVENANCE_VARIABLES = (
    "PROJECT_ID",
    "BUILD_ID",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REPO_NAME",
    "BRANCH_NAME",
)
"""Cloud Build's built-in substitutions read for provenance (present with
``automapSubstitutions``); each is the field of its name in lower case."""


def provenance_of(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The provenance variables that are set and not empty: ``{"build_id": ...}``."""
    env = os.environ if environ is None else environ
    return {name.lower(): env[name] for name in PROVENANCE_VARIABLES if env.get(name)}


def add_common_options(parser: StepParser) -> None:
    """Options every stage has."""
    parser.add_option(
        "--result-file",
        metavar="PATH",
        help="write a JSON result here (also written to $BUILDER_OUTPUT/output when set)",
    )


class StepRun:
    """What a stage body tells ``run_step`` once it has parsed its flags."""

    __slots__ = ("result_file",)

    def __init__(self, result_file: str | None = None) -> None:
        self.result_file = result_file


def settle_imports(argv: Sequence[str] | None) -> None:
    """When run as a command (``argv`` None), take what is imported out of the GC's way.

    Modules, classes and functions live until the process exits, yet every
    full collection, and the one at exit, walks them again: ``gc.freeze``
    moves them to the permanent generation. Exit gets 10-40 ms faster. Not
    done for in-process calls (tests), where the frozen objects would stay.
    """
    if argv is None:
        import gc

        gc.freeze()


def run_step(step: str, body: Callable[[StepRun], dict[str, Any]]) -> int:
    """Run a stage body, report its result, and map errors to exit codes.

    ``body`` parses flags, sets ``run.result_file`` and returns the result
    dictionary (with ``status`` and, when not 0, ``exit_code``).
    """
    run = StepRun()
    provenance = provenance_of()
    try:
        result = body(run)
    except StepError as exc:
        _say(f"{step}: error: {exc.message}")
        failure = {
            "step": step,
            "status": "error",
            "exit_code": exc.exit_code,
            "error": exc.message,
            "provenance": provenance,
        }
        _write_quietly(failure, run.result_file)
        return exc.exit_code
    except KeyboardInterrupt:
        _say(f"{step}: interrupted")
        return 130
    except Exception:
        import traceback  # only for a bug: linecache, tokenize

        _say(traceback.format_exc().rstrip())
        _say(f"{step}: internal error: a bug in gitops-steps; please report it with the above")
        return 70
    exit_code = int(result.get("exit_code", 0))
    result = {"step": step, **result, "exit_code": exit_code, "provenance": provenance}
    _write_quietly(result, run.result_file)
    return exit_code


def _say(message: str) -> None:
    from steps.lib.output import say  # json, pathlib: not before there is something to say

    say(message)


def _write_quietly(result: dict[str, Any], result_file: str | None) -> None:
    from steps.lib.output import write_result

    try:
        write_result(result, result_file)
    except OSError as exc:
        _say(f"warning: could not write the result file {result_file}: {exc.strerror}")


def run_command(
    prog: str, commands: Mapping[str, tuple[str, str]], argv: Sequence[str] | None
) -> int:
    """Dispatch ``prog COMMAND ...`` to ``commands[COMMAND]``: (module, summary).

    Each module has its own ``main(argv) -> int`` and is imported only when
    chosen, so one command's dependencies never slow down another.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND [options]\n\ncommands:")
        for name, (_, about) in commands.items():
            print(f"  {name:10} {about}")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in commands:
        print(f"{prog}: error: unknown command {name!r} (see {prog} --help)", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(commands[name][0])
    return int(module.main(rest))


def parse_duration(text: str, flag: str) -> float:
    """``90s``, ``10m``, ``1h30m``, ``1.5m`` or plain seconds."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise UsageError(f"{flag} {text}: expected a duration like 90s, 10m or 1h30m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(number) * scale[unit] for number, unit in parts)


def version_text() -> str:
    from steps import __version__

    return f"gitops-steps {__version__} (python {sys.version.split()[0]})"
