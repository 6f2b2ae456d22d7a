"""The emulator's pure pieces behind kubectl's view: tables, schedules, schemas, back-off.

Expected values are derived by hand from the real code paths each case names;
tests/test_kubectl_conformance.py checks the same behaviour end to end with
the real kubectl.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from steps.sandbox.kube import BEHAVIOR, KubeEmulator, Timings
from steps.sandbox.kube.cronjobs import Schedule, sync_cronjobs
from steps.sandbox.kube.kubelet import go_duration
from steps.sandbox.kube.openapi import OpenApi
from steps.sandbox.kube.printers import human_duration, table, wants_table
from steps.sandbox.kube.resources import Registry
from steps.sandbox.kube.schema import decode_error
from steps.sandbox.kube.structural import validate_custom

MIN, HOUR, DAY = 60, 3600, 86400


# k8s.io/apimachinery/pkg/util/duration.HumanDuration: seconds under 2 minutes,
# minutes+seconds under 10 minutes, minutes under 3 hours, hours+minutes under 8
# hours, hours under 2 days, days+hours under 8 days, days under 2 years.
@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (10 * MIN, "10m"),
        (3 * HOUR - 1, "179m"),
        (3 * HOUR, "3h"),
        (3 * HOUR + 30 * MIN, "3h30m"),
        (47 * HOUR, "47h"),
        (50 * HOUR, "2d2h"),
        (9 * DAY, "9d"),
        (800 * DAY, "2y70d"),
    ],
)
def test_ages_print_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(10, "10s"), (80, "1m20s"), (300, "5m0s"), (0.1, "100ms"), (3725, "1h2m5s")],
)
def test_back_off_is_worded_as_go_prints_durations(seconds: float, shown: str) -> None:
    assert go_duration(seconds) == shown


def test_table_is_negotiated_from_the_accept_header() -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    assert wants_table(accept) == "meta.k8s.io/v1"
    assert wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == (
        "meta.k8s.io/v1beta1"
    )
    assert wants_table("application/json, */*") is None


def _pod(waiting: str | None, restarts: int, ready: bool) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c"}, {"name": "d"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "c", "state": state, "restartCount": restarts, "ready": ready},
                {"name": "d", "state": {"running": {}}, "restartCount": 0, "ready": True},
            ],
        },
    }


def test_pod_rows_follow_print_pod() -> None:
    # printPod: READY counts ready containers; STATUS is a waiting reason when one has it.
    rt = Registry().lookup("", "v1", "pods")
    assert rt is not None
    now = calendar.timegm((2026, 1, 1, 0, 5, 0, 0, 0, 0))
    crashing = table(rt, [_pod("CrashLoopBackOff", 3, False)], now)
    assert [c["name"] for c in crashing["columnDefinitions"][:5]] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert crashing["rows"][0]["cells"][:5] == ["p", "1/2", "CrashLoopBackOff", 3, "5m"]
    healthy = table(rt, [_pod(None, 0, True)], now)
    assert healthy["rows"][0]["cells"][1:3] == ["2/2", "Running"]
    assert healthy["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


@pytest.mark.parametrize(
    ("schedule", "at", "due"),
    [
        ("*/15 * * * *", (2026, 3, 2, 10, 45), True),
        ("*/15 * * * *", (2026, 3, 2, 10, 46), False),
        ("0 9 * * mon-fri", (2026, 3, 2, 9, 0), True),  # a Monday
        ("0 9 * * mon-fri", (2026, 3, 1, 9, 0), False),  # a Sunday
        ("@hourly", (2026, 3, 1, 7, 0), True),
        ("0 0 12 * 5", (2026, 3, 12, 0, 0), True),  # day 12, a Thursday
        ("0 0 12 * 5", (2026, 3, 6, 0, 0), True),  # a Friday: either field, as cron has it
        ("0 0 12 * 5", (2026, 3, 7, 0, 0), False),
        ("30 4 1 jan,jul *", (2026, 7, 1, 4, 30), True),
        ("0 0 * * 7", (2026, 3, 1, 0, 0), True),  # 7 is Sunday too
    ],
)
def test_cron_schedules(schedule: str, at: tuple[int, ...], due: bool) -> None:
    assert Schedule(schedule).matches(datetime(*at, tzinfo=UTC)) is due


def test_the_latest_missed_time_is_found() -> None:
    start = calendar.timegm((2026, 3, 2, 10, 0, 0, 0, 0, 0))
    every_15 = Schedule("*/15 * * * *")
    assert every_15.latest(start, start + 50 * MIN) == start + 45 * MIN
    assert every_15.latest(start, start + 14 * MIN) is None  # 10:00 itself is not after start


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "*/0 * * * *", "0 0 * * funday"])
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Schedule(bad)


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "port": {"x-kubernetes-int-or-string": True},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        ({"size": 3, "color": "red", "tags": ["a", "b"], "port": "http"}, []),
        ({}, [("spec.size", "FieldValueRequired", "Required value")]),
        (
            {"size": 0},
            [
                (
                    "spec.size",
                    "FieldValueInvalid",
                    "Invalid value: 0: spec.size in body should be greater than or equal to 1",
                )
            ],
        ),
        (
            {"size": 11},
            [
                (
                    "spec.size",
                    "FieldValueInvalid",
                    "Invalid value: 11: spec.size in body should be less than or equal to 10",
                )
            ],
        ),
        (
            {"size": "3"},
            [
                (
                    "spec.size",
                    "FieldValueTypeInvalid",
                    'Invalid value: "string": spec.size in body must be of type integer: "string"',
                )
            ],
        ),
        (
            {"size": 1, "color": "green"},
            [
                (
                    "spec.color",
                    "FieldValueNotSupported",
                    'Unsupported value: "green": supported values: "red", "blue"',
                )
            ],
        ),
        (
            {"size": 1, "tags": ["a", "a"]},
            [("spec.tags[1]", "FieldValueDuplicate", 'Duplicate value: "a"')],
        ),
        (
            {"size": 1, "name": "abcd"},
            [("spec.name", "FieldValueTooLong", "Too long: may not be more than 3 bytes")],
        ),
        (
            {"size": 1, "name": "A"},
            [
                (
                    "spec.name",
                    "FieldValueInvalid",
                    "Invalid value: \"A\": spec.name in body should match '^[a-z]+$'",
                )
            ],
        ),
    ],
)
def test_custom_resources_are_validated_against_their_schema(
    spec: dict[str, Any], causes: list[tuple[str, str, str]]
) -> None:
    # apiextensions-apiserver/pkg/apiserver/validation (kube-openapi validate) wording.
    assert validate_custom(SCHEMA, {"apiVersion": "x/v1", "kind": "W", "spec": spec}) == causes


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("YWJj", None),
        ("YQ==", None),
        ("not base64!", "illegal base64 data at input byte 3"),
        ("YQ=", "illegal base64 data at input byte 3"),  # "==" expected: CorruptInputError(len)
        ("YWJ", "illegal base64 data at input byte 0"),  # unpadded quantum: at its start
        ("YQ==x", "illegal base64 data at input byte 4"),  # data after the padding
    ],
)
def test_secret_data_must_decode(data: str, problem: str | None) -> None:
    rt = Registry().lookup("", "v1", "secrets")
    assert rt is not None
    assert decode_error(rt, {"metadata": {"name": "s"}, "data": {"k": data}}) == problem


@pytest.mark.parametrize(
    ("value", "ok"),
    [("500m", True), ("1Gi", True), ("2", True), (1, True), ("1e3", True), ("12XB", False)],
)
def test_quantities_must_parse(value: Any, ok: bool) -> None:
    rt = Registry().lookup("", "v1", "pods")
    assert rt is not None
    pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": value}}}]}}
    assert (decode_error(rt, pod) is None) is ok


def test_openapi_v3_says_the_server_validates_fields() -> None:
    # kubectl's QueryParamVerifierV3 looks for a PATCH operation with this GVK that
    # takes the fieldValidation query parameter (cli-runtime query_param_verifier_v3.go).
    registry = Registry()
    openapi = OpenApi()
    root = openapi.root(registry.all())
    assert "apis/apps/v1" in root["paths"] and "api/v1" in root["paths"]
    found = openapi.document(registry.all(), "apis/apps/v1")
    assert found is not None
    import json

    doc = json.loads(found[0])
    patches = [
        op["patch"]
        for path, op in doc["paths"].items()
        if "patch" in op and path.endswith("/deployments/{name}")
    ]
    assert patches[0]["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    assert "fieldValidation" in [p["name"] for p in patches[0]["parameters"]]
    schemas = doc["components"]["schemas"]
    deployment = next(
        s
        for s in schemas.values()
        if {"group": "apps", "version": "v1", "kind": "Deployment"}
        in s.get("x-kubernetes-group-version-kind", [])
    )
    assert set(deployment["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert "containers" in schemas["io.k8s.api.core.v1.PodSpec"]["required"]
    container_ports = schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert container_ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    core = openapi.document(registry.all(), "api/v1")
    assert core is not None
    service_ports = json.loads(core[0])["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"]
    assert service_ports["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "port"


def test_default_timings_back_off_as_a_kubelet_does() -> None:
    # The kubelet's crash back-off starts at 10 s (pkg/kubelet/kuberuntime, MaxContainerBackOff
    # 300 s): with the default timings a crashed container is not restarted within a second.
    assert (Timings().backoff, Timings().backoff_cap) == (10.0, 300.0)
    with KubeEmulator() as kube:
        api = client.CoreV1Api(
            __import__("kubernetes").config.new_client_from_config(str(kube.kubeconfig))
        )
        api.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "crash", "annotations": {BEHAVIOR: "crash"}},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
            },
        )

        def waiting() -> dict[str, Any] | None:
            pods = kube.objects("pods", "default")
            statuses = (pods[0].get("status") or {}).get("containerStatuses") or [] if pods else []
            state = statuses[0]["state"].get("waiting") if statuses else None
            return statuses[0] if state and state.get("reason") == "CrashLoopBackOff" else None

        status = kube.wait_for(waiting, timeout=10)
        assert (
            "back-off 10s restarting failed container=app" in status["state"]["waiting"]["message"]
        )
        time.sleep(1.0)
        assert waiting() is not None and waiting()["restartCount"] == 1  # type: ignore[index]


def test_cron_controller_runs_the_latest_missed_schedule(kube: KubeEmulator) -> None:
    rt = kube.cluster.registry.lookup("batch", "v1", "cronjobs")
    assert rt is not None
    from steps.sandbox.kube.api import WriteOptions

    cj = kube.cluster.create(
        rt,
        "default",
        {
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "busybox"}],
                            }
                        }
                    }
                },
            },
        },
        WriteOptions(manager="test"),
    )
    created = calendar.timegm(
        time.strptime(cj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    )
    later = created + 11 * MIN  # at least two 5-minute marks have passed; the latest runs
    with kube.cluster.lock:
        sync_cronjobs(kube.controllers, later)
        sync_cronjobs(kube.controllers, later + 1)  # the same time is not run twice
    jobs = [j for j in kube.objects("jobs", "default") if j["metadata"]["name"].startswith("tick-")]
    due = (later // 60 - (later // 60) % 5) * 60
    assert [j["metadata"]["name"] for j in jobs] == [f"tick-{due // 60}"]
    status = kube.objects("cronjobs", "default")[0]["status"]
    assert status["lastScheduleTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due))
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "tick", True)


@pytest.mark.parametrize("tls", [False, True])
def test_a_silent_client_is_let_go_as_kube_apiserver_does(
    kube_factory: Any, tls: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kube-apiserver bounds the TLS handshake and an idle kept-alive connection
    (ReadHeaderTimeout 32 s, IdleTimeout 90 s); the emulator does too, so a client
    that connects and says nothing does not hold a server thread for good. Here
    the limits are cut to 0.2 s: the server must close the connection."""
    import socket
    from urllib.parse import urlsplit

    kube = kube_factory(tls=tls)
    server = kube._server
    assert server is not None
    assert (server.handshake_timeout, server.idle_timeout) == (32.0, 90.0)
    monkeypatch.setattr(server, "handshake_timeout", 0.2)
    monkeypatch.setattr(server, "idle_timeout", 0.2)
    address = urlsplit(kube.url)
    # Closed by the server: EOF, or a reset. A server that waited would let recv
    # time out after 10 s (socket.timeout, which fails the test).
    with (
        socket.create_connection((address.hostname, address.port), timeout=10) as silent,
        contextlib.suppress(ConnectionResetError),
    ):
        assert silent.recv(1) == b""
    # The emulator still serves everyone else.
    from steps.lib.kube_access import Access, connect

    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    assert (api.get("/api/v1/namespaces/default") or {}).get("kind") == "Namespace"
