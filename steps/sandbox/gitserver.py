"""``gitops-sandbox git``: a Git server over smart HTTP, on loopback only.

``git http-backend`` (shipped with git) does the Git work; a small threaded
``http.server`` bridges HTTP to it as CGI, with optional basic auth and
pushes enabled. Repositories are the bare repositories under ``--root``,
served at ``http://127.0.0.1:PORT/<name>``.

It can be stopped and started again on the same port and root, which the
fault tests use to kill the server in the middle of a push. Other faults, for
the adversarial tests: answer every request with a redirect to another origin
(``redirect_to``), handle a push but drop its answer (``drop_answers``),
hold pushes (``delay_receive_pack``, or the in-process ``before_push`` and
``after_push`` callbacks), and refuse pushes from a pre-receive hook that
prints a message (``reject_pushes``).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from urllib.parse import unquote

from steps.sandbox.service import Service

HOST = "127.0.0.1"
_MAX_BODY = 512 * 1024 * 1024


def _git() -> str:
    return shutil.which("git") or "git"


def init_bare(root: Path, name: str) -> Path:
    """Create (if missing) a bare repository ``name`` under ``root``."""
    path = root / name
    if not (path / "HEAD").exists():
        subprocess.run(
            [_git(), "init", "--quiet", "--bare", "--initial-branch=main", str(path)], check=True
        )
    return path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, root: Path, service: GitServer) -> None:
        super().__init__((HOST, port), _Handler)
        self.root = root
        self.service = service
        self.credentials = service.credentials
        self.requests: list[str] = []
        self.authorizations: list[str] = []
        self.pushes = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._bridge()

    def do_POST(self) -> None:
        self._bridge()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read the server's request list instead."""

    def _authorised(self) -> bool:
        expected = self.server.credentials
        if expected is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, expected[0]) and hmac.compare_digest(password, expected[1])

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _bridge(self) -> None:
        path, _, query = self.path.partition("?")
        service = self.server.service
        self.server.requests.append(f"{self.command} {path}")
        if self.headers.get("Authorization"):
            self.server.authorizations.append(f"{self.command} {path}")
        if service.redirect_to:
            self.send_response(302)
            self.send_header("Location", service.redirect_to.rstrip("/") + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "git-upload-pack" in self.path and service.take_fetch_failure():
            self.send_response(503)  # a fetch the server could not serve this time
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self._authorised():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="gitops-sandbox"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self._read_body() if self.command == "POST" else b""
        push = self.command == "POST" and path.endswith("/git-receive-pack")
        number = 0
        if push:
            with self.server.lock:
                self.server.pushes += 1
                number = self.server.pushes
            time.sleep(service.delay_receive_pack)
            if service.before_push:
                service.before_push(number)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GIT_CONFIG_KEY_1": "uploadpack.allowFilter",
            "GIT_CONFIG_VALUE_1": "true",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": self.server.credentials[0] if self.server.credentials else "sandbox",
        }
        if service.reject_pushes is not None:
            hooks = self.server.root / ".sandbox-hooks"
            env["GIT_CONFIG_COUNT"] = "3"
            env["GIT_CONFIG_KEY_2"] = "core.hooksPath"
            env["GIT_CONFIG_VALUE_2"] = str(_write_reject_hook(hooks, service.reject_pushes))
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        done = subprocess.run(
            [_git(), "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        if push and service.after_push:
            service.after_push(number)
        if push and number <= service.drop_answers:
            # The push was handled; the client never hears how it went.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_cgi(done.stdout)

    def _send_cgi(self, output: bytes) -> None:
        head, body = _split_cgi(output)
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "status":
                status = int(value.split()[0])
            elif name.strip():
                headers.append((name.strip(), value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _write_reject_hook(hooks: Path, message: str) -> Path:
    """A hooks directory whose pre-receive prints ``message`` and refuses."""
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / "pre-receive"
    hook.write_text(
        f"#!/bin/sh\ncat >/dev/null\nprintf '%s\\n' {shlex.quote(message)} >&2\nexit 1\n"
    )
    hook.chmod(0o755)
    return hooks


def _split_cgi(output: bytes) -> tuple[str, bytes]:
    """Split CGI output into its header block and body."""
    cuts = [(output.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n")]
    found = [(at, sep) for at, sep in cuts if at >= 0]
    if not found:
        return "Status: 502 Bad Gateway", output
    at, sep = min(found)
    return output[:at].decode("latin-1"), output[at + len(sep) :]


class GitServer(Service):
    """A loopback smart-HTTP Git server; a context manager for tests."""

    def __init__(
        self,
        root: Path,
        port: int = 0,
        *,
        user: str | None = None,
        password: str | None = None,
        delay_receive_pack: float = 0.0,
        redirect_to: str | None = None,
        drop_answers: int = 0,
        fail_fetches: int = 0,
        reject_pushes: str | None = None,
        before_push: Callable[[int], None] | None = None,
        after_push: Callable[[int], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = port
        self.credentials = (user, password or "") if user else None
        self.delay_receive_pack = delay_receive_pack
        self.redirect_to = redirect_to
        """Answer every request with a 302 to this base URL (another origin)."""
        self.drop_answers = drop_answers
        """Handle the first N pushes but close the connection without answering."""
        self.fail_fetches = fail_fetches
        """Answer the first N fetch requests (upload-pack) with 503."""
        self._fetch_lock = threading.Lock()
        self.reject_pushes = reject_pushes
        """Refuse every push from a pre-receive hook printing this message."""
        self.before_push = before_push
        self.after_push = after_push
        """Called (in the server's thread) with the push's number, around receive-pack."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def take_fetch_failure(self) -> bool:
        """Whether this fetch request is one of the ``fail_fetches`` to refuse."""
        with self._fetch_lock:
            if self.fail_fetches <= 0:
                return False
            self.fail_fetches -= 1
            return True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    def init_bare(self, name: str) -> Path:
        return init_bare(self.root, name)

    @property
    def requests(self) -> list[str]:
        return self._server.requests if self._server else []

    @property
    def pushes(self) -> int:
        """How many pushes the server has received so far."""
        return self._server.pushes if self._server else 0

    @property
    def authorized_requests(self) -> list[str]:
        """The requests that carried an ``Authorization`` header."""
        return self._server.authorizations if self._server else []

    def start(self) -> GitServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = _Server(self.port, self.root, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitops-sandbox git",
        description="Serve the bare repositories under --root over smart HTTP on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--root", required=True, help="directory of bare repositories")
    parser.add_argument("--user", help="require basic auth with this user")
    parser.add_argument("--password", help="... and this password")
    parser.add_argument(
        "--init", nargs="+", default=[], metavar="NAME", help="create these bare repositories"
    )
    parser.add_argument(
        "--delay-receive-pack",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each push is handled (for fault tests)",
    )
    parser.add_argument(
        "--redirect-to", metavar="URL", help="answer every request with a 302 to this base URL"
    )
    parser.add_argument(
        "--drop-answers",
        type=int,
        default=0,
        metavar="N",
        help="handle the first N pushes but drop their answers",
    )
    parser.add_argument(
        "--reject-pushes",
        metavar="MESSAGE",
        help="refuse every push from a pre-receive hook that prints MESSAGE",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.user and args.password is None:
        print("gitops-sandbox git: --user needs --password", file=sys.stderr)
        return 2
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    for name in args.init:
        init_bare(root, name)
    server = GitServer(
        root,
        args.port,
        user=args.user,
        password=args.password,
        delay_receive_pack=args.delay_receive_pack,
        redirect_to=args.redirect_to,
        drop_answers=args.drop_answers,
        reject_pushes=args.reject_pushes,
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    server.start()
    print(f"gitops-sandbox git: serving {root} at {server.url}/", flush=True)
    try:
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
