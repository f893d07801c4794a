"""Hostile peers, round three (issue 26, finding 4): an eclipse through the
address book, against a real ``twistd cheesemember`` and a real tracker.

An honest member is listed by the tracker and dialled by the victim; then
2,100 handshakes from three loopback addresses each claim another listening
port. Before the mend every claim was recorded as an address that *worked*:
``GET_PEERS`` handed out attacker addresses only, ``peers.json`` held nothing
else, and after a restart every outbound dial went to the attacker although
the tracker listed the honest member. Now a claim is at most "new", bounded
per source group; the honest member we dialled is tried, saved as an anchor
and dialled first after the restart.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from procs import Proc
from rawpeer import RawPeer, free_port, start_member, wait_until

from cheesecoin.p2p.addrbook import BUCKET_SIZE, NEW_BUCKETS_PER_SOURCE_GROUP
from cheesecoin.testing.chain import make_network

pytestmark = pytest.mark.slow

NET = make_network("hostile-eclipse", bits=1, timestamp=int(time.time()) - 10**6)
HANDSHAKES = 2100
SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
FIRST_CLAIMED_PORT = 20000  # ports 20000-22099 on 127.0.0.2-4: nobody listens there


def hello_of(peer: RawPeer, port: int) -> bytes:
    """The HELLO line ``peer`` sent (RawPeer builds it so)."""
    hello = {
        "type": "HELLO",
        "version": 1,
        "network": NET.smell,
        "node_id": peer.node_id,
        "port": port,
        "height": 0,
        "tip": NET.smell,
        "work": "1",
    }
    return json.dumps(hello, separators=(",", ":")).encode() + b"\n"


def outbound_ports(member) -> set:
    return {p["port"] for p in member.status()["peers"] if not p["inbound"]}


def test_an_eclipse_through_the_address_book_fails(tmp_path, procs) -> None:
    tracker_port = free_port()
    tracker = Proc.twistd(
        "cheesetracker",
        ["--port", str(tracker_port), "--interface", "127.0.0.1"],
        str(tmp_path / "tracker"),
    )
    procs.append(tracker)
    tracker.wait_for("Tracker waiting for new connection.", timeout=30)
    track = ("--tracker", f"127.0.0.1:{tracker_port}")
    honest = start_member(
        tmp_path, procs, NET, (), *track, "--peers", "0", name="honest"
    )  # never dials
    honest.proc.wait_for("Registered with the tracker", timeout=30)
    victim = start_member(tmp_path, procs, NET, (), *track, name="victim")
    wait_until(
        lambda: honest.port in outbound_ports(victim),
        timeout=30,
        what="the victim dialled the honest member",
    )

    start, sent = time.monotonic(), 0
    for i in range(HANDSHAKES):
        peer = RawPeer(
            victim.port, NET, source=SOURCES[i % len(SOURCES)], listen_port=FIRST_CLAIMED_PORT + i
        )
        sent += len(hello_of(peer, FIRST_CLAIMED_PORT + i))
        peer.close()
    took = time.monotonic() - start
    print(f"{HANDSHAKES} hostile handshakes in {took:.1f} s, ~{sent // 1000} kB sent")

    asker = RawPeer(victim.port, NET)
    reply = [(p["host"], p["port"]) for p in asker.request({"type": "GET_PEERS"})["peers"]]
    asker.close()
    attackers = [a for a in reply if a[0] in SOURCES]
    assert ("127.0.0.1", honest.port) in reply, reply
    assert len(attackers) < len(reply), reply

    victim.proc.stop()
    with open(os.path.join(victim.data, "peers.json"), encoding="utf-8") as f:
        saved = json.load(f)["peers"]
    anchors = [(e["host"], e["port"]) for e in saved if e.get("anchor")]
    tried = [(e["host"], e["port"]) for e in saved if e.get("tried")]
    hostile = [e for e in saved if e["host"] in SOURCES]
    print(f"GET_PEERS: {len(attackers)} of {len(reply)} attacker addresses; peers.json:")
    print(f"{len(hostile)} of {len(saved)} entries hostile (all new), anchors {anchors}")
    assert anchors == [("127.0.0.1", honest.port)], saved[:5]
    assert tried == anchors  # no claim of an inbound peer is ever tried
    assert len(hostile) <= len(SOURCES) * NEW_BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE < HANDSHAKES

    shutil.copytree(
        victim.data, os.path.join(str(tmp_path), "restarted", "data")
    )  # its own log, same data
    again = start_member(tmp_path, procs, NET, (), *track, name="restarted")
    assert "members from the saved address book" in again.proc.output()
    wait_until(
        lambda: honest.port in outbound_ports(again),
        timeout=8,
        what="the restarted victim dialled the honest member",
    )
    log = again.proc.output()
    first = log[: log.index(" connected (outbound")].rsplit("Peer ", 1)[1]
    assert first == f"127.0.0.1:{honest.port}", (
        first
    )  # the anchor, dialled before any other address
