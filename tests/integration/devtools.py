"""Headless Chromium driven over the DevTools protocol on a pipe, for the explorer tests.

``--remote-debugging-pipe``: JSON messages ended by NUL on file descriptors 3
(commands) and 4 (answers); no extra library. Unlike ``--dump-dom`` with a
virtual time budget, this works with a page that keeps a connection open
(the explorer's event stream).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import threading
import time

CHROMIUM = os.environ.get("CHEESECOIN_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
]


class DevTools:
    """Chromium driven over --remote-debugging-pipe."""

    def __init__(self, profile) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds() -> (
            None
        ):  # in the child: its fd 3 reads our commands, fd 4 writes its answers
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Python's own descriptors are not inheritable (PEP 446): only the two
            # dup2'd ones reach Chromium
            preexec_fn=wire_fds,
            close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._answers: "queue.Queue[dict]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.session = None

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_child, 65536)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    self._answers.put(message)

    def call(
        self, method: str, params: dict = None, session: bool = True, timeout: float = 30.0
    ) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._answers.get(timeout=max(0.01, deadline - time.monotonic()))
            if answer["id"] == self._next:
                assert "error" not in answer, answer
                return answer["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
        )["sessionId"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})[
            "result"
        ].get("value")

    def text(self, element_id: str) -> str:
        return self.js(
            f"(document.getElementById({element_id!r}) || {{}}).textContent || ''"
        ).strip()

    def until(self, predicate, timeout: float, what: str) -> float:
        """Poll ``predicate`` every 20 ms; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {timeout} s")

    def dom(self) -> str:
        return self.js("document.documentElement.outerHTML")

    def screenshot(self, width: int, height: int) -> bytes:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
