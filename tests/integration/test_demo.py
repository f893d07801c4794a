"""``make demo``: a live network that mines, pays, and stops every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _member_processes(root: str) -> list:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        line
        for line in out.splitlines()
        if root in line and "cheese" in line and "ps -eo" not in line
    ]


def test_demo_mines_pays_and_stops_cleanly_on_sigint(tmp_path):
    root = str(tmp_path / "demo-data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cheesecoin.cli.demo", "--dir", root],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(tmp_path),
    )
    lines = []
    deadline = time.monotonic() + 90
    confirmed = False
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "confirmed" in line and sum("cheese " in ln for ln in lines) >= 3:
            confirmed = True
            break
    assert _member_processes(root), "".join(lines)[-3000:]
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    output = "".join(lines) + rest
    assert confirmed, output[-3000:]
    assert proc.returncode == 0, output[-3000:]
    assert "explorer http://127.0.0.1:" in output
    assert "every process stopped" in output
    time.sleep(0.5)
    assert _member_processes(root) == []
    assert os.path.exists(os.path.join(root, "alice", "wallet.json"))
