"""Answers the server computes rather than stores: reviews, tokens, older versions.

``kubectl auth whoami`` (SelfSubjectReview), ``kubectl auth can-i``
(SelfSubjectAccessReview), ``kubectl create token`` (TokenRequest) and
``autoscaling/v1`` HorizontalPodAutoscalers, converted to and from the stored
``autoscaling/v2`` the way the real conversion does for the CPU target.
The sandbox has no authorization: every caller is an administrator.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

__all__ = ["hpa_from_v1", "hpa_to_v1", "review", "token_request"]

ADMIN = {
    "username": "kubernetes-admin",
    "groups": ["kubeadm:cluster-admins", "system:authenticated"],
}


def review(kind: str, api_version: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """The answer to a POSTed review: who you are, or that you may."""
    answer: dict[str, Any] = {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": None},
        "spec": (body or {}).get("spec") or {},
    }
    if kind == "SelfSubjectReview":
        answer.pop("spec")
        answer["status"] = {"userInfo": dict(ADMIN)}
    elif kind == "TokenReview":
        answer["status"] = {"authenticated": True, "user": dict(ADMIN), "audiences": []}
    else:
        answer["status"] = {"allowed": True, "reason": "sandbox: every caller is an admin"}
    return answer


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_request(
    namespace: str, name: str, uid: str, body: dict[str, Any] | None, now: float
) -> dict[str, Any]:
    """A TokenRequest answered with an unsigned JWT for the service account."""
    spec = dict((body or {}).get("spec") or {})
    seconds = int(spec.get("expirationSeconds") or 3600)
    audiences = spec.get("audiences") or ["https://kubernetes.default.svc"]
    spec.update(expirationSeconds=seconds, audiences=audiences)
    spec.setdefault("boundObjectRef", None)
    issued = int(now)
    claims = {
        "aud": audiences,
        "exp": issued + seconds,
        "iat": issued,
        "iss": "https://kubernetes.default.svc",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.sandbox"
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued + seconds))
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }


def _cpu_utilization(metrics: list[dict[str, Any]], field: str) -> int | None:
    """The CPU averageUtilization of a v2 metric list (``target`` or ``current``)."""
    for metric in metrics:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            value = (resource.get(field) or {}).get("averageUtilization")
            return int(value) if value is not None else None
    return None


def hpa_from_v1(obj: Any) -> Any:
    """An autoscaling/v1 HPA as the stored autoscaling/v2 one."""
    if not isinstance(obj, dict):
        return obj
    out = json.loads(json.dumps(obj))
    out["apiVersion"] = "autoscaling/v2"
    spec = out.get("spec")
    if isinstance(spec, dict) and "targetCPUUtilizationPercentage" in spec:
        percent = spec.pop("targetCPUUtilizationPercentage")
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": percent},
                },
            }
        ]
    if isinstance(out.get("status"), dict):
        out["status"].pop("currentCPUUtilizationPercentage", None)
    return out


def hpa_to_v1(obj: Any) -> Any:
    """A stored autoscaling/v2 HPA as autoscaling/v1 shows it."""
    if not isinstance(obj, dict) or obj.get("kind") == "Status":
        return obj
    out = json.loads(json.dumps(obj))
    if "apiVersion" in out:
        out["apiVersion"] = "autoscaling/v1"
    spec = out.get("spec")
    if isinstance(spec, dict):
        percent = _cpu_utilization(spec.pop("metrics", None) or [], "target")
        spec.pop("behavior", None)
        if percent is not None:
            spec["targetCPUUtilizationPercentage"] = percent
    status = out.get("status")
    if isinstance(status, dict):
        current = _cpu_utilization(status.pop("currentMetrics", None) or [], "current")
        status.pop("conditions", None)
        if current is not None:
            status["currentCPUUtilizationPercentage"] = current
    return out
