"""Protobuf request bodies (`application/vnd.kubernetes.protobuf`) read into JSON dicts.

kubectl 1.32 and later send `kubectl create configmap|secret|deployment|...`
as protobuf; a real API server decodes them for built-in kinds. We decode the
wire format (varint, 64-bit, length-delimited, 32-bit) against the table in
`protoschema` into the dict the same object's JSON body would give, so the
create path after it is the JSON one.

The body is `k8s\\x00` followed by a `runtime.Unknown` envelope: TypeMeta
(apiVersion, kind), `raw` (the object's message) and contentEncoding /
contentType (k8s.io/apimachinery pkg/runtime/serializer/protobuf). A field the
table does not know is refused, naming the message and field number: a real
server would keep it, and silently dropping it would store a different object.
"""

from __future__ import annotations

import base64
import datetime
import json
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from steps.sandbox.kube import protoschema

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
SCALAR_WIRE = {
    "string": LENGTH,
    "bytes": LENGTH,
    "bool": VARINT,
    "int32": VARINT,
    "int64": VARINT,
    "double": FIXED64,
    "fixed64": FIXED64,
    "float": FIXED32,
    "fixed32": FIXED32,
}
ZERO: dict[str, Any] = {"bool": False, "int32": 0, "int64": 0, "double": 0.0, "float": 0.0}


class ProtobufError(ValueError):
    """A body we cannot decode faithfully; the message says where and why."""


class UnknownKind(ProtobufError):
    """A well-formed envelope naming a kind this table has no message for."""


@dataclass(frozen=True)
class Field:
    number: int
    name: str  # JSON name; "_" for a struct inlined into its parent
    type: str  # a scalar or message name (the element type when repeated)
    repeated: bool = False
    map_types: tuple[str, str] | None = None
    keep_zero: bool = False


def parse_spec(spec: str) -> dict[int, Field]:
    """`"1 name string; 2 data map[string]bytes"` -> fields by number."""
    fields: dict[int, Field] = {}
    for entry in spec.split(";"):
        number, name, type_ = entry.split()
        keep_zero = type_.startswith("?")
        type_ = type_.lstrip("?")
        repeated = type_.startswith("[]")
        map_types = None
        if type_.startswith("map["):
            key, value = type_[4:].split("]", 1)
            map_types = (key, value)
        fields[int(number)] = Field(
            int(number), name, type_.removeprefix("[]"), repeated, map_types, keep_zero
        )
    return fields


@cache
def schema(message: str) -> dict[int, Field]:
    return parse_spec(protoschema.MESSAGES[message])


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def read_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """The raw (field number, wire type, value) triples of one message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > len(data):
                raise ProtobufError(f"truncated {size * 8}-bit field {number}")
            value, pos = data[pos : pos + size], pos + size
        elif wire == LENGTH:
            length, pos = read_varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError(f"truncated length-delimited field {number}")
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ProtobufError(f"field {number} has wire type {wire} (groups are not used)")
        out.append((number, wire, value))
    return out


def signed(value: int, bits: int) -> int:
    """A varint read as a two's-complement intN (negative int32s are sign-extended to 64)."""
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32 and not -(1 << 31) <= value < 1 << 31:
        raise ProtobufError(f"int32 out of range: {value}")
    return value


def scalar(type_: str, wire: int, value: int | bytes, where: str) -> Any:
    if SCALAR_WIRE[type_] != wire:
        raise ProtobufError(f"{where}: wire type {wire} for a {type_}")
    if isinstance(value, int):
        if type_ == "bool":
            return value != 0
        return signed(value, 32 if type_ == "int32" else 64)
    if type_ == "string":
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ProtobufError(f"{where}: string is not UTF-8") from None
    if type_ == "bytes":
        return base64.b64encode(value).decode()
    fmt = {"double": "<d", "float": "<f", "fixed64": "<Q", "fixed32": "<I"}[type_]
    return struct.unpack(fmt, value)[0]


def packed(type_: str, data: bytes) -> list[int | bytes]:
    """Elements of a packed repeated numeric field."""
    wire = SCALAR_WIRE[type_]
    if wire == VARINT:
        values: list[int | bytes] = []
        pos = 0
        while pos < len(data):
            value, pos = read_varint(data, pos)
            values.append(value)
        return values
    size = 8 if wire == FIXED64 else 4
    if len(data) % size:
        raise ProtobufError(f"packed {type_} of {len(data)} bytes")
    return [data[i : i + size] for i in range(0, len(data), size)]


