"""HTTP/1.1 on sockets (``steps.lib.httpwire``), against scripted answers on loopback.

Each case is the exact bytes a server sends; the transport must read the body
the way HTTP/1.1 frames it (RFC 9112, section 6), reuse the connection only
when the answer allows it, and turn a malformed or cut answer into an
``OSError`` (what ``KubeApi`` retries), never a hang or a wrong body.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence

import pytest

from steps.lib.httpwire import BadResponse, RemoteDisconnected
from steps.lib.kubehttp import Transport

CLOSE = b"<then close>"


class Scripted:
    """Answers each request on a connection with the next scripted bytes; ``None`` closes
    instead of answering, an answer ending in ``CLOSE`` closes once sent."""

    def __init__(self, answers: Sequence[bytes | None]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    request = self._read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer.removesuffix(CLOSE))
                    if answer.endswith(CLOSE):
                        break

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                want = int(line.split(b":")[1])
                while len(body) < want:
                    body += conn.recv(65536)
        return data

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def script() -> Iterator[type[Scripted]]:
    made: list[Scripted] = []

    class Made(Scripted):
        def __init__(self, answers: Sequence[bytes | None]) -> None:
            super().__init__(answers)
            made.append(self)

    yield Made
    for server in made:
        server.close()


def get(server: Scripted, path: str = "/x", preload: bool = True) -> tuple[int, bytes]:
    transport = Transport(f"http://127.0.0.1:{server.port}")
    response = transport.request("GET", path, headers={}, body=None, timeout=5, preload=preload)
    if preload:
        return response.status, response.data
    body = b""
    while chunk := response.read1():
        body += chunk
    return response.status, body


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", b""),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
            b"hello, world",
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    ],
)
@pytest.mark.parametrize("preload", [True, False])
def test_bodies_are_framed_as_http_1_1_says(
    script: type[Scripted], answer: bytes, body: bytes, preload: bool
) -> None:
    server = script([answer])
    status = int(answer.rsplit(b"HTTP/1.1 ", 1)[1][:3])  # the last status line's
    assert get(server, preload=preload) == (status, body)


def test_a_body_up_to_the_close_is_read_whole(script: type[Scripted]) -> None:
    server = script([b"HTTP/1.1 200 OK\r\n\r\nuntil the end" + CLOSE])
    assert get(server) == (200, b"until the end")


def test_kept_alive_connections_are_reused_and_close_is_honoured(script: type[Scripted]) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = script([ok, ok, closing, ok])
    transport = Transport(f"http://127.0.0.1:{server.port}")
    for _ in range(4):
        response = transport.request("GET", "/x", headers={}, body=None, timeout=5)
        assert (response.status, response.data) == (200, b"ok")
    assert server.connections == 2  # one for the first three, a new one after "close"


def test_headers_are_case_insensitive_and_the_request_is_one_framed_message(
    script: type[Scripted],
) -> None:
    server = script([b"HTTP/1.1 429 Too Many\r\nretry-after: 3\r\nContent-Length: 0\r\n\r\n"])
    transport = Transport(f"http://127.0.0.1:{server.port}/base")
    response = transport.request(
        "PATCH", "/p?q=1", headers={"Accept": "application/json"}, body=b"{}", timeout=5
    )
    assert (response.status, response.reason, response.headers.get("Retry-After")) == (
        429, "Too Many", "3",
    )  # fmt: skip
    (request,) = server.requests
    assert request.startswith(b"PATCH /base/p?q=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert request.endswith(b"Content-Length: 2\r\n\r\n{}")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
)
def test_a_malformed_or_cut_answer_is_an_os_error(script: type[Scripted], answer: bytes) -> None:
    server = script([answer + CLOSE])
    with pytest.raises(BadResponse):
        get(server)


def test_no_answer_at_all_is_remote_disconnected(script: type[Scripted]) -> None:
    server = script([None])
    with pytest.raises(RemoteDisconnected):
        get(server)


def test_a_header_value_with_a_line_break_is_refused_before_sending(
    script: type[Scripted],
) -> None:
    server = script([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    transport = Transport(f"http://127.0.0.1:{server.port}")
    with pytest.raises(ValueError, match="invalid HTTP header"):
        transport.request("GET", "/", headers={"X": "a\r\nInjected: 1"}, body=None, timeout=5)
    assert server.requests == []


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/apis/example.com/v1 HTTP/1.1\r\nX: y"),
        ("GET", "/apis/example.com /v1"),
        ("GET", "/apis/example.com/v1\0"),
        ("GET", "/apis/example.com/v1\x7f"),
        ("GET", "/apis/example.com/v1\t"),
        ("GET", "/apis/caf\u00e9/v1"),
        ("GET", ""),
        ("GET\r\nX: y", "/"),
        ("GET /", "/"),
    ],
)
def test_a_method_or_target_that_would_reshape_the_request_line_is_refused_before_sending(
    script: type[Scripted], method: str, target: str
) -> None:
    server = script([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"] * 2)
    transport = Transport(f"http://127.0.0.1:{server.port}")
    with pytest.raises(ValueError, match=r"invalid HTTP (method|request target)"):
        transport.request(method, target, headers={}, body=None, timeout=5)
    response = transport.request("GET", "/fine", headers={}, body=None, timeout=5)
    assert response.status == 200
    assert [request.split(b"\r\n", 1)[0] for request in server.requests] == [b"GET /fine HTTP/1.1"]
