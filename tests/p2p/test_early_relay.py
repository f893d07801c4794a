"""Compact relay before validation (section 5.1, issue 17): a rebuilt compact
cheese that would be the new best goes on to the other compact peers before
its full validation; a bad header is refused before any transaction is
asked for; a header-valid cheese whose body breaks a rule costs its
announcer the light RELAYED_INVALID_POINTS, a whole invalid ANNOUNCE the full
invalid-cheese points."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import compact_announcement
from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p import compact
from cheesecoin.p2p.compact import RELAYED_INVALID_POINTS
from cheesecoin.p2p.protocol import ERROR_POINTS
from cheesecoin.testing.chain import mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NOW, Raw, chain, make_member
from tests.cases import clock_at

FEATURES = ["headers", "compact", "mempool"]


def setup(clock):
    """A member on 3 cheeses paying ADDR, two compact peers and a version-1 peer."""
    cheeses = chain(3, miner=ADDR)
    manager = make_member("aa", clock, cheeses)
    source = Raw(manager, host="10.0.0.5")
    source.hello(node_id="55", features=FEATURES)
    other = Raw(manager, host="10.0.0.6")
    other.hello(node_id="66", features=FEATURES)
    plain = Raw(manager, host="10.0.0.7")
    plain.hello(node_id="77")
    for raw in (source, other, plain):
        raw.replies()
    return manager, cheeses, source, other, plain


def announcements(raw):
    return [m for m in raw.replies() if m["type"].startswith("ANNOUNCE")]


def reactor_turn(clock: Clock) -> None:
    """Run the delayed calls due now, not the ones they make: a reactor's
    runUntilCurrent, which comes between two polls (``Clock.advance`` would
    also run the calls made meanwhile)."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in sorted(due, key=lambda c: c.getTime()):
        if call.active():
            clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class EarlyCase(SynchronousTestCase):
    """A clock at NOW, and every cheese counts as big enough for its validation to wait."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.patch(compact, "EARLY_MIN_TXS", 1)


class EarlyRelayTests(EarlyCase):
    """A rebuilt compact cheese that would be the new best goes on before its validation."""

    def test_a_new_best_compact_cheese_goes_on_before_it_is_validated(self) -> None:
        manager, cheeses, source, other, plain = setup(self.clock)
        txs = [sign_tx(KEY, BOB, 1, 1, 0, "a")]
        manager.node.submit_tx(txs[0])
        other.replies(), source.replies(), plain.replies()
        fourth = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, txs, note="early")
        assert source.send(compact_announcement(fourth)) == []
        assert announcements(other) == [], "pushed at the reactor's turn after this poll's reads"
        reactor_turn(self.clock)
        assert announcements(other) == [compact_announcement(fourth)], "relayed before validation"
        assert manager.node.stack.tip.smell == cheeses[-1]["smell"], "not validated yet"
        assert announcements(plain) == [], (
            "a version-1 peer gets the whole cheese only once it is valid"
        )
        self.clock.advance(0)
        assert manager.node.stack.tip.smell == fourth["smell"]
        assert announcements(plain) == [{"type": "ANNOUNCE", "cheese": fourth}]
        assert announcements(other) == [], "compact peers are not sent it twice"
        assert manager.compact.early_relayed == 1

    def test_a_peer_asking_for_the_transactions_meanwhile_gets_them(self) -> None:
        manager, cheeses, source, other, plain = setup(self.clock)
        txs = [sign_tx(KEY, BOB, 1, 1, 0, "a")]
        fourth = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, txs)
        [ask] = source.send(compact_announcement(fourth))
        source.send({"type": "TXS", "transactions": txs, "id": ask["id"]})
        reactor_turn(self.clock)
        assert announcements(other) == [compact_announcement(fourth)]
        [reply] = other.send(
            {"type": "GET_TXS", "txids": [txid(txs[0])], "smell": fourth["smell"], "id": 7}
        )
        assert reply == {"type": "TXS", "transactions": txs, "id": 7}, (
            "answered from the cheese being validated"
        )
        self.clock.advance(0)
        assert manager.node.stack.tip.smell == fourth["smell"]

    def test_a_cheese_that_would_not_be_the_new_best_is_not_rebuilt(self) -> None:
        """A compact side-branch cheese is neither rebuilt nor relayed (an attacker could
        fill the rebuild table with them at the network's lowest bits); the branch comes
        by a sync once it has more work."""
        manager, cheeses, source, other, plain = setup(self.clock)
        side = mine_child(
            cheeses[-2], cheeses[-2]["bits"], ADDR, [], note="side"
        )  # the same height as our tip
        assert source.send(compact_announcement(side)) == []
        assert announcements(other) == [] and manager.compact.early_relayed == 0
        assert side["smell"] not in manager.node.stack.nodes and not manager.compact.rebuilding
        beyond = mine_child(
            side, side["bits"], ADDR, [], note="beyond"
        )  # now the branch has more work
        asked = source.send(compact_announcement(beyond))
        assert [m["type"] for m in asked] in (["GET_HEADERS"], ["GET_CHEESES"]), "an orphan: a sync"

    def test_a_small_cheese_is_validated_at_once_its_compact_announcements_written_in_the_same_turn(
        self,
    ) -> None:
        self.patch(compact, "EARLY_MIN_TXS", 50)
        manager, cheeses, source, other, plain = setup(self.clock)
        fourth = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, [], note="small")
        assert source.send(compact_announcement(fourth)) == []
        assert manager.node.stack.tip.smell == fourth["smell"], "no reactor turn needed"
        assert announcements(plain) == [{"type": "ANNOUNCE", "cheese": fourth}]
        reactor_turn(self.clock)  # the transports write both at the poll after it
        assert announcements(other) == [compact_announcement(fourth)], "once"
        assert manager.compact.early_relayed == 1 and manager.relay.pending == {}

    def test_a_peer_that_announced_the_cheese_meanwhile_is_not_sent_it(self) -> None:
        """Announcements read in the same poll tell us who has the cheese: the
        early relay of the reactor's next turn skips them (and the source)."""
        manager, cheeses, source, other, plain = setup(self.clock)
        third = Raw(manager, host="10.0.0.8")
        third.hello(node_id="88", features=FEATURES)
        third.replies()
        txs = [sign_tx(KEY, BOB, 1, 1, 0, "a")]
        manager.node.submit_tx(txs[0])
        for raw in (source, other, third, plain):
            raw.replies()
        fourth = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, txs, note="flood")
        assert source.send(compact_announcement(fourth)) == []
        assert other.send(compact_announcement(fourth)) == [], (
            "a second announcement, while it waits: ignored"
        )
        reactor_turn(self.clock)
        assert announcements(third) == [compact_announcement(fourth)]
        assert announcements(other) == [] and announcements(source) == []
        self.clock.advance(0)
        assert manager.node.stack.tip.smell == fourth["smell"]
        assert other.send(compact_announcement(fourth)) == [], (
            "and once it is ours: ignored, unread"
        )
        assert manager.relay.holders[fourth["smell"]] >= {source.proto, other.proto}


