"""Several trackers (docs/protocol.md section 8, issue 30): two members registered
with two trackers, the first tracker killed, a third member started: the three
find each other through the second tracker and agree on the stack; the dead
tracker is said once per member (lost, or cannot be reached), not at every
retry; the live tracker lists each member's node_id (its identity key), and the
members' links are encrypted."""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adversarial")
)

from procs import Proc, free_port  # noqa: E402
from rawpeer import RawPeer, start_member, wait_until  # noqa: E402

from cheesecoin.testing.chain import make_network, payment_stack  # noqa: E402

pytestmark = pytest.mark.slow

NET = make_network(name="twotrackers", bits=1, timestamp=int(time.time()) - 10**6)
STACK = payment_stack(NET, 8, 0, n_keys=3, seed="two-trackers")
READY = "Tracker waiting for new connection."


def tracker(tmp_path, procs, name: str) -> int:
    port = free_port()
    proc = Proc.twistd(
        "cheesetracker",
        ["--port", str(port), "--interface", "127.0.0.1"],
        os.path.join(str(tmp_path), name),
        name=name,
    )
    procs.append(proc)
    proc.wait_for(READY, timeout=30)
    return port


def test_three_members_two_trackers_one_killed(tmp_path, procs) -> None:
    first = tracker(tmp_path, procs, "t1")
    second = tracker(tmp_path, procs, "t2")
    trackers = ["--tracker", f"127.0.0.1:{first}", "--tracker", f"127.0.0.1:{second}"]
    a = start_member(tmp_path, procs, NET, STACK, *trackers, name="a")
    b = start_member(tmp_path, procs, NET, (), *trackers, name="b")
    for m in (a, b):
        m.proc.wait_for(f"Registered with the tracker at 127.0.0.1:{first}", timeout=20)
        m.proc.wait_for(f"Registered with the tracker at 127.0.0.1:{second}", timeout=20)
    procs[0].stop()  # the first tracker goes away while a and b run
    c = start_member(tmp_path, procs, NET, (), *trackers, name="c")  # c never sees it
    members = [a, b, c]
    ids = {m.status()["node_id"] for m in members}

    def agreed() -> bool:
        tips = {m.status()["tip"] for m in members}
        return tips == {STACK[-1]["smell"]} and all(len(m.status()["peers"]) == 2 for m in members)

    wait_until(agreed, timeout=60, what="three members meeting through the second tracker")
    c.proc.wait_for(f"Cannot reach the tracker at 127.0.0.1:{first}", timeout=20)
    for m in (a, b):
        m.proc.wait_for(f"Lost the tracker at 127.0.0.1:{first}", timeout=20)
    time.sleep(4)  # several retries (backoff from 1 s) meanwhile, none of them logged
    for m in members:
        status = m.status()
        assert {p["node_id"] for p in status["peers"]} == ids - {status["node_id"]}
        assert all(p["encrypted"] for p in status["peers"])
        out = m.proc.output()
        said = out.count(f"Cannot reach the tracker at 127.0.0.1:{first}")
        said += out.count(f"Lost the tracker at 127.0.0.1:{first}")
        assert said == 1, out[-2000:]  # once, however many retries
        assert f"Registered with the tracker at 127.0.0.1:{second}" in out
        assert "Traceback" not in out
    # The live tracker lists every member with its node_id.
    asker = RawPeer(second, NET, send_hello=False)
    reply = asker.request({"type": "GET_PEERS"})
    assert {p["node_id"] for p in reply["peers"]} == ids
    asker.close()
