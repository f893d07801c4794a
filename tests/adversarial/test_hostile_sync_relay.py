"""Hostile peers, round three (issue 26): the section 5.1 sync and compact
relay against a real ``twistd cheesemember``, one test per finding.

- 2: a headers peer that sends a header with bits 161, or bodies whose smell
  is not a string, ends its own download (and is dropped); the member syncs
  from the honest peer (before: the download raised without an errback and
  never ended, the member stayed at height 0).
- 3: compact announcements of headers below the network's minimum bits get
  ERROR and cost points; orphan headers start one sync, never a rebuild (before:
  a GET_TXS for each, whose pending request kept its closure).
- 5: peers that claim more work and never answer GET_HEADERS do not hold the
  sync: the member takes a peer it dialled first, and drops a silent headers
  peer after 15 s (before: 30 s each, one after the other, for ever).
- 6: an announcer that never supplies a transaction does not hold a cheese
  back: the next announcer is asked at once (before: ~55 s).
- 10: orphans from many peers start one download at a time (before: one each).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from typing import Any, List

import pytest
from rawpeer import ALL_FEATURES, RawPeer, start_member, wait_until

from cheesecoin.core.cheese import compact_announcement, header_of
from cheesecoin.core.tx import address_of, sign_tx
from cheesecoin.testing.chain import (
    ChainBuilder,
    forged_header,
    key_from_seed,
    make_network,
    mine_child,
)

pytestmark = pytest.mark.slow

NET = make_network("hostile-three", bits=1, timestamp=int(time.time()) - 10**6)
CHAIN = [NET.blue_cheese] + ChainBuilder(NET).extend(NET.blue_cheese, 40, "ab" * 32)
HEADERS = [header_of(c) for c in CHAIN]
BY_SMELL = {c["smell"]: c for c in CHAIN}
HUGE_WORK = 2**80


def honest_answer(peer: RawPeer, msg: dict) -> None:
    """Answer a member's request as a peer holding CHAIN would."""
    kind = msg.get("type")
    if kind == "GET_HEADERS":
        known = {c["smell"]: i for i, c in enumerate(CHAIN)}
        start = next((known[s] + 1 for s in msg["locator"] if s in known), 1)
        peer.answer(msg, {"type": "HEADERS", "headers": HEADERS[start : start + msg["count"]]})
    elif kind == "GET_CHEESES" and "smells" in msg:
        peer.answer(
            msg,
            {"type": "CHEESES", "cheeses": [BY_SMELL[s] for s in msg["smells"] if s in BY_SMELL]},
        )
    elif kind == "GET_CHEESES":
        known = {c["smell"]: i for i, c in enumerate(CHAIN)}
        start = next((known[s] + 1 for s in msg["locator"] if s in known), 1)
        peer.answer(
            msg, {"type": "CHEESES", "cheeses": CHAIN[start : start + msg.get("count", 500)]}
        )
    elif kind == "STATS":
        peer.answer(
            msg,
            {
                "type": "STATS_REPLY",
                "height": 40,
                "tip": CHAIN[-1]["smell"],
                "work": str(2 * 41),
                "peers": 1,
            },
        )
    elif kind == "GET_MEMPOOL":
        peer.answer(msg, {"type": "MEMPOOL", "txids": []})
    elif kind == "PING":
        peer.answer(msg, {"type": "PONG"})


def serve_honestly(peer: RawPeer, stop: threading.Event) -> threading.Thread:
    """A thread that answers the member as an honest peer holding CHAIN, until ``stop``."""

    def run() -> None:
        while not stop.is_set():
            try:
                msg = peer.wait_for(lambda m: True, timeout=0.2)
            except AssertionError:
                continue
            except (OSError, ConnectionError, ValueError):
                return
            honest_answer(peer, msg)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def honest_hello(**kw: Any) -> dict:
    return dict(features=ALL_FEATURES, height=40, tip=CHAIN[-1]["smell"], work=2 * 41, **kw)