class EarlyRelayPenaltyTests(EarlyCase):
    """A bad header is refused before any GET_TXS; a bad body costs the relayed points."""

    def test_a_header_that_breaks_a_rule_is_refused_before_any_transaction_is_asked(self) -> None:
        manager, cheeses, source, other, plain = setup(self.clock)
        # not in the mempool: a valid header would make us ask
        txs = [sign_tx(KEY, BOB, 1, 1, 0, "a")]
        wrong = mine_child(
            cheeses[-1], cheeses[-1]["bits"], ADDR, txs, timestamp=cheeses[-1]["timestamp"] - 1
        )
        [error] = source.send(compact_announcement(wrong))
        assert (
            error["type"] == "ERROR"
            and error["code"] == "invalid-cheese"
            and "timestamp" in error["message"]
        )
        assert source.proto.score == ERROR_POINTS["invalid-cheese"]
        assert announcements(other) == [] and manager.node.stack.tip.smell == cheeses[-1]["smell"]

    def test_an_invalid_body_costs_the_announcer_only_the_relayed_points(self) -> None:
        manager, cheeses, source, other, plain = setup(self.clock)
        overspend = [sign_tx(KEY, BOB, 10**12, 1, 0, "too much")]  # signed, but ADDR cannot pay it
        bad = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, overspend)
        [ask] = source.send(compact_announcement(bad))
        assert ask["type"] == "GET_TXS"
        assert source.send({"type": "TXS", "transactions": overspend, "id": ask["id"]}) == []
        reactor_turn(self.clock)
        assert announcements(other) == [compact_announcement(bad)], (
            "its header was valid: relayed on"
        )
        self.clock.advance(0)
        [error] = source.replies()
        assert error["type"] == "ERROR" and error["code"] == "invalid-cheese"
        assert source.proto.score == RELAYED_INVALID_POINTS < ERROR_POINTS["invalid-cheese"]
        assert manager.node.stack.tip.smell == cheeses[-1]["smell"] and announcements(plain) == []
        [again] = other.send(compact_announcement(bad))  # the other peer relayed it early too
        assert again["code"] == "invalid-cheese", "remembered as invalid, not asked for again"
        assert other.proto.score == RELAYED_INVALID_POINTS
        assert announcements(source) == [], "and not relayed again"

    def test_a_whole_invalid_announce_still_costs_the_full_points(self) -> None:
        manager, cheeses, source, other, plain = setup(self.clock)
        overspend = [sign_tx(KEY, BOB, 10**12, 1, 0, "too much")]
        bad = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, overspend)
        [error] = plain.send({"type": "ANNOUNCE", "cheese": bad})
        assert error["code"] == "invalid-cheese"
        assert plain.proto.score == ERROR_POINTS["invalid-cheese"]
        assert announcements(other) == []

    def test_a_small_cheese_refused_at_once_is_not_relayed_at_the_next_turn(self) -> None:
        self.patch(compact, "EARLY_MIN_TXS", 50)
        manager, cheeses, source, other, plain = setup(self.clock)
        overspend = [sign_tx(KEY, BOB, 10**12, 1, 0, "too much")]
        bad = mine_child(cheeses[-1], cheeses[-1]["bits"], ADDR, overspend)
        [ask] = source.send(compact_announcement(bad))
        [error] = source.send({"type": "TXS", "transactions": overspend, "id": ask["id"]})
        assert error["code"] == "invalid-cheese" and source.proto.score == RELAYED_INVALID_POINTS
        reactor_turn(self.clock)
        assert announcements(other) == [] and announcements(plain) == []
