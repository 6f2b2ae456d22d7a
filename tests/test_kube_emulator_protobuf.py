"""The emulator's protobuf body decoder, on bodies built by hand from the wire format.

Each case spells its bytes with the helpers below (tag = field number << 3 | wire
type; https://protobuf.dev/programming-guides/encoding/), so an expected dict is
checked against bytes we can read, not against another decoder.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from steps.sandbox.kube import protobuf


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers are ten-byte two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def vint(number: int, value: int) -> bytes:
    return varint(number << 3 | 0) + varint(value)


def ld(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def fixed64(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 1) + payload


def fixed32(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 5) + payload


def entry(number: int, key: str, value: bytes | str) -> bytes:
    return ld(number, ld(1, key) + ld(2, value))


def body(api_version: str, kind: str, raw: bytes, **extra: str) -> bytes:
    """``k8s\\0`` + runtime.Unknown{typeMeta{apiVersion=1, kind=2}, raw=2, encoding=3, type=4}."""
    envelope = ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw)
    envelope += ld(3, extra.get("encoding", "")) + ld(4, extra.get("ctype", ""))
    return protobuf.MAGIC + envelope


META = ld(1, ld(1, "cfg") + ld(3, "ns1") + ld(8, b""))  # ObjectMeta{name, namespace, zero Time}

SCALARS = {
    "string": (ld(1, "x"), "x"),
    "empty string dropped (omitempty)": (ld(1, ""), None),
    "bool": (vint(2, 1), True),
    "int32": (vint(3, 7), 7),
    "negative int32 (sign-extended)": (vint(3, -5), -5),
    "int64 beyond 32 bits": (vint(4, 1 << 40), 1 << 40),
    "bytes are base64": (ld(5, b"\x00\xff"), "AP8="),
    "double (64-bit)": (fixed64(6, struct.pack("<d", 2.5)), 2.5),
    "float (32-bit)": (fixed32(7, struct.pack("<f", 0.5)), 0.5),
    "pointer int32 keeps its zero": (vint(8, 0), 0),
    "plain int32 zero dropped": (vint(3, 0), None),
}
SCALAR_SPEC = (
    "1 s string; 2 b bool; 3 i int32; 4 l int64; 5 by bytes; 6 d double; 7 f float; 8 p ?int32"
)
FIELD_NAMES = {1: "s", 2: "b", 3: "i", 4: "l", 5: "by", 6: "d", 7: "f", 8: "p"}


@pytest.fixture
def scalar_message(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(protobuf.protoschema.MESSAGES, "Scalars", SCALAR_SPEC)
    protobuf.schema.cache_clear()
    yield "Scalars"  # type: ignore[misc]
    protobuf.schema.cache_clear()


@pytest.mark.parametrize(("data", "expected"), SCALARS.values(), ids=list(SCALARS))
def test_each_wire_type_decodes_to_its_json_value(
    scalar_message: str, data: bytes, expected: Any
) -> None:
    name = FIELD_NAMES[data[0] >> 3]
    decoded = protobuf.decode(scalar_message, data)
    assert decoded == ({} if expected is None else {name: expected})


def test_a_configmap_body_becomes_the_json_dict() -> None:
    raw = META + entry(2, "a", "1") + entry(2, "b", "") + entry(3, "bin", b"\x01") + vint(4, 0)
    assert protobuf.decode_body(body("v1", "ConfigMap", raw)) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cfg", "namespace": "ns1", "creationTimestamp": None},
        "data": {"a": "1", "b": ""},
        "binaryData": {"bin": "AQ=="},
        "immutable": False,  # *bool: an explicit false is kept
    }


def test_nested_messages_repeated_fields_quantities_and_int_or_string() -> None:
    port = ld(6, vint(3, 8080) + ld(4, "TCP"))  # ContainerPort{containerPort, protocol}
    limits = entry(1, "memory", ld(1, "64Mi"))  # ResourceRequirements.limits[memory]
    container = ld(1, "web") + ld(2, "nginx") + ld(3, "nginx") + ld(3, "-g") + port
    container += ld(8, limits)
    template = ld(2, ld(2, container))  # PodTemplateSpec.spec.containers
    strategy = ld(2, ld(1, vint(1, 1) + ld(3, "25%")) + ld(2, vint(1, 0) + vint(2, 1)))
    spec = vint(1, 0) + ld(3, template) + ld(4, ld(1, "RollingUpdate") + strategy)
    decoded = protobuf.decode_body(body("apps/v1", "Deployment", META + ld(2, spec) + ld(3, b"")))
    assert decoded["spec"] == {
        "replicas": 0,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx",
                        "command": ["nginx", "-g"],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"memory": "64Mi"}},
                    }
                ]
            }
        },
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1},
        },
    }
    assert decoded["status"] == {}


def test_time_is_rfc3339_and_inline_structs_join_their_parent() -> None:
    probe = ld(1, ld(2, ld(1, "/healthz") + ld(2, vint(1, 0) + vint(2, 8080))))  # handler.httpGet
    container = ld(1, "c") + ld(10, probe + vint(2, 3))
    meta = ld(1, ld(1, "j") + ld(9, vint(1, 1767225600) + vint(2, 5)))  # deletionTimestamp
    pod = ld(2, ld(2, container))
    raw = meta + ld(2, ld(6, pod))  # JobSpec.template
    decoded = protobuf.decode_body(body("batch/v1", "Job", raw))
    assert decoded["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:00Z"
    probe_json = decoded["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe_json == {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3}


def test_packed_repeated_numbers_are_read() -> None:
    # TokenRequestSpec has no packed field; a repeated int64 in a test message does.
    protobuf.protoschema.MESSAGES["Packed"] = "1 n []int64"
    protobuf.schema.cache_clear()
    try:
        assert protobuf.decode("Packed", ld(1, varint(1) + varint(300))) == {"n": [1, 300]}
        assert protobuf.decode("Packed", vint(1, 2) + vint(1, 3)) == {"n": [2, 3]}
    finally:
        del protobuf.protoschema.MESSAGES["Packed"]
        protobuf.schema.cache_clear()


REFUSED = {
    "unknown field in a nested message": (
        body("v1", "ConfigMap", ld(1, ld(1, "x") + ld(99, "?"))),
        "ObjectMeta field 99 (wire type 2) is not one the sandbox emulator knows",
    ),
    "unknown top-level field": (
        body("v1", "Secret", META + vint(42, 1)),
        "Secret field 42 (wire type 0)",
    ),
    "wrong wire type for a string": (
        body("v1", "Namespace", ld(1, vint(1, 5))),
        "ObjectMeta.name (field 1): wire type 0 for a string",
    ),
    "truncated length": (body("v1", "ConfigMap", b"\x0a\x05ab"), "truncated length-delimited"),
    "group wire type": (body("v1", "ConfigMap", b"\x0b"), "wire type 3"),
    "no magic prefix": (b'{"kind":"ConfigMap"}', "k8s protobuf prefix"),
    "compressed raw": (body("v1", "ConfigMap", b"", encoding="gzip"), "content encoding 'gzip'"),
    "invalid UTF-8": (body("v1", "Namespace", ld(1, ld(1, b"\xff"))), "not UTF-8"),
}


@pytest.mark.parametrize(("data", "message"), REFUSED.values(), ids=list(REFUSED))
def test_what_cannot_be_decoded_faithfully_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(protobuf.ProtobufError, match=None) as caught:
        protobuf.decode_body(data)
    assert message in str(caught.value)


def test_a_kind_without_a_message_is_an_unknown_kind() -> None:
    with pytest.raises(protobuf.UnknownKind, match=r"example\.com/v1 Widget"):
        protobuf.decode_body(body("example.com/v1", "Widget", b""))


def test_every_message_the_table_names_is_in_the_table() -> None:
    table = protobuf.protoschema.MESSAGES
    for name in table:
        for field in protobuf.schema(name).values():
            for type_ in field.map_types or (field.type,):
                assert type_ in protobuf.SCALAR_WIRE or type_ in table, (name, field)
    assert set(protobuf.protoschema.KINDS.values()) <= set(table)


def test_delete_options_are_read_in_any_group_version() -> None:
    """DeleteOptions is registered in every group version; drain sends it with the pod's."""
    raw = vint(1, 0) + ld(2, ld(1, "uid-1")) + ld(4, "Foreground") + ld(5, "All")
    assert protobuf.decode_body(body("apps/v1", "DeleteOptions", raw)) == {
        "kind": "DeleteOptions",
        "apiVersion": "apps/v1",
        "gracePeriodSeconds": 0,  # *int64: zero means now, not unset
        "preconditions": {"uid": "uid-1"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    }
