"""A cloudbuild.yaml as data: load, check as Cloud Build would, substitute, and
turn into steps with their ``waitFor`` graph (pure, apart from ``load``).

Error texts follow Cloud Build's own wording where it has one (as its API and
the archived cloud-build-local validator word them: ``invalid .steps field:
build step #1 - "id": ...``); where it has none, ours keep the same shape.
Limits: 300 steps, 100 args of at most 10,000 characters, 100 env entries.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steps.cloudbuild import substitutions as subst
from steps.errors import UsageError

MAX_STEPS = 300
MAX_ARGS = 100
MAX_ARG_LENGTH = 10_000
MAX_ENV = 100
RESERVED_PATHS = ("/workspace", "/builder/home", "/builder/outputs", "/var/run/docker.sock")
MAX_TIMEOUT = 86400.0
START = "-"
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
BUILD_FIELDS = {
    "steps", "timeout", "queueTtl", "logsBucket", "options", "substitutions", "tags",
    "serviceAccount", "secrets", "availableSecrets", "artifacts", "images",
    "mavenArtifacts", "pythonPackages", "npmPackages", "goModules", "dependencies",
}  # fmt: skip
STEP_FIELDS = {
    "name", "args", "env", "allowFailure", "allowExitCodes", "dir", "id", "waitFor",
    "entrypoint", "secretEnv", "volumes", "timeout", "script", "automapSubstitutions",
    "results",
}  # fmt: skip
OPTION_FIELDS = {
    "env", "secretEnv", "volumes", "sourceProvenanceHash", "machineType", "diskSizeGb",
    "substitutionOption", "dynamicSubstitutions", "automapSubstitutions",
    "logStreamingOption", "logging", "defaultLogsBucketBehavior", "pool", "pubsubTopic",
    "requestedVerifyOption", "workerPool",
}  # fmt: skip
_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")


def load(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON build config (exit 2 when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"parsing {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"parsing {path}: config cannot be parsed: not a mapping")
    return data


def parse_duration(text: str) -> float:
    """``"600s"`` -> 600.0 (protobuf's JSON form of a Duration)."""
    if not _DURATION.match(text):
        raise ValueError(text)
    return float(text[:-1])


# -- checks ------------------------------------------------------------------


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _unused(where: str, key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"config cannot be parsed: {where}.{key}: unused{hint}"


def step_label(index: int, step: Mapping[str, Any]) -> str:
    ident = step.get("id")
    return f'Step #{index} - "{ident}"' if ident else f"Step #{index}"


def check(
    data: Mapping[str, Any],
    given: Mapping[str, str] | None = None,
    built_ins: Mapping[str, str] | None = None,
    *,
    trigger: bool = False,
) -> Report:
    """Every problem Cloud Build would report before running ``data``.

    ``given`` are the substitutions passed with the build (``--substitutions``);
    with ``trigger`` every built-in may be among them, as a trigger sets them.
    """
    report = Report()
    errors = report.errors
    for key in data:
        if key not in BUILD_FIELDS:
            errors.append(_unused("", key, BUILD_FIELDS))
    options = data.get("options") or {}
    if not isinstance(options, dict):
        errors.append("invalid .options field: expected a mapping")
        options = {}
    for key in options:
        if key not in OPTION_FIELDS:
            errors.append(_unused(".options", key, OPTION_FIELDS))
    _check_durations(data, errors)
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        errors.append("invalid .steps field: no build steps are specified")
        return report
    if len(steps) > MAX_STEPS:
        errors.append(f"invalid .steps field: cannot specify more than {MAX_STEPS} build steps")
    seen_ids: set[str] = set()
    volume_users: dict[str, int] = {}
    for volume in options.get("volumes") or []:
        _check_volume("invalid .options field: ", volume, errors, set(), set())
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            errors.append(f"invalid .steps field: build step {index} is not a mapping")
            continue
        _check_step(index, step, errors, seen_ids)
        names: set[str] = set()
        paths: set[str] = set()
        where = f"invalid .steps field: {_step_ref(index, step)}: "
        for volume in step.get("volumes") or []:
            if _check_volume(where, volume, errors, names, paths):
                volume_users[volume["name"]] = volume_users.get(volume["name"], 0) + 1
    for name, users in sorted(volume_users.items()):
        if users < 2:
            errors.append(
                f'Volume "{name}" is only used by one step (Cloud Build requires each '
                "named volume to be used by at least two build steps)"
            )
    _check_secrets(data, steps, options, errors)
    _check_substitutions(data, options, given or {}, built_ins, report, trigger)
    return report


def _step_ref(index: int, step: Mapping[str, Any]) -> str:
    return f'build step #{index} - "{step.get("id") or ""}"'


def _check_durations(data: Mapping[str, Any], errors: list[str]) -> None:
    places: list[tuple[str, Any]] = [(".timeout", data.get("timeout"))]
    places.append((".queueTtl", data.get("queueTtl")))
    for index, step in enumerate(data.get("steps") or []):
        if isinstance(step, dict):
            places.append((f".steps[{index}].timeout", step.get("timeout")))
    for where, value in places:
        if value is None:
            continue
        if not isinstance(value, str) or not _DURATION.match(value):
            errors.append(
                f"invalid {where} field: Illegal duration format; duration must end with 's' "
                f'(got {value!r}, e.g. "600s")'
            )
        elif where == ".timeout" and parse_duration(value) > MAX_TIMEOUT:
            errors.append("timeout exceeds the timeout limit of 24h0m0s")


def _check_secrets(
    data: Mapping[str, Any], steps: Sequence[Any], options: Mapping[str, Any], errors: list[str]
) -> None:
    defined: list[str] = []
    available = data.get("availableSecrets") or {}
    for item in available.get("secretManager") or []:
        if not item.get("versionName") or not item.get("env"):
            errors.append(
                "invalid .availableSecrets field: secretManager entries need versionName and env"
            )
            continue
        defined.append(str(item["env"]))
    for item in available.get("inline") or []:
        defined.extend(str(k) for k in (item.get("envMap") or {}))
    for index, item in enumerate(data.get("secrets") or []):
        if not item.get("secretEnv"):
            errors.append(f"invalid .secrets field: secret {index} defines no secretEnvs")
        defined.extend(str(k) for k in (item.get("secretEnv") or {}))
    for name in sorted({n for n in defined if defined.count(n) > 1}):
        errors.append(f'invalid .secrets field: secretEnv "{name}" is defined more than once')
    used: set[str] = set(options.get("secretEnv") or [])
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        names = [str(n) for n in step.get("secretEnv") or []]
        for name in sorted({n for n in names if names.count(n) > 1}):
            errors.append(
                f'invalid .secrets field: Step {index} uses the secretEnv "{name}" more than once'
            )
        used.update(names)
    for name in sorted(used - set(defined)):
        errors.append(f'invalid .secrets field: secretEnv "{name}" is used without being defined')
    for name in sorted(set(defined) - used):
        errors.append(f'invalid .secrets field: secretEnv "{name}" is defined without being used')


def _check_step(index: int, step: Mapping[str, Any], errors: list[str], seen: set[str]) -> None:
    where = f"invalid .steps field: build step {index}"
    ref = f"invalid .steps field: {_step_ref(index, step)}"
    for key in step:
        if key not in STEP_FIELDS:
            errors.append(_unused(f".steps[{index}]", key, STEP_FIELDS))
    if not step.get("name"):
        errors.append(f"{where} must specify name")
    args = step.get("args") or []
    if not isinstance(args, list):
        errors.append(f"{ref}: args must be a list of strings")
        args = []
    if len(args) > MAX_ARGS:
        errors.append(f"{where} too many args (max: {MAX_ARGS})")
    for position, arg in enumerate(args):
        if len(str(arg)) > MAX_ARG_LENGTH:
            errors.append(f"{where} arg {position} too long (max: {MAX_ARG_LENGTH})")
    env = step.get("env") or []
    if len(env) > MAX_ENV:
        errors.append(f"{where} too many envs (max: {MAX_ENV})")
    for entry in env:
        if "=" not in str(entry):
            errors.append(f'{ref}: the Env entry "{entry}" must be of the form "KEY=VALUE"')
    env_keys = {str(e).split("=", 1)[0] for e in env}
    for name in step.get("secretEnv") or []:
        if name in env_keys:
            errors.append(f'{ref}: "{name}" is in both env and secretEnv')
    directory = str(step.get("dir") or "")
    if directory and posixpath.normpath(directory).startswith(".."):
        errors.append(f"{ref}: dir cannot refer to the parent directory")
    if step.get("script") is not None:
        for other in ("args", "entrypoint"):
            if step.get(other):
                errors.append(f"{ref}: script and {other} cannot be used together")
    for code in step.get("allowExitCodes") or []:
        if isinstance(code, bool) or not re.fullmatch(r"-?\d+", str(code)):
            errors.append(f"{ref}: allowExitCodes must be integers, got {code!r}")
    ident = step.get("id")
    wait_for = step.get("waitFor")
    if wait_for is not None and not isinstance(wait_for, list):
        errors.append(f"{ref}: waitFor must be a list of step ids")
        wait_for = []
    for other in wait_for or []:
        if other != START and other not in seen:
            named = ref if ident else f"invalid .steps field: build step #{index}"
            errors.append(f'{named} depends on "{other}", which has not been defined')
    if ident:
        if ident == START:
            errors.append(
                f'{ref}: the ID cannot be "-" which is reserved as a dependency for '
                "build steps that should run first"
            )
        elif ident in seen:
            errors.append(f"{ref}: the ID is not unique")
        seen.add(str(ident))


def _check_volume(
    where: str, volume: Any, errors: list[str], names: set[str], paths: set[str]
) -> bool:
    if not isinstance(volume, dict) or not volume.get("name") or not volume.get("path"):
        errors.append(f"{where}volumes must have a name and a path")
        return False
    name, raw_path = str(volume["name"]), str(volume["path"])
    path = posixpath.normpath(raw_path)
    problems = []
    if not _VOLUME_NAME.match(name):
        problems.append(f'volume name "{name}" must match "{_VOLUME_NAME.pattern}"')
    if not raw_path.startswith("/"):
        problems.append(f'volume path "{raw_path}" is not valid, must be absolute')
    elif path in RESERVED_PATHS:
        problems.append(f'volume path "{raw_path}" is reserved')
    elif path.startswith("/cloudbuild/"):
        problems.append(f'volume path "{raw_path}" cannot start with /cloudbuild/')
    if name in names:
        problems.append(f'the Volumes entry must contain unique names ("{name}")')
    if path in paths:
        problems.append(f'the Volumes entry must contain unique paths ("{path}")')
    names.add(name)
    paths.add(path)
    errors.extend(where + problem for problem in problems)
    return not problems


# -- substitutions -----------------------------------------------------------


def substitution_option(data: Mapping[str, Any]) -> str:
    return str((data.get("options") or {}).get("substitutionOption") or "MUST_MATCH")


def is_dynamic(data: Mapping[str, Any]) -> bool:
    return bool((data.get("options") or {}).get("dynamicSubstitutions"))


def _check_substitutions(
    data: Mapping[str, Any],
    options: Mapping[str, Any],
    given: Mapping[str, str],
    built_ins: Mapping[str, str] | None,
    report: Report,
    trigger: bool,
) -> None:
    option = options.get("substitutionOption", "MUST_MATCH")
    if option not in ("MUST_MATCH", "ALLOW_LOOSE"):
        report.errors.append(
            f"invalid .options.substitutionOption field: {option!r} (MUST_MATCH or ALLOW_LOOSE)"
        )
        return
    defaults = data.get("substitutions") or {}
    allowed = subst.BUILT_INS if trigger else subst.OVERRIDABLE
    for key in defaults:
        problem = subst.key_problem(str(key), subst.OVERRIDABLE)
        if problem and problem not in report.errors:
            report.errors.append(problem)
    for key in given:
        problem = subst.key_problem(str(key), allowed)
        if problem and problem not in report.errors:
            report.errors.append(problem)
    if report.errors:
        return
    try:
        resolved = resolve(data, given, built_ins or placeholder_built_ins())
    except UsageError as exc:
        report.errors.append(exc.message)
        return
    for key in resolved.missing:
        report.warnings.append(
            f'key in the template "{key}" is not matched in the substitution data '
            '(ALLOW_LOOSE: it becomes "")'
        )


def placeholder_built_ins() -> dict[str, str]:
    return {name: name.lower() for name in subst.BUILT_INS}


@dataclass
class Resolved:
    """A config with every substitution applied, and the values used."""

    data: dict[str, Any]
    values: dict[str, str]
    user_keys: list[str]
    missing: list[str]
    unused: list[str]


def resolve(
    data: Mapping[str, Any],
    given: Mapping[str, str],
    built_ins: Mapping[str, str],
) -> Resolved:
    """Apply substitutions; under MUST_MATCH a mismatch raises ``UsageError``."""
    dynamic = is_dynamic(data)
    usage = subst.Usage()
    defaults = {str(k): str(v) for k, v in (data.get("substitutions") or {}).items()}
    user = {**defaults, **{k: v for k, v in given.items() if k not in subst.BUILT_INS}}
    overrides = {k: v for k, v in given.items() if k in subst.BUILT_INS}
    values = subst.resolve_values({**built_ins, **overrides}, user, dynamic=dynamic, usage=usage)
    resolved = _walk(
        {k: v for k, v in data.items() if k != "substitutions"}, values, dynamic, usage, ()
    )
    missing = sorted(usage.missing)
    unused = sorted(k for k in user if k not in usage.used)
    if _automaps(data):
        unused = []  # every substitution reaches a step's environment
    for key in missing:
        if not subst.USER_KEY.match(key):
            raise UsageError(
                "invalid value for 'build.substitutions': "
                f'key in the template "{key}" is not a valid built-in substitution'
            )
    if substitution_option(data) == "MUST_MATCH":
        for key in missing:
            raise UsageError(
                f'invalid build: key in the template "{key}" is not matched '
                "in the substitution data"
            )
        for key in unused:
            raise UsageError(
                f'invalid build: key "{key}" in the substitution data is not matched '
                "in the template"
            )
    return Resolved(resolved, values, list(user), missing, unused)


def _automaps(data: Mapping[str, Any]) -> bool:
    steps = [s for s in data.get("steps") or [] if isinstance(s, dict)]
    options = data.get("options") or {}
    return bool(options.get("automapSubstitutions")) or any(
        s.get("automapSubstitutions") for s in steps
    )


def _walk(
    node: Any, values: Mapping[str, str], dynamic: bool, usage: subst.Usage, path: tuple[str, ...]
) -> Any:
    if isinstance(node, str):
        if path[-1:] == ("script",):
            return node
        return subst.expand(node, values, dynamic=dynamic, usage=usage)
    if isinstance(node, list):
        return [_walk(item, values, dynamic, usage, path) for item in node]
    if isinstance(node, dict):
        return {k: _walk(v, values, dynamic, usage, (*path, str(k))) for k, v in node.items()}
    return node


# -- the steps and their graph -------------------------------------------------


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
