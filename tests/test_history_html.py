"""The gitops-history page, opened in headless Chromium over the DevTools protocol.

Checks: no console error, no request leaves the file (no network, no CDN),
the expected elements are there, and a screenshot shows them in their
colours (read with the small PNG decoder below: zlib only, no dependency).
Chromium is Debian's ``chromium`` package, installed by ``scripts/setup``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_history import UNTIL, Built, built  # noqa: F401  (the module-scoped story)

from steps.history import main
from steps.lib.history_html import (
    LEAD_COLOUR,
    OUTCOME_COLOURS,
    ROLLBACK_COLOUR,
    _label,
    env_build_seconds,
    glance,
    rollback_command,
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--force-color-profile=srgb",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
    "--window-size=1100,1000",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "chromium is not installed: run scripts/setup (as root it installs Debian's "
        "chromium package), or apt-get install -y chromium"
    )


class DevTools:
    """A page target of a headless Chromium, driven over its WebSocket."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method} within {timeout}s")
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply["result"].get("value")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.call("Runtime.evaluate", expression="1")  # drain events queued before this point

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args", []))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
            elif method == "Network.loadingFailed":
                found.append(f"failed load: {params.get('errorText')}")
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    binary = chromium_binary()
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().split()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                pytest.fail(f"chromium did not start (exit {proc.poll()}): {err}")
            time.sleep(0.05)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.loads(reply.read())
        page = next(t for t in targets if t.get("type") == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(f"{domain}.enable")
        tools.call(
            "Emulation.setDeviceMetricsOverride",
            width=1100,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield tools
        tools.ws.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


# --------------------------------------------------------------------------- PNG


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB/RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + predictor) & 0xFF
        previous = line
        if channels == 4:
            rgb = bytearray(width * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = line[0::4], line[1::4], line[2::4]
            rows.append(bytes(rgb))
        else:
            rows.append(bytes(line))
    return width, height, rows


def count_colour(rows: list[bytes], box: dict[str, float], colour: str, tolerance: int = 2) -> int:
    """Pixels of ``colour`` (``#rrggbb``) inside ``box`` (a DOMRect)."""
    want = bytes.fromhex(colour[1:])
    x0, y0 = max(0, int(box["x"])), max(0, int(box["y"]))
    x1, y1 = int(box["x"] + box["width"]), min(len(rows), int(box["y"] + box["height"]))
    found = 0
    for row in rows[y0:y1]:
        for x in range(x0, min(x1, len(row) // 3)):
            pixel = row[3 * x : 3 * x + 3]
            if all(abs(p - w) <= tolerance for p, w in zip(pixel, want, strict=True)):
                found += 1
    return found


def test_png_decoder_reads_what_zlib_wrote() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    width, height = 3, 2
    lines = [b"\x00" + bytes([255, 0, 0] * 3), b"\x02" + bytes([0, 0, 0, 1, 1, 1, 2, 2, 2])]
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )
    assert decode_png(png) == (3, 2, [bytes([255, 0, 0] * 3), bytes([255, 0, 0, 0, 1, 1, 1, 2, 2])])


# --------------------------------------------------------------------------- the page


def test_the_checker_sees_console_errors(browser: DevTools, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><script>console.error('boom')</script>")
    browser.open(page.as_uri())
    assert any("boom" in e for e in browser.errors())


def test_history_page_in_chromium(
    built: Built,  # noqa: F811
    browser: DevTools,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROJECT_ID", "my-proj")
    page = tmp_path / "history.html"
    args = ["--repo", built.repo, "--path", "web", "--since", "2026-03-01", *UNTIL]
    assert main([*args, "--format", "html", "--output", str(page)]) == 0
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")

    browser.open(page.as_uri())
    assert browser.errors() == []
    assert browser.requests() == [page.as_uri()]

    counts = browser.evaluate(
        "JSON.stringify({"
        "cards: document.querySelectorAll('#figures .card').length,"
        "glance: document.querySelector('#glance').innerText,"
        "commands: [...document.querySelectorAll('#attempts td.rollback code')]"
        ".map(c => c.innerText),"
        "rows: document.querySelectorAll('#attempts tbody tr').length,"
        "rollbacks: document.querySelectorAll('#timeline g.rollback').length,"
        "bars: document.querySelectorAll('#leadtime rect.lead').length,"
        "dots: Object.fromEntries(" + json.dumps(list(OUTCOME_COLOURS)) + ".map("
        "o => [o, document.querySelectorAll('#timeline circle.' + o).length])),"
        "links: [...document.querySelectorAll('#attempts a')].map(a => a.href),"
        "figures: document.querySelector('#figures').innerText,"
        "timeline: document.querySelector('#timeline').getBoundingClientRect().toJSON(),"
        "lead: document.querySelector('#leadtime').getBoundingClientRect().toJSON()})"
    )
    seen = json.loads(counts)
    assert (seen["cards"], seen["rows"], seen["rollbacks"], seen["bars"]) == (6, 7, 1, 3)
    assert seen["dots"] == {
        "promoted": 3, "failed": 1, "superseded": 1, "not-promoted": 1, "pending": 1,
    }  # fmt: skip
    a1_build = (
        "https://console.cloud.google.com/cloud-build/builds;region=global/app-build-2"
        "?project=my-proj"
    )
    assert a1_build in seen["links"]
    # The dashboard's glance, and the command that rolls back to each promoted attempt.
    assert "Latest status" in seen["glance"] and "Pass / fail" in seen["glance"]
    assert len(seen["commands"]) == 3
    assert (
        f"gcloud builds triggers run env-candidate --sha={built.shas['A3']} --project=my-proj"
        in seen["commands"]
    )
    for text in ("4.00", "50%", "20m 00s", "p90 30m 00s", "1h 20m", built.shas["A3"][:12]):
        assert text in seen["figures"], text

    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "history.png").write_bytes(shot)
    keep = os.environ.get("SAVE_HISTORY_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(shot)
    width, height, rows = decode_png(shot)
    assert (width, height) == (1100, 1000)
    timeline, lead = seen["timeline"], seen["lead"]
    assert timeline["y"] + timeline["height"] <= height, "the timeline is below the fold"
    for outcome, colour in OUTCOME_COLOURS.items():
        # A dot of radius 6 has about 100 pixels of its colour; the failed,
        # superseded, not-promoted and pending lanes have one dot each.
        assert count_colour(rows, timeline, colour) >= 60, outcome
    assert count_colour(rows, timeline, ROLLBACK_COLOUR) >= 50  # the rollback marker
    assert count_colour(rows, lead, LEAD_COLOUR) >= 3 * 6 * 10  # three bars


def test_rollback_command_names_the_trigger_region_and_project() -> None:
    sha = "a" * 40
    assert rollback_command(sha) == f"gcloud builds triggers run env-candidate --sha={sha}"
    trigger = {"name": "env-prod", "region": "europe-west1", "project": "p"}
    assert rollback_command(sha, trigger) == (
        f"gcloud builds triggers run env-prod --sha={sha} --region=europe-west1 --project=p"
    )
    # 1st-gen triggers live in "global", where gcloud takes no --region.
    assert "--region" not in rollback_command(sha, {"region": "global"})


def test_the_glance_figures() -> None:
    attempts = [  # newest first
        {"commit": "c" * 40, "time": "2026-03-01T10:20:00Z", "outcome": "failed",
         "first_verdict_time": "2026-03-01T10:22:30Z"},   # 150 s
        {"commit": "b" * 40, "time": "2026-03-01T10:10:00Z", "outcome": "superseded",
         "first_verdict_time": "2026-03-01T10:11:00Z"},   # 60 s
        {"commit": "a" * 40, "time": "2026-03-01T10:00:00Z", "outcome": "promoted",
         "first_verdict_time": "2026-03-01T10:01:30Z"},   # 90 s
        {"commit": "9" * 40, "time": "2026-03-01T09:00:00Z", "outcome": "not-promoted"},
    ]  # fmt: skip
    summary = {"outcomes": {"promoted": 1, "superseded": 1, "failed": 1, "pending": 0}}

    assert env_build_seconds(attempts) == [150.0, 60.0, 90.0]
    text = glance(attempts, summary)

    assert ">failed</span>" in text and "cccccccccccc at 2026-03-01T10:20:00Z" in text
    assert "1m 40s" in text  # (150 + 60 + 90) / 3 = 100 s
    assert "2 / 1" in text and "67% passed" in text  # promoted + superseded pass: 2 of 3


def test_the_latest_status_is_a_rollback_re_run_after_the_newest_attempt() -> None:
    attempts = [{"commit": "b" * 40, "time": "2026-03-01T10:10:00Z", "outcome": "promoted"}]
    production = {"candidate": "a" * 40, "since": "2026-03-01T10:30:00Z", "rollback": True}
    summary = {"outcomes": {"promoted": 1, "superseded": 0, "failed": 0}, "production": production}

    text = glance(attempts, summary)

    assert ">rollback</span>" in text and "to aaaaaaaaaaaa at 2026-03-01T10:30:00Z" in text
    # A newer attempt than that rollback is the latest again.
    older = {**production, "since": "2026-03-01T10:00:00Z"}
    assert ">promoted</span>" in glance(attempts, {**summary, "production": older})


def test_tick_labels_show_seconds_when_the_span_is_minutes() -> None:
    start = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC).timestamp()
    assert _label(start + 7, 20) == "10:00:07"
    assert _label(start, 3600) == "03-01 10:00"
    assert _label(start, 5 * 86400) == "2026-03-01"
