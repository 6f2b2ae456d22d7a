"""The Build message's fields, and reading a config into them as the Google
Cloud CLI does before ``gcloud builds submit`` sends it (pure).

The field table is the cloudbuild v1 API's ``Build`` message as gcloud 528's
generated client lists it
(``googlecloudsdk/generated_clients/apis/cloudbuild/v1/cloudbuild_v1_messages.py``).
gcloud's loader (``googlecloudsdk/api_lib/cloudbuild/cloudbuild_util.py``,
``_YamlToMessage``) turns snake_case keys into camelCase (map keys such as
substitution names excepted), fills the message, and refuses what is left
over as ``.steps[0].foo: unused`` (several at one place: ``.steps[0].{a,b}:
unused``); an unknown enum value is left over too. Its type errors read
``Expected type <class 'str'> for field args, found 8080 (type <class
'int'>)``. Our messages copy that wording; ``tests/test_cloudbuild_oracle.py``
checks them against gcloud's loader itself.

One difference by how the build is started: gcloud wraps a single value
where a list is expected (``waitFor: x`` is sent as ``["x"]``); a trigger's
config is read by the service, which has no such leniency, so there it is
refused (one message; the service's own wording is not public).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STR, INT, BOOL, FLOAT, BYTES = "str", "int", "bool", "float", "bytes"
MAP_STR, MAP_BYTES = "map:str", "map:bytes"  # map<string, string|bytes>: keys kept as typed


@dataclass(frozen=True)
class Field:
    kind: str  # STR ... , MAP_*, "enum", or a message name
    repeated: bool = False
    values: tuple[str, ...] = ()  # enum values
    output_only: bool = False


def _f(kind: str, repeated: bool = False) -> Field:
    return Field(kind, repeated)


def _enum(*values: str, repeated: bool = False) -> Field:
    return Field("enum", repeated, values)


def _out(kind: str = STR, repeated: bool = False) -> Field:
    return Field(kind, repeated, output_only=True)


_TIMESPAN = {"startTime": _f(STR), "endTime": _f(STR)}
MESSAGES: dict[str, dict[str, Field]] = {
    "Build": {
        "steps": _f("BuildStep", True),
        "timeout": _f(STR),
        "queueTtl": _f(STR),
        "images": _f(STR, True),
        "artifacts": _f("Artifacts"),
        "logsBucket": _f(STR),
        "options": _f("BuildOptions"),
        "substitutions": _f(MAP_STR),
        "tags": _f(STR, True),
        "secrets": _f("Secret", True),
        "availableSecrets": _f("Secrets"),
        "serviceAccount": _f(STR),
        "gitConfig": _f("GitConfig"),
        "dependencies": _f("Dependency", True),
        # Output only: gcloud's loader accepts them, the service ignores them.
        **{
            name: _out()
            for name in (
                "approval",
                "buildTriggerId",
                "createTime",
                "failureInfo",
                "finishTime",
                "id",
                "logUrl",
                "name",
                "projectId",
                "results",
                "sourceProvenance",
                "startTime",
                "status",
                "statusDetail",
                "timing",
                "warnings",
            )
        },
    },
    "BuildStep": {
        "name": _f(STR),
        "args": _f(STR, True),
        "env": _f(STR, True),
        "dir": _f(STR),
        "id": _f(STR),
        "waitFor": _f(STR, True),
        "entrypoint": _f(STR),
        "secretEnv": _f(STR, True),
        "volumes": _f("Volume", True),
        "timeout": _f(STR),
        "script": _f(STR),
        "allowFailure": _f(BOOL),
        "allowExitCodes": _f(INT, True),
        "automapSubstitutions": _f(BOOL),
        **{name: _out() for name in ("exitCode", "pullTiming", "status", "timing")},
    },
    "BuildOptions": {
        "sourceProvenanceHash": _enum(
            "NONE", "SHA256", "MD5", "GO_MODULE_H1", "SHA512", repeated=True
        ),
        "requestedVerifyOption": _enum("NOT_VERIFIED", "VERIFIED"),
        "machineType": _enum(
            "UNSPECIFIED",
            "N1_HIGHCPU_8",
            "N1_HIGHCPU_32",
            "E2_HIGHCPU_8",
            "E2_HIGHCPU_32",
            "E2_MEDIUM",
        ),
        "diskSizeGb": _f(INT),
        "substitutionOption": _enum("MUST_MATCH", "ALLOW_LOOSE"),
        "dynamicSubstitutions": _f(BOOL),
        "automapSubstitutions": _f(BOOL),
        "logStreamingOption": _enum("STREAM_DEFAULT", "STREAM_ON", "STREAM_OFF"),
        "workerPool": _f(STR),
        "pool": _f("PoolOption"),
        "logging": _enum(
            "LOGGING_UNSPECIFIED",
            "LEGACY",
            "GCS_ONLY",
            "STACKDRIVER_ONLY",
            "CLOUD_LOGGING_ONLY",
            "NONE",
        ),
        "env": _f(STR, True),
        "secretEnv": _f(STR, True),
        "volumes": _f("Volume", True),
        "defaultLogsBucketBehavior": _enum(
            "DEFAULT_LOGS_BUCKET_BEHAVIOR_UNSPECIFIED",
            "REGIONAL_USER_OWNED_BUCKET",
            "LEGACY_BUCKET",
        ),
        "enableStructuredLogging": _f(BOOL),
        "dockerDaemon": _enum(
            "DOCKER_DAEMON_UNSPECIFIED", "NO_DOCKER", "NON_PRIVILEGED", "PRIVILEGED"
        ),
        "pubsubTopic": _f(STR),
        "cluster": _f("ClusterOptions"),
        "anthosCluster": _f("AnthosWorkerPool"),
    },
    "Volume": {"name": _f(STR), "path": _f(STR)},
    "PoolOption": {"name": _f(STR), "workerConfig": _f("WorkerConfig")},
    "WorkerConfig": {"diskSizeGb": _f(INT), "memoryGb": _f(FLOAT), "vcpuCount": _f(FLOAT)},
    "ClusterOptions": {"name": _f(STR)},
    "AnthosWorkerPool": {"membership": _f(STR)},
    "Secret": {"kmsKeyName": _f(STR), "secretEnv": _f(MAP_BYTES)},
    "Secrets": {
        "secretManager": _f("SecretManagerSecret", True),
        "inline": _f("InlineSecret", True),
    },
    "SecretManagerSecret": {"versionName": _f(STR), "env": _f(STR)},
    "InlineSecret": {"kmsKeyName": _f(STR), "envMap": _f(MAP_BYTES)},
    "Artifacts": {
        "images": _f(STR, True),
        "objects": _f("ArtifactObjects"),
        "mavenArtifacts": _f("MavenArtifact", True),
        "pythonPackages": _f("PythonPackage", True),
        "npmPackages": _f("NpmPackage", True),
        "goModules": _f("GoModule", True),
    },
    "ArtifactObjects": {"location": _f(STR), "paths": _f(STR, True), "timing": _out("TimeSpan")},
    "TimeSpan": _TIMESPAN,
    "MavenArtifact": {
        name: _f(STR)
        for name in ("repository", "path", "artifactId", "groupId", "version", "deployFolder")
    },
    "PythonPackage": {"repository": _f(STR), "paths": _f(STR, True)},
    "NpmPackage": {"repository": _f(STR), "packagePath": _f(STR)},
    "GoModule": {
        name: _f(STR)
        for name in (
            "repositoryName",
            "repositoryLocation",
            "repositoryProjectId",
            "sourcePath",
            "modulePath",
            "moduleVersion",
        )
    },
    "GitConfig": {"http": _f("HttpConfig")},
    "HttpConfig": {"proxySecretVersionName": _f(STR), "proxySslCaInfo": _f("GCSLocation")},
    "GCSLocation": {"bucket": _f(STR), "object": _f(STR), "generation": _f(INT)},
    "Dependency": {"empty": _f(BOOL), "gitSource": _f("GitSourceDependency")},
    "GitSourceDependency": {
        "repository": _f("GitSourceRepository"),
        "revision": _f(STR),
        "recurseSubmodules": _f(BOOL),
        "depth": _f(INT),
        "destPath": _f(STR),
    },
    "GitSourceRepository": {"url": _f(STR), "developerConnect": _f(STR)},
}
# Keys whose values gcloud leaves as typed (map fields: user names).
SKIP_CAMEL_CASE = ("secretEnv", "secret_env", "substitutions", "envMap", "env_map")
_PY_TYPE = {STR: "<class 'str'>", INT: "(<class 'int'>,)", BOOL: "<class 'bool'>"}


def snake_to_camel(key: str) -> str:
    """``wait_for`` -> ``waitFor``, as gcloud's ``SnakeToCamelString`` (leading ``_`` kept)."""
    stripped = key.lstrip("_")
    lead = key[: len(key) - len(stripped)]
    parts = stripped.split("_")
    return lead + parts[0] + "".join(p.capitalize() for p in parts[1:])