def test_headers_with_impossible_bits_or_bad_bodies_end_their_own_download(tmp_path, procs) -> None:
    member = start_member(tmp_path, procs, NET)
    # Finding 2a: claims the most work; its headers hold bits 161 (a negative shift before).
    bad_bits = RawPeer(
        member.port,
        NET,
        source="127.0.0.2",
        features=ALL_FEATURES,
        height=41,
        tip=CHAIN[-1]["smell"],
        work=HUGE_WORK,
    )
    ask = bad_bits.wait_for(lambda m: m.get("type") == "GET_HEADERS")
    bad_bits.answer(ask, {"type": "HEADERS", "headers": [forged_header(HEADERS[1], bits=161)]})
    assert bad_bits.closed_by_member(10), "a peer whose headers break rule 3 is dropped"
    # Finding 2b: honest headers, then a body whose smell is a list.
    bad_body = RawPeer(member.port, NET, source="127.0.0.3", **honest_hello())
    honest_answer(bad_body, bad_body.wait_for(lambda m: m.get("type") == "GET_HEADERS"))
    window = bad_body.wait_for(lambda m: m.get("type") == "GET_CHEESES")
    bad_body.answer(window, {"type": "CHEESES", "cheeses": [{"smell": []}]})
    # An honest peer comes; the member must sync from it while the liar is still connected.
    honest = RawPeer(member.port, NET, source="127.0.0.4", **honest_hello())
    stop = threading.Event()
    serve_honestly(honest, stop)
    try:
        wait_until(
            lambda: member.height() == 40, timeout=40, what="the member syncs from the honest peer"
        )
    finally:
        stop.set()
    assert "Traceback" not in member.proc.output()
    assert "Unhandled error" not in member.proc.output()


def test_compact_headers_below_the_minimum_or_orphaned_are_never_rebuilt(tmp_path, procs) -> None:
    member = start_member(tmp_path, procs, NET, CHAIN[:11])
    attacker = RawPeer(
        member.port,
        NET,
        source="127.0.0.5",
        features=ALL_FEATURES,
        height=10,
        tip=CHAIN[10]["smell"],
        work=2 * 11,
    )
    txids = [secrets.token_hex(20) for _ in range(1000)]
    # bits 0: below the network's minimum of 1 (accepted before).
    zero = forged_header(HEADERS[11], bits=0)
    attacker.send({"type": "ANNOUNCE_COMPACT", "header": zero, "miner": "ab" * 32, "txids": txids})
    error = attacker.wait_for(lambda m: m.get("type") == "ERROR")
    assert error["code"] == "invalid-cheese" and "bits" in error["message"]
    # 100 orphan headers (unknown parents, valid proof of work) with 1,000 unknown txids each.
    rss_before = member.rss()
    for i in range(100):
        orphan = forged_header(
            dict(HEADERS[11], parent_smell=secrets.token_hex(20), sequence_number=12 + i)
        )
        attacker.send(
            {"type": "ANNOUNCE_COMPACT", "header": orphan, "miner": "ab" * 32, "txids": txids}
        )
        attacker.drain(0.005)  # what it sends back (a GET_TXS of 43 kB a rebuild before) is read
    asked = [
        m for m in attacker.drain(1.5) if m.get("type") in ("GET_TXS", "GET_HEADERS", "GET_CHEESES")
    ]
    attacker.inbox.clear()
    get_txs = [m for m in asked if m["type"] == "GET_TXS"]
    assert not get_txs, f"{len(get_txs)} GET_TXS for orphan headers (a rebuild each)"
    assert len([m for m in asked if m["type"] in ("GET_HEADERS", "GET_CHEESES")]) <= 2, (
        "one sync, not 100"
    )
    growth = member.rss() - rss_before
    assert growth < 32 * 2**20, f"the member grew by {growth / 2**20:.1f} MiB"
    assert member.height() == 10


