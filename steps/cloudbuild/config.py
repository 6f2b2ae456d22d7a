"""A cloudbuild.yaml as data: load, check as Cloud Build would, substitute, and
turn into steps with their ``waitFor`` graph (pure, apart from ``load``).

Error texts follow Cloud Build's (and gcloud's) own wording where it has one;
the limits are those of Cloud Build's documentation (300 steps, 100 args of at
most 10,000 characters, 100 env entries per step).
"""

from __future__ import annotations

import difflib
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
_ENV_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=", re.DOTALL)


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
) -> Report:
    """Every problem Cloud Build would report before running ``data``."""
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
        errors.append("invalid build: Build must have at least one step")
        return report
    if len(steps) > MAX_STEPS:
        errors.append(f"invalid .steps field: build has {len(steps)} steps, max is {MAX_STEPS}")
    secret_names = _defined_secrets(data, errors)
    used_secrets: set[str] = set()
    seen_ids: dict[str, int] = {}
    volume_users: dict[str, int] = {}
    for volume in options.get("volumes") or []:
        _check_volume("options", volume, errors)
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            errors.append(f"invalid .steps field: build step {index} is not a mapping")
            continue
        _check_step(index, step, errors, seen_ids)
        for volume in step.get("volumes") or []:
            if _check_volume(f"build step {index}", volume, errors):
                volume_users[volume["name"]] = volume_users.get(volume["name"], 0) + 1
        for name in step.get("secretEnv") or []:
            used_secrets.add(name)
            if name not in secret_names:
                errors.append(
                    f"invalid .steps field: build step {index} secretEnv {name!r} is not "
                    "defined in availableSecrets or secrets"
                )
    for name in options.get("secretEnv") or []:
        used_secrets.add(name)
        if name not in secret_names:
            errors.append(f"invalid .options field: secretEnv {name!r} is not defined")
    for name in sorted(secret_names - used_secrets):
        errors.append(
            f"invalid build: secret environment variable {name!r} is not used by any step"
        )
    for name, users in sorted(volume_users.items()):
        if users < 2:
            report.warnings.append(
                f"volume {name!r} is used by only one step; Cloud Build requires each "
                "named volume to be used by at least two build steps"
            )
    _check_substitutions(data, options, given or {}, built_ins, report)
    return report


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


def _defined_secrets(data: Mapping[str, Any], errors: list[str]) -> set[str]:
    names: list[str] = []
    available = data.get("availableSecrets") or {}
    for item in available.get("secretManager") or []:
        if not item.get("versionName") or not item.get("env"):
            errors.append(
                "invalid .availableSecrets field: secretManager needs versionName and env"
            )
            continue
        names.append(str(item["env"]))
    for item in available.get("inline") or []:
        names.extend(str(k) for k in (item.get("envMap") or {}))
    for item in data.get("secrets") or []:
        names.extend(str(k) for k in (item.get("secretEnv") or {}))
    for name in {n for n in names if names.count(n) > 1}:
        errors.append(f"invalid build: secret environment variable {name!r} is defined twice")
    return set(names)


def _check_step(
    index: int, step: Mapping[str, Any], errors: list[str], seen: dict[str, int]
) -> None:
    where = f"invalid .steps field: build step {index}"
    for key in step:
        if key not in STEP_FIELDS:
            errors.append(_unused(f".steps[{index}]", key, STEP_FIELDS))
    if not step.get("name"):
        errors.append(f"{where} must specify name")
    args = step.get("args") or []
    if not isinstance(args, list):
        errors.append(f"{where}: args must be a list of strings")
        args = []
    if len(args) > MAX_ARGS:
        errors.append(f"{where} has {len(args)} args, max is {MAX_ARGS}")
    for arg in args:
        if len(str(arg)) > MAX_ARG_LENGTH:
            errors.append(f"{where}: an arg is {len(str(arg))} characters, max is {MAX_ARG_LENGTH}")
    env = step.get("env") or []
    if len(env) > MAX_ENV:
        errors.append(f"{where} has {len(env)} env entries, max is {MAX_ENV}")
    for entry in env:
        if not _ENV_ENTRY.match(str(entry)):
            errors.append(f'{where}: env entry {entry!r} is not of the form "KEY=VALUE"')
    secret_env = step.get("secretEnv") or []
    env_keys = {str(e).split("=", 1)[0] for e in env}
    for name in secret_env:
        if name in env_keys:
            errors.append(f"{where}: {name!r} is in both env and secretEnv")
    if step.get("script") is not None:
        if step.get("args"):
            errors.append(f"{where}: script and args cannot be used together")
        if step.get("entrypoint"):
            errors.append(f"{where}: script and entrypoint cannot be used together")
    for code in step.get("allowExitCodes") or []:
        if isinstance(code, bool) or not re.fullmatch(r"-?\d+", str(code)):
            errors.append(f"{where}: allowExitCodes must be integers, got {code!r}")
    ident = step.get("id")
    wait_for = step.get("waitFor")
    if wait_for is not None:
        if not isinstance(wait_for, list):
            errors.append(f"{where}: waitFor must be a list of step ids")
            wait_for = []
        if "-" in wait_for and len(wait_for) > 1:
            errors.append(f'{where}: waitFor "-" cannot be combined with step ids')
        for other in wait_for:
            if other != "-" and other not in seen:
                if other == ident:
                    errors.append(f"{where} depends on itself")
                else:
                    errors.append(
                        f'{where} depends on step "{other}" which does not exist or '
                        "is not an earlier step"
                    )
    if ident:
        if ident in seen:
            errors.append(
                f'invalid .steps field: build step {index} has the same id "{ident}" '
                f"as build step {seen[ident]}; step ids must be unique"
            )
        else:
            seen[str(ident)] = index


def _check_volume(where: str, volume: Any, errors: list[str]) -> bool:
    if not isinstance(volume, dict) or not volume.get("name") or not volume.get("path"):
        errors.append(f"invalid volume in {where}: volumes must have a name and a path")
        return False
    path = str(volume["path"])
    if not path.startswith("/"):
        errors.append(f"invalid volume in {where}: volume path {path!r} must be absolute")
        return False
    for reserved in RESERVED_PATHS:
        if path.rstrip("/") == reserved or path.startswith(reserved + "/"):
            errors.append(f"invalid volume in {where}: volume path {path!r} is reserved")
            return False
    return True


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
) -> None:
    option = options.get("substitutionOption", "MUST_MATCH")
    if option not in ("MUST_MATCH", "ALLOW_LOOSE"):
        report.errors.append(
            f"invalid .options.substitutionOption field: {option!r} (MUST_MATCH or ALLOW_LOOSE)"
        )
        return
    defaults = data.get("substitutions") or {}
    for key in [*defaults, *given]:
        problem = subst.key_problem(str(key))
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
        report.warnings.append(f'${{{key}}} is not defined: it becomes "" (ALLOW_LOOSE)')


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
    if substitution_option(data) == "MUST_MATCH":
        for key in missing:
            raise UsageError(f'key in the template "{key}" is not a valid built-in substitution')
        for key in unused:
            raise UsageError(f'key "{key}" in the substitution data is not matched in the template')
    return Resolved(resolved, values, list(user), missing, unused)


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
