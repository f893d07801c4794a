"""Headers-first sync (docs/protocol.md section 5.1, issue 17): headers from
the peer with the most work, checked with their total work before any body;
bodies by smell in windows from every peer that has them; a slow, refusing
or lying peer's window goes to another."""

from __future__ import annotations

import json
from typing import Callable, Dict, List, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import header_of
from cheesecoin.p2p import headers_sync as hs
from cheesecoin.p2p.manager import FEATURES
from cheesecoin.testing.fakes import NOW, Net, Raw, chain, make_member
from tests.cases import clock_at

CHAIN = chain(2300)  # more than one GET_HEADERS (2,000 a request)
HEADERS = [header_of(c) for c in CHAIN]
BY_SMELL = {c["smell"]: c for c in CHAIN}


def work_at(height: int) -> str:
    return str(2 * (height + 1))  # the test network: bits 1, from the Blue Cheese


Answer = Callable[[dict], Optional[dict]]


class Peer:
    """A hand-driven peer that holds ``CHAIN[:height]`` and answers as told."""

    def __init__(
        self,
        manager,
        n: int,
        height: int = len(CHAIN),
        bodies: Optional[Answer] = None,
        headers: Optional[Answer] = None,
        features=FEATURES,
    ) -> None:
        self.raw = Raw(manager, host=f"10.0.0.{n}")
        self.height = height
        self.asked: List[dict] = []
        self.lost = False
        self.bodies = bodies or self.honest_bodies
        self.headers = headers or self.honest_headers
        tip = CHAIN[height - 1]
        self.inbox = self.raw.hello(
            node_id=f"{n:02d}",
            height=height,
            tip=tip["smell"],
            work=work_at(height),
            features=list(features),
        )

    def honest_headers(self, msg: dict) -> dict:
        known = {c["smell"]: i for i, c in enumerate(CHAIN[: self.height])}
        start = next((known[s] + 1 for s in msg["locator"] if s in known), 0)
        return {
            "type": "HEADERS",
            "headers": HEADERS[start : min(self.height, start + msg["count"])],
        }

    def honest_bodies(self, msg: dict) -> dict:
        return {
            "type": "CHEESES",
            "cheeses": [
                BY_SMELL[s]
                for s in msg["smells"]
                if s in BY_SMELL and BY_SMELL[s]["sequence_number"] <= self.height
            ],
        }

    def serve(self) -> int:
        """Answer what was asked since the last call; returns how many requests."""
        msgs, self.inbox = self.inbox + self.raw.replies(), []
        served = 0
        if self.raw.closed and not self.lost:  # what a real transport does once it has closed
            self.lost = True
            self.raw.proto.connectionLost(Failure(ConnectionDone()))
            return 1
        for msg in msgs:
            if msg["type"] in ("GET_HEADERS", "GET_CHEESES"):
                self.asked.append(msg)
                answer = (self.headers if msg["type"] == "GET_HEADERS" else self.bodies)(msg)
                served += 1
                if answer is not None:
                    self.inbox += self.raw.send(dict(answer, id=msg["id"]))
        return served

    def kinds(self) -> List[str]:
        return [m["type"] for m in self.asked]


def settle(peers: List[Peer]) -> None:
    for _ in range(1000):
        if not sum(p.serve() for p in peers):
            return
    raise AssertionError("the sync did not settle")


