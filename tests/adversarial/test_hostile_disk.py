"""A bad disk: a real member on a tiny tmpfs that fills up while it mines and
while it syncs, one whose database is made immutable (``chattr +i``) under
it, and one whose data directory is deleted while it runs.

Each time the member says what happened in one line (no traceback, no
flood) and stops with a non-zero exit; a restart once the disk is writable
again loads every cheese the API ever reported: no hole, no ``--reindex``.
Needs root for ``mount`` and ``chattr``; each test says why when it skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from typing import List

import pytest
from procs import Proc, free_port, http_json, wait_until

from cheesecoin.storage.sqlite import open_stack
from cheesecoin.testing.chain import make_network, payment_stack

pytestmark = pytest.mark.slow

NET = make_network("diskfault", bits=1, timestamp=int(time.time()) - 10**6)
EXIT_FATAL = 3  # cheesecoin.services.FatalStop.EXIT_CODE


@pytest.fixture
def network_file(tmp_path) -> str:
    path = tmp_path / "net.json"
    path.write_text(json.dumps(NET.blue_cheese))
    return str(path)


@pytest.fixture
def small_disk(tmp_path):
    """A 192 KiB tmpfs (a full disk within seconds); unmounted after the test."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def start(procs: list, cwd, data_dir: str, network_file: str, api: int, *extra: str) -> Proc:
    options = [
        "--network",
        network_file,
        "--data-dir",
        data_dir,
        "--port",
        str(free_port()),
        "--interface",
        "127.0.0.1",
        "--api-port",
        str(api),
        "--miner-port",
        str(free_port()),
        *extra,
    ]
    proc = Proc.twistd("cheesemember", options, str(cwd), name=f"member-{len(procs)}")
    procs.append(proc)
    proc.wait_for("HTTP API on", timeout=60)
    return proc


class HeightWatch:
    """Polls the API in a thread: the highest (height, tip) it ever reported."""

    def __init__(self, api: int) -> None:
        self.url = f"http://127.0.0.1:{api}/api/status"
        self.seen: List[tuple] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                status = http_json(self.url, timeout=2)
                self.seen.append((status["height"], status["tip"]))
            except Exception:
                pass
            time.sleep(0.02)

    def stop(self) -> tuple:
        self.running = False
        self.thread.join(5)
        return max(self.seen) if self.seen else (0, NET.smell)


def wait_exit(proc: Proc, timeout: float = 60) -> int:
    try:
        return proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the member did not stop:\n{proc.output()[-3000:]}")


def one_fatal_line(proc: Proc, *needles: str) -> str:
    text = proc.output()
    assert "Traceback" not in text, text[-3000:]
    lines = [ln for ln in text.splitlines() if "#critical]" in ln]
    assert len(lines) == 1, text[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def restart_shows_everything(
    procs: list, cwd, data_dir: str, network_file: str, reported: tuple
) -> None:
    api = free_port()
    proc = start(procs, cwd, data_dir, network_file, api)
    status = http_json(f"http://127.0.0.1:{api}/api/status")
    assert status["height"] >= reported[0]
    stack_tip = http_json(f"http://127.0.0.1:{api}/api/cheese/{reported[0]}")["cheese"]["smell"]
    assert stack_tip == reported[1]  # the very cheese the API showed is there
    assert "--reindex" not in proc.output()
    proc.stop()


def test_a_full_disk_while_mining(tmp_path, small_disk, network_file, procs) -> None:
    data = str(small_disk / "data")
    api = free_port()
    proc = start(procs, tmp_path, data, network_file, api, "--mine", "--mining-workers", "1")
    watch = HeightWatch(api)
    code = wait_exit(proc)
    reported = watch.stop()
    assert code == EXIT_FATAL
    one_fatal_line(proc, f"The disk holding {data} is full", "stopping")
    # More room, then start again: everything the API showed is there.
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    restart_shows_everything(procs, tmp_path, data, network_file, reported)


def test_a_full_disk_while_syncing(tmp_path, small_disk, network_file, procs) -> None:
    source_dir = str(tmp_path / "source")
    stack = open_stack(source_dir, NET)
    for cheese in payment_stack(NET, 400, 3, n_keys=4)[1:]:
        stack.add_cheese(cheese)
    stack.close()
    source_api = free_port()
    source_port = free_port()
    source = Proc.twistd(
        "cheesemember",
        [
            "--network",
            network_file,
            "--data-dir",
            source_dir,
            "--port",
            str(source_port),
            "--interface",
            "127.0.0.1",
            "--api-port",
            str(source_api),
            "--miner-port",
            str(free_port()),
        ],
        str(tmp_path),
        name="source",
    )
    procs.append(source)
    source.wait_for("HTTP API on", timeout=60)
    data = str(small_disk / "data")
    api = free_port()
    proc = start(procs, tmp_path, data, network_file, api, "--connect", f"127.0.0.1:{source_port}")
    watch = HeightWatch(api)
    code = wait_exit(proc)
    reported = watch.stop()
    assert code == EXIT_FATAL
    one_fatal_line(proc, "is full", "stopping")
    assert proc.output().count("Sync from") <= 3  # no flood
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    restart_shows_everything(procs, tmp_path, data, network_file, reported)


def test_an_immutable_database(tmp_path, network_file, procs) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("no chattr on this machine")
    data = tmp_path / "data"
    data.mkdir()
    probe = data / "probe"
    probe.write_text("")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not allowed here (needs root and a file system with attributes)")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.unlink()
    api = free_port()
    proc = start(procs, tmp_path, str(data), network_file, api, "--mine", "--mining-workers", "1")
    watch = HeightWatch(api)
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{api}/api/status")["height"] >= 5,
        timeout=60,
        what="mining",
    )
    # The database and its write-ahead log (not the -shm index, which SQLite maps into memory).
    files = [str(data / n) for n in ("stack.sqlite3", "stack.sqlite3-wal") if (data / n).exists()]
    subprocess.run(["chattr", "+i", *files], check=True)
    try:
        code = wait_exit(proc)
        reported = watch.stop()
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    assert code == EXIT_FATAL
    one_fatal_line(proc, "stopping")
    restart_shows_everything(procs, tmp_path, str(data), network_file, reported)


def test_a_data_directory_deleted_while_running(tmp_path, network_file, procs) -> None:
    data = tmp_path / "data"
    api = free_port()
    proc = start(procs, tmp_path, str(data), network_file, api, "--mine", "--mining-workers", "1")
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{api}/api/status")["height"] >= 3,
        timeout=60,
        what="mining",
    )
    shutil.rmtree(data)
    started = time.monotonic()
    code = wait_exit(proc, timeout=70)
    assert time.monotonic() - started < 60  # noticed within a minute
    assert code == EXIT_FATAL
    one_fatal_line(proc, f"The database {data / 'stack.sqlite3'} is gone", "stopping")