class HeldProxy:
    """A TCP relay to ``target`` that holds each connection's bytes until ``release``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.released = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        self.released.wait(60)
        up = socket.create_connection(("127.0.0.1", self.target))
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def test_silent_peers_claiming_work_do_not_hold_the_sync(tmp_path, procs) -> None:
    honest = start_member(tmp_path, procs, NET, CHAIN, name="honest")
    proxy = HeldProxy(honest.port)  # the member dials the honest one through it
    member = start_member(tmp_path, procs, NET, (), "--connect", f"127.0.0.1:{proxy.port}")
    liars: List[RawPeer] = []
    try:
        for n in range(3):  # claim far more work, never answer GET_HEADERS
            liars.append(
                RawPeer(
                    member.port,
                    NET,
                    source=f"127.0.0.{10 + n}",
                    features=ALL_FEATURES,
                    height=10_000,
                    tip=CHAIN[-1]["smell"],
                    work=HUGE_WORK + n,
                )
            )
        wait_until(
            lambda: (
                any(m.get("type") == "GET_HEADERS" for p in liars for m in p.inbox)
                or any(p.closed_by_member(0.2) for p in liars)
            ),
            timeout=10,
            what="a liar asked for headers",
        )
        proxy.released.set()  # now the member's dialled peer answers
        # Before: the liars were asked one after another, 30 s each (and again after each STATS).
        wait_until(
            lambda: member.height() == 40,
            timeout=30,
            what="the member syncs from the peer it dialled",
        )
    finally:
        proxy.close()
        for p in liars:
            p.close()


def payment_cheese() -> tuple:
    """A stack whose miner key can pay, and a new cheese holding one payment from it."""
    key = key_from_seed("hostile-three-payer")
    payer = address_of(key)
    base = [NET.blue_cheese] + ChainBuilder(NET).extend(NET.blue_cheese, 3, payer)
    tx = sign_tx(key, "cd" * 32, 5, 1, 0, "held back")
    cheese = mine_child(base[-1], NET.bits, "ab" * 32, [tx])
    return base, cheese, tx


def test_an_announcer_that_never_supplies_does_not_hold_a_cheese_back(tmp_path, procs) -> None:
    base, cheese, tx = payment_cheese()
    member = start_member(tmp_path, procs, NET, base)
    announcement = compact_announcement(cheese)
    liar = RawPeer(
        member.port,
        NET,
        source="127.0.0.20",
        features=ALL_FEATURES,
        height=3,
        tip=base[-1]["smell"],
        work=2 * 4,
    )
    honest = RawPeer(
        member.port,
        NET,
        source="127.0.0.21",
        features=ALL_FEATURES,
        height=3,
        tip=base[-1]["smell"],
        work=2 * 4,
    )
    liar.send(announcement)
    liar.wait_for(lambda m: m.get("type") == "GET_TXS")  # and never answered
    honest.send(announcement)
    ask = honest.wait_for(lambda m: m.get("type") == "GET_TXS", timeout=10)
    assert ask["txids"] == announcement["txids"] and ask["smell"] == cheese["smell"]
    honest.answer(ask, {"type": "TXS", "transactions": [tx]})
    wait_until(
        lambda: member.height() == 4, timeout=10, what="the cheese from the second announcer"
    )
    assert member.status()["tip"] == cheese["smell"]


def test_orphans_from_many_peers_start_one_download_at_a_time(tmp_path, procs) -> None:
    member = start_member(tmp_path, procs, NET, CHAIN[:6])
    peers = [
        RawPeer(
            member.port,
            NET,
            source=f"127.0.0.{30 + n}",
            features=ALL_FEATURES,
            height=5,
            tip=CHAIN[5]["smell"],
            work=2 * 6,
        )
        for n in range(12)
    ]
    for n, peer in enumerate(peers):  # each announces an orphan (its parent unknown), none answers
        orphan = ChainBuilder(NET).extend(CHAIN[20], 1, f"{n:02x}" * 32)[0]
        peer.send({"type": "ANNOUNCE", "cheese": orphan})
    time.sleep(2)
    syncing = [
        p
        for p in peers
        if any(m.get("type") in ("GET_HEADERS", "GET_CHEESES") for m in p.drain(0.2))
    ]
    assert len(syncing) == 1, f"{len(syncing)} downloads at once (one per orphan before)"
    for p in peers:
        p.close()