def camel_keys(node: Any) -> Any:
    """Every key in camelCase, except inside map fields (gcloud's ``SnakeToCamel``)."""
    if isinstance(node, dict):
        return {
            snake_to_camel(str(k)) if isinstance(k, str) else k: (
                v if k in SKIP_CAMEL_CASE else camel_keys(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [camel_keys(item) for item in node]
    return node


@dataclass
class Reading:
    """The config as the Build message would hold it, and what did not fit."""

    data: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_build(raw: Mapping[str, Any], *, wrap_scalars: bool = True) -> Reading:
    """Check ``raw`` against the Build message; camelCase keys, wrap scalars.

    ``wrap_scalars``: a single value where a list is expected becomes a
    one-item list (gcloud); otherwise it is an error (a trigger).
    """
    reading = Reading({})
    data = camel_keys(dict(raw))
    if "source" in data:
        reading.errors.append("config cannot specify source")
    reading.data = _message(data, "Build", "", reading, wrap_scalars)
    return reading


def _message(
    node: Mapping[str, Any], name: str, where: str, reading: Reading, wrap: bool
) -> dict[str, Any]:
    fields = MESSAGES[name]
    out: dict[str, Any] = {}
    unused: list[str] = []
    for key, value in node.items():
        spec = fields.get(str(key))
        if spec is None:
            if not (name == "Build" and key == "source"):
                unused.append(str(key))
            continue
        if spec.output_only:
            reading.warnings.append(f"{where}.{key}: output only, ignored by Cloud Build")
            continue
        if spec.kind == "enum" and not _enum_ok(value, spec):
            unused.append(str(key))
            continue
        out[str(key)] = _field(value, spec, f"{where}.{key}", str(key), reading, wrap)
    if unused:
        names = unused[0] if len(unused) == 1 else "{" + ",".join(sorted(unused)) + "}"
        reading.errors.append(f"{where}.{names}: unused")
    return out


def _enum_ok(value: Any, spec: Field) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(isinstance(v, str) and v in spec.values for v in items)


def _field(value: Any, spec: Field, where: str, name: str, reading: Reading, wrap: bool) -> Any:
    if value is None:
        return [] if spec.repeated else None
    if spec.repeated:
        if not isinstance(value, list):
            if not wrap:
                reading.errors.append(
                    f"invalid {where} field: expected a list, got {_shown(value)} "
                    f"(write [{_shown(value)}])"
                )
                return []
            reading.warnings.append(
                f"{where}: a single value where a list is expected "
                f"(gcloud sends [{_shown(value)}]; a trigger refuses it)"
            )
            value = [value]
        out = []
        for position, item in enumerate(value):
            if item is None:
                reading.errors.append(f"Repeated values for field {name} may not be None")
                continue
            out.append(_scalar(item, spec, f"{where}[{position}]", name, reading, wrap))
        return out
    return _scalar(value, spec, where, name, reading, wrap)


def _scalar(value: Any, spec: Field, where: str, name: str, reading: Reading, wrap: bool) -> Any:
    kind = spec.kind
    if kind in MESSAGES or kind in (MAP_STR, MAP_BYTES):
        if value == []:
            return {}  # gcloud reads an empty list as an empty message
        if not isinstance(value, dict):
            # gcloud's own (Python) words, then what they mean
            reading.errors.append(
                f"'{type(value).__name__}' object has no attribute 'items' "
                f"({where} must be a mapping, not {_shown(value)!r})"
            )
            return {}
    if kind in MESSAGES:
        return _message(value, kind, where, reading, wrap)
    if kind in (MAP_STR, MAP_BYTES):
        for item in value.values():
            if kind == MAP_STR:
                _expect(item, STR, "value", reading)
            else:
                _base64(item, reading)
        return {str(k): v for k, v in value.items()}
    if kind == "enum":
        return value
    _expect(value, kind, name, reading)
    return value


def _expect(value: Any, kind: str, name: str, reading: Reading) -> None:
    if kind == STR:
        ok = isinstance(value, str)
    elif kind == BOOL:
        ok = isinstance(value, bool)
    elif kind == INT:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.strip().lstrip("-").isdigit()
        )
    else:  # FLOAT
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        reading.errors.append(
            f"Expected type {_PY_TYPE.get(kind, kind)} for field {name}, "
            f"found {_shown(value)} (type {type(value)!s})"
        )


def _base64(value: Any, reading: Reading) -> None:
    """A secret value: base64 text (an encrypted secret), as gcloud decodes it."""
    text = value if isinstance(value, str) else str(value)
    try:
        base64.b64decode(text, validate=False)
        if not isinstance(value, str):
            raise binascii.Error(f"found {_shown(value)} (type {type(value)!s}), not a string")
    except (binascii.Error, ValueError) as exc:
        message = str(exc)
        if not message.startswith("Invalid base64"):
            message = f"Invalid base64-encoded string: {message}"
        reading.errors.append(message)


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
