"""A cloudbuild.yaml as data: load, check as Cloud Build would, and substitute
(pure, apart from ``load``); ``stepgraph`` turns the result into steps.

How the build is started matters (``STARTED_BY``): ``gcloud builds submit``
reads the config with gcloud's loader (``schema.read_build``) and the service
checks it as sent; a trigger's config is read by the service, which always
runs it with ``dynamicSubstitutions`` ("always enabled for triggered builds",
BuildOptions.dynamicSubstitutions in the API) and ``substitutionOption:
ALLOW_LOOSE`` (issue 16: triggered builds with unused or unmatched keys run),
with the trigger's built-ins set.

Each message keeps Cloud Build's wording; the source is named beside it:
[gcloud] gcloud 528's loader (``googlecloudsdk/api_lib/cloudbuild``),
[cbl] the archived cloud-build-local validator (GoogleCloudPlatform/
cloud-build-local ``validate/validate.go``), [issue] a public issue quoting
the service (URL beside the message).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steps.cloudbuild import schema
from steps.cloudbuild import substitutions as subst
from steps.lib.errors import UsageError

SUBMIT, TRIGGER = "submit", "trigger"
STARTED_BY = (SUBMIT, TRIGGER)
# Uncertain limits. Steps per build: cloud-build-local refused more than 100
# (validate.go maxNumSteps, 2019); we refuse only past 300, this project's
# earlier reading of Cloud Build's quotas page, not confirmed by any public
# error message we found: a config with 101-300 steps may still be refused.
# Characters per arg: cloud-build-local had 4,000; the service refuses past
# 10,000, as users quote it ("invalid .steps field: build step 0 arg 1 too long
# (max: 10000)"), so we take 10,000.
MAX_STEPS = 300
MAX_ARGS = 100  # [cbl] maxNumArgs
MAX_ARG_LENGTH = 10_000
MAX_ENV = 100  # [cbl] maxNumEnvs
MAX_SUBSTITUTIONS = 100  # [cbl] maxNumSubstitutions
# BuildOptions.diskSizeGb in the API (gcloud 528's cloudbuild_v1_messages.py):
# "At present, the maximum disk size is 4000GB; builds that request more than
# the maximum are rejected with an error" (1000GB before). The refusal's exact
# wording is not public: ours.
MAX_DISK_GB = 4000
RESERVED_PATHS = ("/workspace", "/builder/home", "/var/run/docker.sock")  # [cbl]
MAX_TIMEOUT = 86400.0  # [cbl] MaxTimeout, 24h
START = "-"
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # [cbl] validVolumeNameRE
_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
SERVICE_ACCOUNT_LOGGING = (  # [issue] in28minutes/course-material#11, cert-manager#8851
    "if 'build.service_account' is specified, the build must either (a) specify "
    "'build.logs_bucket', (b) use the REGIONAL_USER_OWNED_BUCKET "
    "build.options.default_logs_bucket_behavior option, or (c) use either "
    "CLOUD_LOGGING_ONLY / NONE logging options"
)
LOGS_BUCKET_WITH_CLOUD_LOGGING = (  # [issue] promptdriven/pdd#910
    "build.logs_bucket cannot be used with option CLOUD_LOGGING_ONLY"
)


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
        raise UsageError(f"parsing {path}: Could not parse as a dictionary.")  # [gcloud]
    return data


def parse_duration(text: str) -> float:
    """``"600s"`` -> 600.0 (protobuf's JSON form of a Duration)."""
    if not _DURATION.match(text):
        raise ValueError(text)
    return float(text[:-1])


def go_duration(seconds: float) -> str:
    """600 -> ``10m0s``, as Go prints a ``time.Duration`` (cloud-build-local's %v)."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:  # Go: 500ms, 1.5µs, 20ns
        for unit, scale in (("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
            if seconds * scale >= 1 or unit == "ns":
                return sign + f"{seconds * scale:.6f}".rstrip("0").rstrip(".") + unit
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return sign + text


# -- checks ------------------------------------------------------------------


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # camelCase, as the message holds it


def check(
    data: Mapping[str, Any],
    given: Mapping[str, str] | None = None,
    built_ins: Mapping[str, str] | None = None,
    *,
    started_by: str = SUBMIT,
) -> Report:
    """Every problem Cloud Build would report before running ``data``.

    ``given`` are the substitutions passed with the build (``gcloud builds
    submit --substitutions``, or a trigger's); ``started_by`` is ``submit`` or
    ``trigger``.
    """
    if started_by not in STARTED_BY:
        raise ValueError(started_by)
    reading = schema.read_build(data, wrap_scalars=started_by == SUBMIT)
    report = Report(errors=reading.errors, warnings=reading.warnings, data=reading.data)
    if started_by == TRIGGER:
        options = report.data.setdefault("options", {})
        options["substitutionOption"] = "ALLOW_LOOSE"
        options["dynamicSubstitutions"] = True
    if report.errors:
        return report  # the service never sees a config gcloud cannot read
    data = report.data
    errors = report.errors
    options = data.get("options") or {}
    steps = data.get("steps") or []
    if not steps:
        errors.append("config must list at least one step")  # [gcloud]
        return report
    _check_substitution_keys(data, given or {}, started_by, errors)
    build_timeout = _check_timeouts(data, errors)
    _check_logging(data, options, errors)
    if len(steps) > MAX_STEPS:
        errors.append(f"invalid .steps field: cannot specify more than {MAX_STEPS} build steps")
    seen_ids: set[str] = set()
    for index, step in enumerate(steps):
        _check_step(index, step, errors, seen_ids, build_timeout)
    _check_volumes(options, steps, errors)
    _check_env(options, errors)
    _check_secrets(data, steps, options, errors)
    if not errors:
        _check_substitutions(data, given or {}, built_ins, report)
    return report


def _check_timeouts(data: Mapping[str, Any], errors: list[str]) -> float | None:
    """Build and step timeouts: format, sign, 24 hours, step <= build ([cbl])."""
    build_timeout: float | None = None
    for where in ("timeout", "queueTtl"):
        value = data.get(where)
        if value is None:
            continue
        if not _DURATION.match(value):
            errors.append(
                f"invalid {where} value: Illegal duration format; duration must end with 's'"
            )
            continue
        seconds = parse_duration(value)
        if where == "timeout":
            if seconds > MAX_TIMEOUT:
                errors.append("timeout exceeds the timeout limit of 24h0m0s")
            elif seconds < 0:
                errors.append("invalid timeout: timeout must be >=0")
            else:
                build_timeout = seconds
    return build_timeout


def _check_step_timeout(
    index: int, value: str, build_timeout: float | None, errors: list[str]
) -> None:
    where = f"invalid .timeout in build step #{index}"
    if not _DURATION.match(value):
        errors.append(f"{where}: Illegal duration format; duration must end with 's'")
        return
    seconds = parse_duration(value)
    if seconds > MAX_TIMEOUT:
        errors.append(
            f"{where}: build step timeout {go_duration(seconds)} exceeds the timeout limit "
            "of 24h0m0s"
        )
    elif build_timeout and seconds > build_timeout:
        errors.append(
            f"{where}: build step timeout {go_duration(seconds)} must be <= build timeout "
            f"{go_duration(build_timeout)}"
        )
    elif seconds < 0:
        errors.append(f"{where}: build step timeout must be >0")


def _check_logging(data: Mapping[str, Any], options: Mapping[str, Any], errors: list[str]) -> None:
    logging = options.get("logging")
    if data.get("serviceAccount") and not (
        data.get("logsBucket")
        or options.get("defaultLogsBucketBehavior") == "REGIONAL_USER_OWNED_BUCKET"
        or logging in ("CLOUD_LOGGING_ONLY", "NONE")
    ):
        errors.append(SERVICE_ACCOUNT_LOGGING)
    if data.get("logsBucket") and logging == "CLOUD_LOGGING_ONLY":
        errors.append(LOGS_BUCKET_WITH_CLOUD_LOGGING)
    disk = options.get("diskSizeGb")
    if disk is not None and int(disk) > MAX_DISK_GB:
        errors.append(
            f"invalid .options.diskSizeGb field: {int(disk)} exceeds the maximum of "
            f"{MAX_DISK_GB} GB"
        )


def _check_env(options: Mapping[str, Any], errors: list[str]) -> None:
    env = options.get("env") or []
    if len(env) > MAX_ENV:
        errors.append(f"invalid .options.env field: too many envs (max: {MAX_ENV})")  # [cbl]
    for entry in env:
        if "=" not in entry:
            errors.append(
                # ours, in the shape of the step message ([cbl]): no public wording for options.env
                f'invalid .options.env field: the Env entry "{entry}" must be of the form '
                '"KEY=VALUE"'
            )


def _check_secrets(
    data: Mapping[str, Any], steps: Sequence[Any], options: Mapping[str, Any], errors: list[str]
) -> None:
    """secretEnv defined once, used, not also env ([cbl] checkSecrets)."""
    defined: list[str] = []
    available = data.get("availableSecrets") or {}
    for item in available.get("secretManager") or []:
        if not item.get("versionName") or not item.get("env"):
            errors.append(
                # ours: no public wording
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
        names = list(step.get("secretEnv") or [])
        for name in sorted({n for n in names if names.count(n) > 1}):
            errors.append(
                f'invalid .secrets field: Step {index} uses the secretEnv "{name}" more than once'
            )
        used.update(names)
    for name in sorted(used - set(defined)):
        errors.append(f'invalid .secrets field: secretEnv "{name}" is used without being defined')
    for name in sorted(set(defined) - used):
        errors.append(f'invalid .secrets field: secretEnv "{name}" is defined without being used')


def _step_ref(index: int, step: Mapping[str, Any]) -> str:
    return f'build step #{index} - "{step.get("id") or ""}"'


def _check_step(
    index: int,
    step: Mapping[str, Any],
    errors: list[str],
    seen: set[str],
    build_timeout: float | None,
) -> None:
    """One step's fields ([cbl] CheckBuildSteps, unless marked)."""
    where = f"invalid .steps field: build step {index}"
    ref = f"invalid .steps field: {_step_ref(index, step)}"
    if not step.get("name"):
        errors.append(f"{where} must specify name")
    args = step.get("args") or []
    if len(args) > MAX_ARGS:
        errors.append(f"{where} too many args (max: {MAX_ARGS})")
    for position, arg in enumerate(args):
        if len(arg) > MAX_ARG_LENGTH:
            errors.append(f"{where} arg {position} too long (max: {MAX_ARG_LENGTH})")
    env = step.get("env") or []
    if len(env) > MAX_ENV:
        errors.append(f"{where} too many envs (max: {MAX_ENV})")
    for entry in env:
        if "=" not in entry:
            errors.append(f'{ref}: the Env entry "{entry}" must be of the form "KEY=VALUE"')
    env_keys = {e.split("=", 1)[0] for e in env}
    for name in step.get("secretEnv") or []:
        if name in env_keys:
            errors.append(
                f'invalid .secrets field: step {index} has secret and non-secret env "{name}"'
            )
    directory = str(step.get("dir") or "")
    if directory and posixpath.normpath(directory).startswith(".."):
        # ours: the service's wording is not public
        errors.append(f"{ref}: dir cannot refer to the parent directory")
    if step.get("script") is not None:
        for other in ("args", "entrypoint"):
            if step.get(other):
                # ours: the service's wording is not public
                errors.append(f"{ref}: script and {other} cannot be used together")
    if step.get("timeout") is not None:
        _check_step_timeout(index, step["timeout"], build_timeout, errors)
    ident = step.get("id")
    for other in step.get("waitFor") or []:
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


def _check_volumes(
    options: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], errors: list[str]
) -> None:
    """Volume names, paths, clashes with global volumes, two users ([cbl] checkVolumes)."""
    global_volumes = options.get("volumes") or []
    if global_volumes and len(steps) < 2:
        errors.append("Global volumes defined but there are fewer than two steps")
    problem = _volume_problem(global_volumes)
    if problem:
        errors.append(f"invalid .options.volumes: {problem}")
    names = {v.get("name") for v in global_volumes}
    paths = {v.get("path") for v in global_volumes}
    users: dict[str, int] = {}
    for index, step in enumerate(steps):
        ref = _step_ref(index, step)
        volumes = step.get("volumes") or []
        problem = _volume_problem(volumes)
        if problem:
            errors.append(f"{ref}: {problem}")
            continue
        for volume in volumes:
            if volume["name"] in names:
                errors.append(f'{ref}: volume name "{volume["name"]}" conflicts with global volume')
            elif volume["path"] in paths:
                errors.append(f'{ref}: volume path "{volume["path"]}" conflicts with global volume')
            users[volume["name"]] = users.get(volume["name"], 0) + 1
    for name, count in sorted(users.items()):
        if count < 2:
            errors.append(f'Volume "{name}" is only used by one step')


def _volume_problem(volumes: Sequence[Mapping[str, Any]]) -> str | None:
    names: set[str] = set()
    paths: set[str] = set()
    for volume in volumes:
        name, raw = str(volume.get("name") or ""), str(volume.get("path") or "")
        path = posixpath.normpath(raw) if raw else ""
        if not _VOLUME_NAME.match(name):
            return f'volume name "{name}" does not match "{_VOLUME_NAME.pattern}"'
        if not path.startswith("/"):
            return f'path "{raw}" is not valid, must be absolute'
        if path in RESERVED_PATHS:
            return f'path "{raw}" is reserved'
        if path.startswith("/cloudbuild/"):
            return f'volume path "{raw}" cannot start with /cloudbuild/'
        if name in names:
            return f'volume name "{name}" is defined in more than one volume entry'
        if path in paths:
            return f'volume path "{path}" is defined in more than one volume entry'
        names.add(name)
        paths.add(path)
    return None


# -- substitutions -----------------------------------------------------------


def substitution_option(data: Mapping[str, Any]) -> str:
    return str((data.get("options") or {}).get("substitutionOption") or "MUST_MATCH")


def is_dynamic(data: Mapping[str, Any]) -> bool:
    return bool((data.get("options") or {}).get("dynamicSubstitutions"))


def _check_substitution_keys(
    data: Mapping[str, Any], given: Mapping[str, str], started_by: str, errors: list[str]
) -> None:
    defaults = data.get("substitutions") or {}
    for key in defaults:
        if started_by == SUBMIT and not subst.USER_KEY.match(str(key)):
            # [gcloud] config.FinalizeCloudbuildConfig: built-ins too, in the file
            errors.append(
                f"substitution key {key} does not respect format {subst.USER_KEY.pattern}"
            )
            return  # gcloud stops here: the service never sees the rest
    both = {**{str(k): str(v) for k, v in defaults.items()}, **given}
    if len(both) > MAX_SUBSTITUTIONS:
        errors.append(
            f"invalid .substitutions field: number of substitutions {len(both)} exceeded "
            f"(max: {MAX_SUBSTITUTIONS})"
        )
    allowed = subst.BUILT_INS if started_by == TRIGGER else subst.OVERRIDABLE
    for key, value in both.items():
        problem = subst.key_problem(key, value, allowed)
        if problem and problem not in errors:
            errors.append(problem)


def _check_substitutions(
    data: Mapping[str, Any],
    given: Mapping[str, str],
    built_ins: Mapping[str, str] | None,
    report: Report,
) -> None:
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
    for key in resolved.unused:
        report.warnings.append(
            f'key "{key}" in the substitution data is not matched in the template (ALLOW_LOOSE)'
        )


def placeholder_built_ins() -> dict[str, str]:
    return {name: name.lower() for name in subst.BUILT_INS}


@dataclass
class Resolved:
    """A config with every substitution applied, and the values used."""

    data: dict[str, Any]
    values: dict[str, str]
    missing: list[str]
    unused: list[str]


def resolve(
    data: Mapping[str, Any],
    given: Mapping[str, str],
    built_ins: Mapping[str, str],
) -> Resolved:
    """Apply substitutions to a checked config (``Report.data``).

    Under MUST_MATCH every mismatch is reported in one ``UsageError``.
    """
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
    invalid = [key for key in missing if not subst.USER_KEY.match(key)]
    if invalid:
        # [issue] google/trillian-examples#627: Cloud Build names the first one
        raise UsageError(
            "invalid value for 'build.substitutions': "
            f'key in the template "{invalid[0]}" is not a valid built-in substitution'
        )
    if substitution_option(data) == "MUST_MATCH" and (missing or unused):
        # [cbl] CheckBuild joins every mismatch with ";"
        problems = [
            f'key in the template "{key}" is not matched in the substitution data'
            for key in missing
        ] + [
            f'key "{key}" in the substitution data is not matched in the template' for key in unused
        ]
        raise UsageError("invalid build: " + ";".join(problems))
    return Resolved(resolved, values, missing, unused)


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
