"""Cloud Build substitutions: ``$VAR``, ``${VAR}``, ``$$`` and, with
``dynamicSubstitutions``, bash-style parameter expansions (pure).

Expansions supported with ``dynamicSubstitutions: true``: ``${V:off}``,
``${V:off:len}``, ``${V#pat}``, ``${V##pat}``, ``${V%pat}``, ``${V%%pat}``,
``${V/pat/rep}``, ``${V//pat/rep}``, ``${V/#pat/rep}``, ``${V/%pat/rep}``,
``${V^}``, ``${V^^}``, ``${V,}``, ``${V,,}``, ``${V:-default}``,
``${V-default}`` (patterns are shell globs).

Only names of the form ``[A-Z_][A-Z0-9_]*`` are substitution keys: ``$foo``,
``${foo}`` and ``${foo:-x}`` are left alone for the shell (lowercase shell
variables in ``bash -c`` scripts run on Cloud Build unchanged).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from steps.lib.errors import UsageError

BUILT_INS = (
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
)
# Built-ins a build request (gcloud --substitutions) may set; a trigger sets all.
OVERRIDABLE = ("REPO_NAME", "BRANCH_NAME", "TAG_NAME", "REVISION_ID", "COMMIT_SHA", "SHORT_SHA")
USER_KEY = re.compile(r"^_[A-Z0-9_]+$")
KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
_TEMPLATE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_KEY = 100  # cloud-build-local validate.go maxSubstKeyLength
MAX_VALUE = 4000  # cloud-build-local validate.go maxSubstValueLength


@dataclass
class Usage:
    """What expanding templates referred to: keys found and keys missing."""

    used: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


def key_problem(key: str, value: str = "", overridable: Iterable[str] = OVERRIDABLE) -> str | None:
    """Cloud Build's complaint about a substitution, or None.

    Wording: cloud-build-local ``CheckSubstitutionsLoose``, and the service as
    quoted in GoogleCloudPlatform/cortex-data-foundation#21 ("...is not an
    overridable built-in substitutions").
    """
    where = "invalid .substitutions field: "
    if len(key) > MAX_KEY:
        return f'{where}substitution key "{key}" too long (max: {MAX_KEY})'
    if not (USER_KEY.match(key) or key in overridable):
        return (
            f'{where}substitution key "{key}" does not respect format '
            '"^_[A-Z0-9_]+$" and is not an overridable built-in substitutions'
        )
    if len(value) > MAX_VALUE:
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'{where}substitution value "{shown}" too long (max: {MAX_VALUE})'
    return None


def expand(text: str, values: Mapping[str, str], *, dynamic: bool, usage: Usage) -> str:
    """Replace every template in ``text``; unknown keys become "" and are noted."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        if match.group(3) is not None:
            if not KEY.fullmatch(match.group(3)):
                return match.group(0)  # a shell variable, not a substitution
            return _lookup(match.group(3), values, usage)
        body = match.group(2)
        name = _NAME.match(body)
        if name is not None and not KEY.fullmatch(name.group(0)):
            return match.group(0)
        if _NAME.fullmatch(body):
            return _lookup(body, values, usage)
        if not dynamic:
            usage.missing.add(body)
            return ""
        return _expansion(body, values, usage)

    return _TEMPLATE.sub(replace, text)


def _lookup(name: str, values: Mapping[str, str], usage: Usage) -> str:
    if name in values:
        usage.used.add(name)
        return values[name]
    usage.missing.add(name)
    return ""


def _expansion(body: str, values: Mapping[str, str], usage: Usage) -> str:
    name_match = _NAME.match(body)
    if name_match is None:
        usage.missing.add(body)
        return ""
    name, op = name_match.group(0), body[name_match.end() :]
    if op.startswith(":-") or op.startswith("-"):
        default = op[2:] if op.startswith(":-") else op[1:]
        value = values.get(name)
        if name in values:
            usage.used.add(name)
        if value is None or (op.startswith(":-") and value == ""):
            return expand(default, values, dynamic=True, usage=usage)
        return value
    value = _lookup(name, values, usage)
    return apply_operator(value, op, body)


