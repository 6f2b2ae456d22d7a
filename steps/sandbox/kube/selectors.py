"""Label and field selectors, parsed the way the API server parses them.

Field selectors only accept the field labels the real server supports for a
kind, so a stage relying on an unsupported one fails here as it would there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from steps.sandbox.kube.apierrors import ApiError, bad_request

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_OP_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
# Field selector values may hold anything ("apps/v1", "default/web"); \, \= \\ escape.
_FIELD_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)(.*)$")

# Field labels per kind beyond metadata.name and metadata.namespace.
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
    "Job": ("status.successful",),
    "Node": ("spec.unschedulable",),
}


def split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_check(key: str, op: str, values: set[str]) -> Matcher:
    def check(labels: Mapping[str, Any]) -> bool:
        if op == "in":
            return labels.get(key) in values
        if op == "notin":
            return labels.get(key) not in values
        if op == "absent":
            return key not in labels
        return key in labels

    return check


def _field_check(path: str, value: str, negate: bool) -> Matcher:
    def check(obj: Mapping[str, Any]) -> bool:
        return (_field_value(obj, path) == value) != negate

    return check


def label_matcher(text: str | None) -> Matcher:
    """A predicate over a label map; 400 on a selector the server would reject."""
    if not text:
        return lambda labels: True
    checks: list[Matcher] = []
    for term in split_terms(text):
        match = _OP_RE.match(term)
        if match:
            key, op, value = match.groups()
            checks.append(_label_check(key, "in" if op != "!=" else "notin", {value}))
            continue
        match = _SET_RE.match(term)
        if not match:
            raise bad_request(f"unable to parse requirement: invalid label selector {term!r}")
        bang, key, op, values = match.groups()
        if op:
            if bang:
                raise bad_request(f"unable to parse requirement: {term!r}")
            options = {v.strip() for v in values.split(",") if v.strip()}
            checks.append(_label_check(key, op, options))
        else:
            checks.append(_label_check(key, "absent" if bang else "present", set()))
    return lambda labels: all(check(labels) for check in checks)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    """A structured ``LabelSelector`` (matchLabels / matchExpressions) against labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op = expression.get("key", ""), expression.get("operator", "")
        values = expression.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_matcher(text: str | None, kind: str) -> Matcher:
    """A predicate over a whole object; 400 naming an unsupported field label."""
    if not text:
        return lambda obj: True
    allowed = ("metadata.name", "metadata.namespace", *FIELD_LABELS.get(kind, ()))
    checks: list[Matcher] = []
    for term in split_terms(text):
        match = _FIELD_RE.match(term)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        path, op, value = match.groups()
        value = re.sub(r"\\(.)", r"\1", value.strip())
        if path not in allowed:
            raise ApiError(
                400,
                "BadRequest",
                f'Unable to find "{kind}" that match label selector "", field selector '
                f'"{text}": field label not supported: {path}',
            )
        checks.append(_field_check(path, value, op == "!="))
    return lambda obj: all(check(obj) for check in checks)