def decode(message: str, data: bytes) -> Any:
    """One message's bytes as the JSON value Kubernetes gives it."""
    if message == "Time":
        fields = _decode_object("Time", data)
        if not fields:
            return None  # the zero Time marshals as an empty message; JSON says null
        when = datetime.datetime.fromtimestamp(fields.get("seconds", 0), datetime.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if message == "Quantity":
        return _decode_object("Quantity", data).get("string", "")
    if message == "IntOrString":
        fields = _decode_object("IntOrString", data)
        return fields.get("strVal", "") if fields.get("type") == 1 else fields.get("intVal", 0)
    if message == "FieldsV1":
        raw = _decode_object("FieldsV1", data).get("Raw", "")
        try:
            return json.loads(base64.b64decode(raw) or b"{}")
        except ValueError:
            raise ProtobufError("FieldsV1: Raw is not JSON") from None
    return _decode_object(message, data)


def _decode_object(message: str, data: bytes) -> dict[str, Any]:
    fields = schema(message)
    out: dict[str, Any] = {}
    for number, wire, value in read_fields(data):
        field = fields.get(number)
        if field is None:
            raise ProtobufError(
                f"{message} field {number} (wire type {wire}) is not one the sandbox "
                "emulator knows; refusing rather than dropping it"
            )
        where = f"{message}.{field.name} (field {number})"
        if field.map_types is not None:
            key, item = _map_entry(field.map_types, value, where)
            out.setdefault(field.name, {})[key] = item
        elif field.repeated:
            out.setdefault(field.name, []).extend(_elements(field, wire, value, where))
        elif field.name == "_":
            out.update(_element(field, wire, value, where))
        else:
            out[field.name] = _element(field, wire, value, where)
    for field in fields.values():
        omitempty = field.type in SCALAR_WIRE and not field.repeated and not field.keep_zero
        if omitempty and field.name in out and out[field.name] in ("", 0, False):
            del out[field.name]  # a JSON body would not carry it
    return out


def _element(field: Field, wire: int, value: int | bytes, where: str) -> Any:
    if field.type in SCALAR_WIRE:
        return scalar(field.type, wire, value, where)
    if wire != LENGTH or not isinstance(value, bytes):
        raise ProtobufError(f"{where}: wire type {wire} for a {field.type} message")
    return decode(field.type, value)


def _elements(field: Field, wire: int, value: int | bytes, where: str) -> list[Any]:
    if (
        field.type in SCALAR_WIRE
        and SCALAR_WIRE[field.type] != LENGTH
        and wire == LENGTH
        and isinstance(value, bytes)
    ):
        return [
            scalar(field.type, SCALAR_WIRE[field.type], v, where) for v in packed(field.type, value)
        ]
    return [_element(field, wire, value, where)]


def _map_entry(types: tuple[str, str], value: int | bytes, where: str) -> tuple[str, Any]:
    if not isinstance(value, bytes):
        raise ProtobufError(f"{where}: a map entry must be length-delimited")
    key: Any = ""
    item: Any = None
    for number, wire, raw in read_fields(value):
        if number not in (1, 2):
            raise ProtobufError(f"{where}: map entry field {number}")
        entry = Field(number, "key" if number == 1 else "value", types[number - 1])
        if number == 1:
            key = _element(entry, wire, raw, where)
        else:
            item = _element(entry, wire, raw, where)
    if item is None:  # an absent value is its type's zero
        item = ZERO.get(types[1], "") if types[1] in SCALAR_WIRE else decode(types[1], b"")
    return str(key), item


def decode_body(body: bytes) -> dict[str, Any]:
    """A request body (magic, envelope, object) as the object's JSON dict."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the k8s protobuf prefix")
    envelope = _decode_object(protoschema.ENVELOPE, body[len(MAGIC) :])
    if envelope.get("contentEncoding"):
        raise ProtobufError(f"content encoding {envelope['contentEncoding']!r} is not supported")
    if envelope.get("contentType") not in (None, "", MEDIA_TYPE):
        raise ProtobufError(f"raw content type {envelope['contentType']!r} is not supported")
    meta = envelope.get("typeMeta") or {}
    api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
    message = protoschema.KINDS.get((api_version, kind)) or protoschema.ANY_VERSION.get(kind)
    if message is None:
        raise UnknownKind(f"no protobuf support in the sandbox emulator for {api_version} {kind}")
    obj = decode(message, base64.b64decode(envelope.get("raw", "")))
    return {"kind": kind, "apiVersion": api_version, **obj}
