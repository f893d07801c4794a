"""Starting real trackers and members in subprocesses, for integration tests.

Every service runs as ``twistd -n --pidfile= --logfile=FILE ROLE`` (with this Python)
in its own working directory, on free loopback ports; ``Proc.stop`` ends it
and the ``procs`` fixture (tests/conftest.py) stops whatever a test left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from cheesecoin.util import localports

TWISTD = "from twisted.scripts.twistd import run; run()"  # twistd with this Python
# The worked examples of docs/protocol.md, carried by the repository itself.
VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")


def vector(name: str) -> Any:
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


def free_port() -> int:
    """A free loopback port below the ephemeral range, or from $CHEESECOIN_BASE_PORT up
    (cheesecoin.localports); each handed out once per process."""
    return localports.free_port()


class Proc:
    """One twistd service (or any command) with its log file."""

    def __init__(
        self, args: List[str], cwd: str, name: str, env: Optional[Dict[str, str]] = None
    ) -> None:
        os.makedirs(cwd, exist_ok=True)
        self.name = name
        self.cwd = cwd
        self.log_path = os.path.join(cwd, f"{name}.log")
        self.args = args
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )

    @classmethod
    def twistd(
        cls, role: str, options: List[str], cwd: str, name: Optional[str] = None, **kw: Any
    ) -> "Proc":
        name = name or role
        args = [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={name}.log",
            role,
        ] + options
        proc = cls(args, cwd, name + ".out", **kw)
        proc.log_path = os.path.join(cwd, f"{name}.log")
        proc.out_path = os.path.join(cwd, f"{name}.out.log")
        return proc

    def output(self) -> str:
        text = ""
        for path in {self.log_path, getattr(self, "out_path", self.log_path)}:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in the output; fail if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before {text!r}:\n"
                    f"{self.output()[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name}: no {text!r} after {timeout} s:\n{self.output()[-3000:]}"
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def http_json(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """GET (or POST ``body`` as JSON) and decode the JSON answer; errors raise HTTPError."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def wait_until(
    predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something true; returns that value."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


def run_member(cwd, data, *extra: str) -> subprocess.CompletedProcess:
    """``twistd -n cheesemember`` on ``data`` (ports 0), run to its end: for
    starts that must fail."""
    twistd = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            twistd,
            "-n",
            "--pidfile=",
            "--logfile=-",
            "cheesemember",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--api-port",
            "0",
            "--miner-port",
            "0",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(cwd),
    )
