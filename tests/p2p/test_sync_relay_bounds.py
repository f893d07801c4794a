"""Hostile peers, round three (issue 26), with protocol fakes: a sync or a
compact rebuild that a peer's reply breaks ends and charges that peer; a
download with no progress is ended by the watchdog; a silent headers peer is
dropped; claims of work win neither the sync nor a body window; one download
at a time; orphan compact headers start a sync, never a rebuild; rebuilds are
bounded and asked of up to three announcers at once."""

from __future__ import annotations

from typing import List

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import compact_announcement
from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p import compact as compact_mod
from cheesecoin.p2p import headers_sync as hs
from cheesecoin.p2p import sync as sync_mod
from cheesecoin.p2p.protocol import BAN_SCORE
from cheesecoin.testing.chain import forged_header, mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NOW, Net, Raw, chain, make_member
from tests.cases import clock_at
from tests.p2p.test_headers_sync import CHAIN, HEADERS, Peer, settle

FEATURES = ["headers", "compact", "mempool"]


class BrokenRepliesTests(SynchronousTestCase):
    """Finding 2: replies that broke the download's callbacks end it instead."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.member = make_member("aa", self.clock)

    def check_honest_sync_follows(self, liar: Peer) -> None:
        honest = Peer(self.member, 2)
        settle([liar, honest])
        assert self.member.node.stack.height == len(CHAIN)
        assert self.member.sync.running == 0 and not self.member.sync.downloads
        self.flushLoggedErrors()
        assert not self.flushLoggedErrors(), "no unhandled error"

    def test_a_header_with_bits_above_160_drops_its_peer(self) -> None:
        for bits in (161, 999, 0):
            member = self.member = make_member("aa", clock_at(NOW))
            liar = Peer(
                member,
                1,
                headers=lambda msg, b=bits: {
                    "type": "HEADERS",
                    "headers": [forged_header(HEADERS[0], bits=b)],
                },
            )
            liar.raw.proto.claim(liar.raw.proto.peer_height, liar.raw.proto.peer_tip, 10**40)
            liar.serve()
            assert liar.raw.closed, f"bits {bits}: the peer is dropped"
            assert liar.raw.proto.score >= BAN_SCORE
            self.check_honest_sync_follows(liar)

    def test_bodies_whose_smell_is_not_a_string_go_to_another_peer(self) -> None:
        liar = Peer(
            self.member,
            1,
            bodies=lambda msg: {"type": "CHEESES", "cheeses": [{"smell": []}, 7, None]},
        )
        liar.serve()
        self.check_honest_sync_follows(liar)

    def test_a_reply_that_breaks_a_handler_ends_the_download_and_costs_its_sender(self) -> None:
        self.patch(hs.HeadersDownload, "_got_headers", lambda self, reply: 1 / 0)  # any fault
        liar = Peer(self.member, 1)
        download = self.member.sync.downloads.copy().pop()
        liar.serve()
        assert download.finished and self.member.sync.running == 0
        assert liar.raw.proto.score > 0
        self.flushLoggedErrors()


class StallTests(SynchronousTestCase):
    """Finding 5: silent peers that claim work cannot hold the sync."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.member = make_member("aa", self.clock)

    def test_a_headers_peer_silent_for_headers_timeout_rests_and_the_next_one_is_asked(
        self,
    ) -> None:
        liars = [Peer(self.member, n, headers=lambda msg: None) for n in (1, 2, 3)]
        for n, liar in enumerate(liars):
            # each claims more than the honest one
            proto = liar.raw.proto
            proto.claim(proto.peer_height, proto.peer_tip, 10**40 + n)
        honest = Peer(self.member, 4)
        settle(liars + [honest])
        for _ in liars:
            self.clock.advance(hs.HEADERS_TIMEOUT + 0.1)
            settle(liars + [honest])
        assert self.member.node.stack.height == len(CHAIN)
        now = self.clock.seconds()
        for liar in liars:  # each failed claim: its host rests and ranks after the others
            assert liar.raw.proto.sync_idle_until > now
            assert self.member.sync.struck[liar.raw.proto.peer_host()] == 1

    def test_the_sync_starts_from_a_peer_we_dialled_before_one_that_claims_more(self) -> None:
        source = make_member("bb", self.clock, CHAIN[:30])
        liar = Peer(self.member, 1, headers=lambda msg: None)  # inbound, claims far more
        liar.raw.proto.claim(liar.raw.proto.peer_height, liar.raw.proto.peer_tip, 10**40)
        liar.serve()
        assert self.member.sync.running == 1  # busy with the liar: the dialled peer waits its turn
        net = Net(self.clock)
        net.link(self.member, source)  # we dial it
        self.clock.advance(hs.HEADERS_TIMEOUT + 0.1)
        net.flush()
        liar.serve()
        net.flush()
        assert self.member.node.stack.height == 30
        assert self.member.sync.struck[liar.raw.proto.peer_host()] == 1

    def test_liars_that_come_back_from_new_addresses_do_not_starve_an_honest_inbound_peer(
        self,
    ) -> None:
        """Two liars claim far more work, never answer and reconnect from a new address
        each time they are dropped: the honest inbound peer (longer connected than each
        comeback) still gets its turn, after the two first liars' timeouts."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        serial = [0]

        def liar() -> Peer:
            serial[0] += 1
            p = Peer(self.member, 100 + serial[0], headers=lambda msg: None)
            p.raw.proto.claim(p.raw.proto.peer_height, p.raw.proto.peer_tip, 10**40)
            return p

        liars = [liar(), liar()]
        honest = Peer(self.member, 3)
        for _ in range(int(3 * hs.HEADERS_TIMEOUT) + 5):
            self.clock.advance(1)
            settle(liars + [honest])
            for i, p in enumerate(liars):
                if p.raw.closed:
                    p.raw.proto.connectionLost(Failure(ConnectionDone()))
                    liars[i] = liar()
        assert self.member.node.stack.height == len(CHAIN)

    def test_the_watchdog_ends_a_download_with_no_progress(self) -> None:
        stuck: List[Deferred] = []

        def never(cheeses, with_hashes=False):
            d: Deferred = Deferred()
            stuck.append(d)
            return d

        self.member.sync.verify_signatures = never  # a check that never comes back
        peer = Peer(self.member, 1)
        settle([peer])
        assert stuck and self.member.sync.running == 1
        self.clock.advance(sync_mod.STALL_SECONDS - 1)
        self.member.tick()
        assert self.member.sync.running == 1
        self.clock.advance(2)
        self.member.tick()
        assert self.member.sync.running == 0 and not self.member.sync.downloads

    def test_body_windows_go_only_to_peers_whose_tip_is_a_checked_header(self) -> None:
        source = Peer(self.member, 1)
        source.serve()  # its headers: the download's chain
        claimer = Peer(self.member, 2, bodies=lambda msg: None)  # more work claimed, tip unknown
        claimer.raw.proto.claim(claimer.raw.proto.peer_height, "f" * 40, 10**40)
        settle([source, claimer])
        assert not [m for m in claimer.asked if m["type"] == "GET_CHEESES"], (
            "no window on a claim alone"
        )
        assert self.member.node.stack.height == len(CHAIN)

    def test_a_peer_that_lets_a_window_time_out_gets_no_more(self) -> None:
        source = Peer(self.member, 1)
        source.serve()
        slow = Peer(self.member, 2, bodies=lambda msg: None)
        settle([source, slow])
        windows = [m for m in slow.asked if m["type"] == "GET_CHEESES"]
        assert windows and len(windows) <= hs.PER_PEER
        self.clock.advance(hs.WINDOW_TIMEOUT + 0.1)
        settle([source, slow])
        assert [m for m in slow.asked if m["type"] == "GET_CHEESES"] == windows
        assert self.member.node.stack.height == len(CHAIN)


class OneDownloadTests(SynchronousTestCase):
    """Finding 10: orphans from many peers start one download at a time."""

    def test_orphans_announced_during_a_download_wait_for_their_turn(self) -> None:
        clock = clock_at(NOW)
        member = make_member("aa", clock, CHAIN[:5])
        first = Peer(member, 1, headers=lambda msg: None)
        first.serve()
        announcers = [Raw(member, host=f"10.0.1.{n}") for n in range(20)]
        for n, raw in enumerate(announcers):
            raw.hello(node_id=f"{n + 10:02d}", features=FEATURES)
            orphan = chain(1, parent=CHAIN[40 + n], miner=f"{n:02x}" * 32)[0]
            asked = raw.send({"type": "ANNOUNCE", "cheese": orphan})
            assert not [m for m in asked if m["type"] in ("GET_HEADERS", "GET_CHEESES")]
        assert member.sync.running == 1
        assert len(member.sync.orphan_asks) == sync_mod.MAX_ORPHAN_ASKS
        clock.advance(
            hs.HEADERS_TIMEOUT + 0.1
        )  # the first download ends: an orphan's announcer is next
        asked = [m for raw in announcers for m in raw.replies() if m["type"] == "GET_HEADERS"]
        assert len(asked) == 1 and member.sync.running == 1


def setup_compact(clock):
    """A member on 3 cheeses paying ADDR, and a 4th cheese with two payments (not given to it)."""
    cheeses = chain(3, miner=ADDR)
    manager = make_member("aa", clock, cheeses)
    txs = [sign_tx(KEY, BOB, 1, 1, 0, "a"), sign_tx(KEY, BOB, 2, 1, 1, "b")]
    fourth = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, txs, note="compact")
    return manager, cheeses, txs, fourth


def compact_peer(manager, n: int) -> Raw:
    raw = Raw(manager, host=f"10.0.2.{n}")
    raw.hello(node_id=f"{n + 50:02d}", features=FEATURES)
    return raw


class CompactBoundsTests(SynchronousTestCase):
    """Findings 3 and 6: compact announcements without work, and announcers that do not deliver."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.manager, self.cheeses, self.txs, self.fourth = setup_compact(self.clock)

    def test_a_header_below_the_network_minimum_is_refused(self) -> None:
        raw = compact_peer(self.manager, 1)
        msg = compact_announcement(self.fourth)
        msg["header"] = forged_header(msg["header"], bits=0)
        [error] = raw.send(msg)
        assert error["code"] == "invalid-cheese" and "bits" in error["message"]
        assert raw.proto.score > 0 and not self.manager.compact.rebuilding

    def test_an_orphan_header_starts_a_sync_never_a_rebuild(self) -> None:
        raw = compact_peer(self.manager, 1)
        for i in range(10):
            msg = compact_announcement(self.fourth)
            msg["header"] = forged_header(msg["header"], parent_smell=f"{i:040x}")
            msg["txids"] = [f"{j:040x}" for j in range(1000)]
            asked = raw.send(msg)
            assert not [m for m in asked if m["type"] == "GET_TXS"]
        assert not self.manager.compact.rebuilding and self.manager.sync.running <= 1

    def test_rebuilds_are_bounded_per_peer(self) -> None:
        raw = compact_peer(self.manager, 1)
        asked = []
        for i in range(12):  # siblings of the tip's child, each with a transaction we lack
            sibling = mine_child(
                self.cheeses[-1], self.cheeses[-1]["bits"], ADDR, self.txs[:1], note=f"s{i}"
            )
            asked += [m for m in raw.send(compact_announcement(sibling)) if m["type"] == "GET_TXS"]
        assert len(asked) == compact_mod.MAX_PEER_ATTEMPTS
        assert self.manager.compact.attempts_of[raw.proto] == compact_mod.MAX_PEER_ATTEMPTS
        self.clock.advance(31)  # their requests time out: the peer is charged, the slots free
        assert raw.proto.score >= compact_mod.MAX_PEER_ATTEMPTS * compact_mod.UNDELIVERED_POINTS
        assert raw.proto not in self.manager.compact.attempts_of

    def test_the_next_announcer_is_asked_at_once_and_the_silent_one_pays(self) -> None:
        silent, honest = compact_peer(self.manager, 1), compact_peer(self.manager, 2)
        msg = compact_announcement(self.fourth)
        [ask1] = silent.send(msg)
        assert ask1["type"] == "GET_TXS"
        [ask2] = honest.send(msg)  # asked in parallel, not ignored while the first waits
        assert ask2["type"] == "GET_TXS" and ask2["txids"] == [txid(t) for t in self.txs]
        honest.send({"type": "TXS", "transactions": self.txs, "id": ask2["id"]})
        assert self.manager.node.stack.tip.smell == self.fourth["smell"]
        score = silent.proto.score
        self.clock.advance(31)
        assert silent.proto.score == score + compact_mod.UNDELIVERED_POINTS
        assert not self.manager.compact.rebuilding and not self.manager.compact.attempts_of

    def test_at_most_three_announcers_are_asked_at_once(self) -> None:
        peers = [compact_peer(self.manager, n) for n in range(5)]
        msg = compact_announcement(self.fourth)
        asked = [p for p in peers if [m for m in p.send(msg) if m["type"] == "GET_TXS"]]
        assert len(asked) == compact_mod.MAX_ATTEMPTS