def apply_operator(value: str, op: str, body: str = "") -> str:
    """Apply one bash parameter-expansion operator to ``value``."""
    if op.startswith(":"):
        parts = op[1:].split(":")
        try:
            offset = int(parts[0].strip() or "0")
            length = int(parts[1].strip()) if len(parts) > 1 else None
        except ValueError:
            raise UsageError(f"bad substitution: ${{{body}}}") from None
        start = offset if offset >= 0 else max(len(value) + offset, 0)
        if length is None:
            return value[start:]
        end = start + length if length >= 0 else len(value) + length
        return value[start:end]
    for prefix, handler in _OPERATORS:
        if op.startswith(prefix):
            return handler(value, op[len(prefix) :])
    raise UsageError(f"bad substitution: ${{{body}}}")


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


def _strip_prefix(value: str, pattern: str, longest: bool) -> str:
    regex = _glob(pattern)
    ends: Iterable[int] = range(len(value), -1, -1) if longest else range(len(value) + 1)
    for end in ends:
        if regex.match(value[:end]):
            return value[end:]
    return value


def _strip_suffix(value: str, pattern: str, longest: bool) -> str:
    regex = _glob(pattern)
    starts: Iterable[int] = range(len(value) + 1) if longest else range(len(value), -1, -1)
    for start in starts:
        if regex.match(value[start:]):
            return value[:start]
    return value


def _replace(value: str, spec: str, *, every: bool, anchor: str = "") -> str:
    pattern, _, replacement = spec.partition("/")
    regex = _glob(pattern)
    if anchor == "#":
        for end in range(len(value), -1, -1):
            if regex.match(value[:end]):
                return replacement + value[end:]
        return value
    if anchor == "%":
        for start in range(len(value) + 1):
            if regex.match(value[start:]):
                return value[:start] + replacement
        return value
    out, i = [], 0
    while i <= len(value):
        for end in range(len(value), i - 1, -1):
            if end > i and regex.match(value[i:end]):
                out.append(replacement)
                i = end
                break
        else:
            if i < len(value):
                out.append(value[i])
            i += 1
            continue
        if not every:
            out.append(value[i:])
            return "".join(out)
    return "".join(out)


_OPERATORS: tuple[tuple[str, Callable[[str, str], str]], ...] = (
    ("##", lambda v, p: _strip_prefix(v, p, True)),
    ("#", lambda v, p: _strip_prefix(v, p, False)),
    ("%%", lambda v, p: _strip_suffix(v, p, True)),
    ("%", lambda v, p: _strip_suffix(v, p, False)),
    ("//", lambda v, p: _replace(v, p, every=True)),
    ("/#", lambda v, p: _replace(v, p, every=False, anchor="#")),
    ("/%", lambda v, p: _replace(v, p, every=False, anchor="%")),
    ("/", lambda v, p: _replace(v, p, every=False)),
    ("^^", lambda v, p: v.upper()),
    ("^", lambda v, p: v[:1].upper() + v[1:]),
    (",,", lambda v, p: v.lower()),
    (",", lambda v, p: v[:1].lower() + v[1:]),
)


def resolve_values(
    built_ins: Mapping[str, str],
    user: Mapping[str, str],
    *,
    dynamic: bool,
    usage: Usage,
) -> dict[str, str]:
    """All substitution values; with ``dynamic`` user values may use others."""
    values = {**built_ins, **user}
    if not dynamic:
        return values
    resolved: dict[str, str] = dict(built_ins)
    resolving: list[str] = []

    def resolve(key: str) -> str:
        if key in resolved:
            return resolved[key]
        if key in resolving:
            chain = " -> ".join([*resolving, key])
            raise UsageError(f"invalid substitutions: circular reference {chain}")
        resolving.append(key)
        view = _LazyValues(values, resolve)
        resolved[key] = expand(user[key], view, dynamic=True, usage=usage)
        resolving.pop()
        return resolved[key]

    for key in user:
        resolve(key)
    return resolved


class _LazyValues(Mapping[str, str]):
    """A mapping that resolves user values only when a template reads them."""

    def __init__(self, values: Mapping[str, str], resolve: Callable[[str], str]) -> None:
        self._values = values
        self._resolve = resolve

    def __getitem__(self, key: str) -> str:
        if key not in self._values:
            raise KeyError(key)
        return self._resolve(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def parse_pairs(text: str, what: str = "--substitutions") -> dict[str, str]:
    """``K=V,K2=V2`` (gcloud's ``--substitutions`` form) into a dict."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value
    return pairs
