"""HTTP/1.1 on a socket: the little of it that talking to an API server takes.

A ``Connection`` is TCP, then a proxy's ``CONNECT`` tunnel if any, then TLS if
any; each request goes out in one write, and each answer is read from a
buffered reader with its body framed by ``Content-Length``, chunks, or the
close (RFC 9112, section 6). Ours rather than ``http.client``, whose import
(with the ``email`` package it parses headers with) cost 7 ms on an idle
machine and 15-20 ms under load before every stage's first request.
Everything that goes wrong on the wire is an ``OSError``, which callers retry.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection before answering (often a kept-alive one it dropped)."""


class BadResponse(OSError):
    """An answer that is not HTTP/1.x, or a body cut short: the exchange failed."""


MAX_LINE = 65536
MAX_HEADERS = 100


class Headers:
    """Response headers: names case-insensitive, in the order received."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self._pairs if k.lower() == name), default)


class Connection:
    """One keep-alive connection: TCP, the proxy's tunnel if any, then TLS if any.

    Requests go out in one write (headers and body); answers are read from a
    buffered reader of the socket, with a body by ``Content-Length``,
    chunked, or up to the close, as HTTP/1.1 says (RFC 9112, section 6).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        tunnel: tuple[str, int] | None = None,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.context, self.server_name, self.tunnel = context, server_name, tunnel
        self.sock: socket.socket | None = None
        self._reader: Any = None

    def connect(self) -> None:
        address = (_wire_name(self.host), self.port)  # getaddrinfo takes bytes; typeshed says str
        sock = socket.create_connection(address, self.timeout)  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tunnel is not None:
                self._open_tunnel(sock, *self.tunnel)
            if self.context is not None:
                name = self.server_name or (self.tunnel[0] if self.tunnel else self.host)
                sock = self.context.wrap_socket(sock, server_hostname=_wire_name(name))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._reader = sock.makefile("rb")

    def _open_tunnel(self, sock: socket.socket, host: str, port: int) -> None:
        """``CONNECT host:port`` through the proxy; anything but 200 is a failure."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        reader = sock.makefile("rb", buffering=0)  # unbuffered: TLS starts right after
        try:
            _, status, reason = _status_line(_line(reader))
            _read_headers(reader)
        finally:
            reader.close()
        if status != 200:
            raise OSError(f"Tunnel connection failed: {status} {reason}")

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> RawResponse:
        """Send one request and read the answer's status line and headers."""
        assert self.sock is not None
        for part, what in ((method, "method"), (target, "request target")):
            # As http.client: no space or control byte may reshape the request line.
            if not (part.isascii() and part.isprintable()) or " " in part or not part:
                raise ValueError(f"invalid HTTP {what} {part!r}")
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\0"):
                raise ValueError(f"invalid HTTP header {name!r}")
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + body if body else head)
        return RawResponse(self._reader, method)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        reader, self._reader = self._reader, None
        for part in (reader, sock):
            if part is not None:
                with contextlib.suppress(OSError):
                    part.close()


class RawResponse:
    """Status, headers, and the body as it arrives (``read1``) or whole (``read``)."""

    def __init__(self, reader: Any, method: str) -> None:
        self._reader = reader
        line = reader.readline(MAX_LINE + 1)
        if not line:
            raise RemoteDisconnected("Remote end closed connection without response")
        version, self.status, self.reason = _status_line(line)
        while 100 <= self.status < 200:  # informational: the real answer follows
            _read_headers(reader)
            version, self.status, self.reason = _status_line(_line(reader))
        self.headers = Headers(_read_headers(reader))
        connection = (self.headers.get("Connection") or "").lower()
        self.will_close = "close" in connection or (
            version == "HTTP/1.0" and "keep-alive" not in connection
        )
        self._chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        self._chunk_left = 0
        self._left: int | None = None  # bytes of a Content-Length body still to read
        if method == "HEAD" or self.status in (204, 304):
            self._left = 0
        elif not self._chunked:
            length = self.headers.get("Content-Length")
            if length is not None:
                if not length.strip().isdigit():
                    raise BadResponse(f"bad Content-Length {length!r}")
                self._left = int(length)
            else:
                self.will_close = True  # the body ends with the connection
        self._done = self._left == 0

    def isclosed(self) -> bool:
        """The whole body has been read."""
        return self._done

    def read(self) -> bytes:
        parts = []
        while chunk := self.read1(MAX_LINE):
            parts.append(chunk)
        return b"".join(parts)

    def read1(self, size: int = MAX_LINE) -> bytes:
        """Some of the body, as soon as there is any; ``b""`` at its end."""
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunk(size)
        want = size if self._left is None else min(size, self._left)
        data: bytes = self._reader.read1(want)
        if self._left is not None:
            if not data:
                raise BadResponse(f"answer cut short: {self._left} byte(s) of its body missing")
            self._left -= len(data)
            self._done = self._left == 0
        elif not data:
            self._done = True
        return data

    def _read_chunk(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = _line(self._reader).split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(line, 16)
            except ValueError:
                raise BadResponse(f"bad chunk size {line[:20]!r}") from None
            if self._chunk_left == 0:
                _read_headers(self._reader)  # trailers, then the blank line
                self._done = True
                return b""
        data: bytes = self._reader.read1(min(size, self._chunk_left))
        if not data:
            raise BadResponse("answer cut short inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and _line(self._reader).strip():
            raise BadResponse("chunk not followed by CRLF")
        return data


def _line(reader: Any) -> bytes:
    line: bytes = reader.readline(MAX_LINE + 1)
    if not line:
        raise BadResponse("connection closed mid-answer")
    if len(line) > MAX_LINE:
        raise BadResponse("line too long in the answer")
    return line


def _wire_name(host: str) -> str | bytes:
    """An ASCII host name as bytes, which ``socket`` and ``ssl`` take as they are.

    Given ``str``, both run it through the ``idna`` codec, whose import
    (``stringprep``, ``unicodedata``) is a millisecond and a half of start-up;
    for an ASCII name the codec would return it unchanged.
    """
    return host.encode("ascii") if host.isascii() else host


def _status_line(line: bytes) -> tuple[str, int, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"not an HTTP/1.x answer: {line[:40]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


def _read_headers(reader: Any) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while (line := _line(reader)) not in (b"\r\n", b"\n"):
        if len(pairs) >= MAX_HEADERS:
            raise BadResponse(f"more than {MAX_HEADERS} headers in the answer")
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            pairs.append((name.strip(), value.strip()))
    return pairs