class HeadersFirstSyncTests(SynchronousTestCase):
    """Headers from the peer with the most work, then bodies from every peer that has them."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_headers_then_bodies_from_every_peer(self) -> None:
        member = make_member("aa", self.clock)
        first = Peer(member, 1)
        first.serve()  # its headers arrive before the others are connected
        assert first.kinds() == ["GET_HEADERS"]
        assert member.sync.running == 1
        others = [Peer(member, n) for n in (2, 3, 4)]  # one download at a time: they only help
        peers = [first] + others
        settle(peers)
        assert member.node.stack.height == len(CHAIN)
        assert member.node.stack.tip.smell == CHAIN[-1]["smell"]
        # Two header requests (2,000 + 300), both before the first body.
        kinds = first.kinds()
        assert kinds[:2] == ["GET_HEADERS", "GET_HEADERS"] and "GET_HEADERS" not in kinds[2:]
        assert first.asked[1]["locator"][0] == CHAIN[1999]["smell"]
        # The bodies came from all four, in windows of WINDOW smells.
        for peer in peers:
            windows = [m for m in peer.asked if m["type"] == "GET_CHEESES"]
            assert windows and all(1 <= len(m["smells"]) <= hs.WINDOW for m in windows)
            assert not [m for m in peer.asked if m["type"] == "GET_CHEESES" and "locator" in m]
        asked = sorted(
            s for p in peers for m in p.asked if m["type"] == "GET_CHEESES" for s in m["smells"]
        )
        assert asked == sorted(c["smell"] for c in CHAIN)  # each body asked for once
        assert member.sync.running == 0

    def test_bodies_only_from_peers_that_have_that_stack(self) -> None:
        member = make_member("aa", self.clock)
        full = Peer(member, 1)
        full.serve()
        short_peer = Peer(member, 2, height=1000)  # the first 1,000 only
        settle([full, short_peer])
        assert member.node.stack.height == len(CHAIN)
        smells = [s for m in short_peer.asked if m["type"] == "GET_CHEESES" for s in m["smells"]]
        assert smells and all(BY_SMELL[s]["sequence_number"] <= 1000 for s in smells)

    def test_without_headers_the_version_1_sync_runs(self) -> None:
        """A peer that lists no features gets GET_CHEESES by locator, as before section 5.1."""
        cheeses = CHAIN[:600]
        net = Net(self.clock)
        old = make_member("11", self.clock, cheeses, features=())
        new = make_member("22", self.clock)
        net.link(new, old)
        assert new.node.stack.height == 600
        fresh_old = make_member("44", self.clock, features=())
        net.link(fresh_old, new)  # and the other way: an old member syncs from a new one
        assert fresh_old.node.stack.height == 600

    def test_stack_counts_per_source(self) -> None:
        """Figures the simulator reports: the download knows who sent what."""
        member = make_member("aa", self.clock)
        a = Peer(member, 1)
        a.serve()
        download = a.raw.proto.download
        b = Peer(member, 2)
        settle([a, b])
        assert isinstance(download, hs.HeadersDownload)
        counts: Dict = download.sources
        assert sum(counts.values()) == len(CHAIN) and len(counts) == 2


def _drop_case(clock: Clock, headers: Answer) -> None:
    member = make_member("aa", clock)
    liar = Peer(member, 1, headers=headers)
    helper = Peer(member, 2, height=10)  # has the first 10: no help for the liar's stack
    settle([liar, helper])
    assert liar.raw.closed  # dropped after its headers
    assert liar.kinds() == ["GET_HEADERS"]  # and no body downloaded, from anyone:
    smells = [s for m in helper.asked if m["type"] == "GET_CHEESES" for s in m["smells"]]
    assert all(
        BY_SMELL[s]["sequence_number"] <= 10 for s in smells
    )  # only the helper's own, afterwards
    assert member.node.stack.height == 10 and member.sync.running == 0


class LyingHeadersTests(SynchronousTestCase):
    """Headers that are invalid, broken or short of their work drop the peer before any body."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_invalid_headers_drop_the_peer_before_any_body(self) -> None:
        def broken(msg: dict) -> dict:
            headers = [dict(h) for h in HEADERS[:2000]]
            headers[700]["nonce"] += 1  # its smell no longer matches
            return {"type": "HEADERS", "headers": headers}

        _drop_case(self.clock, broken)

    def test_headers_that_break_the_chain_drop_the_peer(self) -> None:
        def gap(msg: dict) -> dict:
            return {"type": "HEADERS", "headers": HEADERS[:500] + HEADERS[501:900]}

        _drop_case(self.clock, gap)

    def test_headers_short_of_the_claimed_work_drop_the_peer(self) -> None:
        # It claims 2,300 cheeses of work; its whole best stack (fewer than asked) has 900.
        _drop_case(self.clock, lambda msg: {"type": "HEADERS", "headers": HEADERS[:900]})


class QueuedOrphanAnnouncerTests(SynchronousTestCase):
    """An orphan's announcer whose turn comes once we already hold its stack."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_a_peer_whose_stack_we_hold_is_not_punished_for_no_new_headers(self) -> None:
        # Its tip is ours by the time its download runs (another peer's download brought
        # it): its honest HEADERS reply is empty, and it claimed no more work than we have.
        member = make_member("aa", self.clock, CHAIN[:10])
        peer = Peer(member, 1, height=10)
        settle([peer])
        member.sync.start_download(peer.raw.proto, "orphan")
        settle([peer])
        assert peer.kinds() == ["GET_HEADERS"]
        assert not peer.raw.closed and peer.raw.proto.score == 0
        assert member.sync.running == 0 and member.node.stack.height == 10


class BodyWindowTests(SynchronousTestCase):
    """A lying, refusing or slow peer's window of bodies goes to another."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)

    def test_a_body_that_does_not_match_its_header_goes_to_another_peer(self) -> None:
        def lying(msg: dict) -> dict:
            out = []
            for s in msg["smells"]:
                cheese = json.loads(json.dumps(BY_SMELL[s]))
                cheese["unit_of_information"]["note"] = "not the header's body"
                out.append(cheese)
            return {"type": "CHEESES", "cheeses": out}

        member = make_member("aa", self.clock)
        honest = Peer(member, 1)
        honest.serve()
        liar = Peer(member, 2, bodies=lying)
        settle([honest, liar])
        assert member.node.stack.height == len(CHAIN)
        download_mismatches = liar.raw.proto.score
        assert (
            download_mismatches >= hs.MISMATCH_POINTS or liar.raw.closed
        )  # it lost points (or was banned)
        liar_smells = {s for m in liar.asked if m["type"] == "GET_CHEESES" for s in m["smells"]}
        honest_smells = {s for m in honest.asked if m["type"] == "GET_CHEESES" for s in m["smells"]}
        assert (
            liar_smells and liar_smells <= honest_smells
        )  # each of its windows was asked again of the other

    def test_a_refusing_peer_and_a_slow_peer_lose_their_windows(self) -> None:
        member = make_member("aa", self.clock)
        honest = Peer(member, 1)
        honest.serve()
        refusing = Peer(member, 2, bodies=lambda msg: {"type": "CHEESES", "cheeses": []})
        slow = Peer(member, 3, bodies=lambda msg: None)  # never answers a window
        peers = [honest, refusing, slow]
        settle(peers)
        assert member.node.stack.height < len(CHAIN)  # waiting for the slow one
        self.clock.advance(hs.WINDOW_TIMEOUT + 1)
        settle(peers)
        # each round the slow one may be given a window again, and times out again
        for _ in range(10):
            if member.node.stack.height == len(CHAIN):
                break
            self.clock.advance(hs.WINDOW_TIMEOUT + 1)
            settle(peers)
        assert member.node.stack.height == len(CHAIN)
        assert not refusing.raw.closed and not slow.raw.closed  # refusing or slow is not lying
