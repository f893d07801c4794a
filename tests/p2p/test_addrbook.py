"""The address book that resists eclipse (issue 26, finding 4): new and tried
kept apart, bucketed by the network group of source and address, tried
entries never pushed out by new ones, anchors dialled first, outbound dials
in distinct groups, PEERS replies that one source cannot fill."""

from __future__ import annotations

import random
from collections import Counter
from typing import List

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.p2p import addrbook
from cheesecoin.p2p.addrbook import (
    BUCKET_SIZE,
    NEW_BUCKETS_PER_SOURCE_GROUP,
    TRIED_BUCKETS_PER_GROUP,
    address_group,
    network_group,
)
from cheesecoin.p2p.peers import MAX_ANCHORS, REPLY_NEW_PER_SOURCE, AddressBook
from cheesecoin.testing.fakes import Net, Raw, make_member
from tests.cases import clock_at

PER_SOURCE_GROUP = (
    NEW_BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE
)  # new entries one source group can hold
PER_TRIED_GROUP = TRIED_BUCKETS_PER_GROUP * BUCKET_SIZE


def peers(hosts: List[str], port: int = 24331) -> List[dict]:
    return [{"host": h, "port": port} for h in hosts]


def public(n: int, second: int = 0) -> str:
    """A public IPv4 address in group ``n + 1``.``second`` (distinct ``n``: distinct /16 groups)."""
    return "%d.%d.%d.%d" % (n // 200 + 1, n % 200 + second, n // 7 % 250, n % 250 + 1)


def nothing_banned(host: str) -> bool:
    return False


class NetworkGroupTests(SynchronousTestCase):
    """/16 for public IPv4, /32 for public IPv6, the host itself for names and local addresses."""

    def test_groups(self) -> None:
        assert network_group("8.8.4.4") == network_group("8.8.200.1") == "v4:8.8"
        assert network_group("8.9.4.4") != network_group("8.8.4.4")
        assert network_group("::ffff:8.8.1.1") == "v4:8.8"  # IPv4-mapped is the IPv4 address
        assert (
            network_group("2001:db9:1::1") == network_group("2001:db9:ffff::2") == "v6:2001:db9::"
        )
        assert network_group("2001:db9::1") != network_group("2001:dba::1")
        # A name by its last two labels: a wildcard domain is one group, however many names.
        assert network_group("Seed.Example.org") == "name:example.org"
        assert network_group("x1.example.org") == network_group("x2.example.org.")
        assert network_group("10.0.0.1") != network_group(
            "10.0.0.2"
        )  # a local net: each host its own
        assert network_group("127.0.0.2") == "lo:127.0.0.2" != network_group("127.0.0.3")
        assert address_group(("127.0.0.1", 5)) != address_group(
            ("127.0.0.1", 6)
        )  # loopback: by port
        assert address_group(("8.8.4.4", 5)) == address_group(("8.8.9.9", 6))


class NewAndTriedTests(SynchronousTestCase):
    """Only an address we dialled becomes tried; an inbound peer's claim is at most new."""

    def test_an_inbound_claim_is_new_and_an_outbound_handshake_is_tried(self) -> None:
        clock = clock_at(5000)
        manager, other = make_member("aa", clock), make_member("cc", clock)
        raw = Raw(manager, host="9.9.9.9")
        raw.hello(port=7000)
        assert raw.proto.ready
        claim = manager.addresses.known[("9.9.9.9", 7000)]
        assert claim.tried is False and claim.source == "9.9.9.9" and claim.last_seen == 0
        net = Net(clock)
        client, _ = net.link(manager, other)
        assert client.ready
        dialled = manager.addresses.known[(net.host(other), 24331)]
        assert dialled.tried is True and dialled.last_seen == 5000
        assert list(manager.addresses.outbound) == [(net.host(other), 24331)]
        client.transport.loseConnection()
        net.flush()
        assert (
            not manager.addresses.outbound
            and manager.addresses.known[(net.host(other), 24331)].tried
        )

    def test_a_flood_of_inbound_claims_from_one_host_stays_within_its_share_of_new(self) -> None:
        manager = make_member("aa", clock_at(5000))
        for port in range(1, 601):
            raw = Raw(manager, host="6.6.6.6", port=40000 + port)
            raw.hello(node_id="%x" % (port + 256), port=port)
            raw.proto.transport.loseConnection()
            raw.proto.connectionLost(None)
        book = manager.addresses
        assert 0 < book.tables.count(tried=False) <= PER_SOURCE_GROUP
        assert book.tables.count(tried=True) == 0 and not book.to_save()[0].get("tried")

    def test_one_source_group_cannot_fill_new_however_many_groups_it_names(self) -> None:
        book = AddressBook(random.Random(7))
        for host in ("5.6.7.8", "5.6.200.1", "5.6.0.9"):  # three hosts of one /16: one source group
            for k in range(10):
                book.add(peers([public(i, k) for i in range(400)]), host)
        assert book.tables.count(tried=False) <= PER_SOURCE_GROUP
        honest = [public(i, 3) for i in range(200, 230)]
        added = sum(book.add(peers([h]), "tracker") for h in honest)
        attacker_buckets = {
            b for b, bucket in enumerate(book.tables.new) if len(bucket) == BUCKET_SIZE
        }
        blocked = sum(
            1
            for h in honest
            if book.tables.new_bucket((h, 24331), network_group("tracker")) in attacker_buckets
        )
        assert added == len(honest) - blocked and added >= len(honest) // 2

    def test_a_tried_entry_is_never_evicted_for_a_new_one(self) -> None:
        book = AddressBook(random.Random(3))
        worked = [
            ("8.8.%d.%d" % divmod(i, 250), 24331) for i in range(PER_TRIED_GROUP + 20)
        ]  # one /16
        for i, address in enumerate(worked):
            book.connected(True, address, None, now=100.0 + i)
        tried = set(book.tables.addresses(tried=True))
        assert len(tried) <= PER_TRIED_GROUP < len(worked)
        assert all(
            book.known[a].tried is False for a in worked if a not in tried
        )  # no room: still new
        for s in range(50):
            book.add(peers([public(i, 7) for i in range(s * 40, s * 40 + 40)]), public(s, 9))
            for i in range(20):
                book.connected(False, None, (public(s, 9), 1000 + i), now=500.0)
        assert set(book.tables.addresses(tried=True)) == tried
        # a newly proven address replaces a failing tried entry, never a working one
        bucket_of = book.tables.tried_bucket
        full = next(
            b for b in range(len(book.tables.tried)) if len(book.tables.tried[b]) == BUCKET_SIZE
        )
        newcomer = next(a for a in worked if a not in tried and bucket_of(a) == full)
        book.connected(True, newcomer, None, now=900.0)
        assert not book.known[newcomer].tried
        victim = next(iter(book.tables.tried[full]))
        book.failed(victim, now=901.0)
        book.connected(True, newcomer, None, now=902.0)
        assert book.known[newcomer].tried and victim not in set(book.tables.addresses(tried=True))
        assert set(book.tables.addresses(tried=True)) == tried - {victim} | {newcomer}

    def test_a_full_new_bucket_takes_a_newcomer_only_in_place_of_a_terrible_entry(self) -> None:
        book = AddressBook(random.Random(5))
        book.add(peers([public(i) for i in range(2000)]), "tracker")
        full = [b for b in book.tables.new if len(b) == BUCKET_SIZE]
        assert full
        late = next(
            public(i, 50)
            for i in range(2000)
            if len(book.tables.new[book.tables.new_bucket((public(i, 50), 24331), "name:tracker")])
            == BUCKET_SIZE
        )
        assert book.add(peers([late]), "tracker") == 0
        bucket = book.tables.new[book.tables.new_bucket((late, 24331), "name:tracker")]
        doomed = next(iter(bucket))
        for t in range(addrbook.NEVER_WORKED_FAILURES):
            book.failed(doomed, now=float(t))
        assert book.add(peers([late]), "tracker") == 1 and doomed not in book.known


class DialTests(SynchronousTestCase):
    """Anchors first, then tried or new; one outbound per network group (loopback exempt)."""

    def test_outbound_dials_keep_to_distinct_groups_but_loopback_is_exempt(self) -> None:
        book = AddressBook(random.Random(2))
        book.add(
            peers(["8.8.%d.1" % i for i in range(10)] + ["9.9.%d.1" % i for i in range(10)]),
            "tracker",
        )
        book.connected(True, ("7.7.1.1", 24331), None, now=1.0)  # an outbound peer in 7.7/16
        book.add(peers(["7.7.%d.2" % i for i in range(10)]), "tracker")
        picked = book.select(8, 10.0, set(), nothing_banned)
        assert sorted(address_group(a) for a in picked) == ["v4:8.8", "v4:9.9"]
        book.dialing.update(picked)
        assert book.select(8, 10.0, set(), nothing_banned) == []
        book.add(
            peers(["127.0.0.1"] * 1)
            + [{"host": "127.0.0.1", "port": p} for p in range(1000, 1010)],
            "tracker",
        )
        assert len(book.select(8, 10.0, set(), nothing_banned)) == 8  # loopback: all may be dialled

    def test_anchors_are_dialled_first_then_tried_and_new_both(self) -> None:
        book = AddressBook(random.Random(4))
        book.load_saved(
            [{"host": public(i), "port": 1, "tried": True, "last_seen": 5} for i in range(20)]
            + [
                {"host": public(i + 50), "port": 1, "tried": True, "anchor": True, "last_seen": 9}
                for i in range(MAX_ANCHORS + 2)
            ]
            + [{"host": public(i + 100), "port": 1, "source": "tracker"} for i in range(20)]
        )
        anchors = [(public(i + 50), 1) for i in range(MAX_ANCHORS)]
        assert book.anchors == anchors
        picked = book.select(MAX_ANCHORS + 6, 0.0, set(), nothing_banned)
        assert picked[:MAX_ANCHORS] == anchors
        rest = Counter(book.known[a].tried for a in picked[MAX_ANCHORS:])
        assert rest[True] and rest[False], rest
        book.failed(anchors[0], now=0.0)
        assert anchors[0] not in book.anchors
        book.connected(
            True, anchors[1], None, now=20.0
        )  # an anchor that answered is an outbound peer
        assert anchors[1] not in book.anchors and book.to_save()[0]["host"] == anchors[1][0]
        book.lost(anchors[1], True, now=30.0)
        assert [e["host"] for e in book.to_save() if e.get("anchor")] == [a[0] for a in anchors[2:]]

    def test_a_restarted_manager_dials_its_anchor_before_a_flood_of_new_addresses(self) -> None:
        dialled: List[str] = []
        fresh = make_member(
            "bb",
            clock_at(100),
            target_peers=8,
            dialer=lambda host, port, factory: dialled.append(host) or Deferred(),
        )
        fresh.addresses.load_saved(
            [{"host": "8.8.8.8", "port": 24331, "tried": True, "anchor": True, "last_seen": 50}]
            + [{"host": "6.6.6.6", "port": p, "source": "6.6.6.6"} for p in range(1, 300)]
        )
        fresh.refill()
        assert (
            dialled[0] == "8.8.8.8" and dialled.count("6.6.6.6") == 1
        )  # one /16, one outbound slot

    def test_the_same_seed_gives_the_same_book_and_choices(self) -> None:
        def run(seed: int) -> tuple:
            book = AddressBook(random.Random(seed))
            for s in range(20):
                book.add(peers([public(i, s) for i in range(60)]), public(s, 100))
            return (sorted(book.known), book.select(8, 0.0, set(), nothing_banned), book.sample(10))

        assert run(11) == run(11)
        assert run(11) != run(12)


class PeersReplyTests(SynchronousTestCase):
    """GET_PEERS: tried first, mixed with new, never filled by one source."""

    def test_tried_first_mixed_with_new_from_many_sources(self) -> None:
        book = AddressBook(random.Random(9))
        for i in range(20):
            book.connected(True, (public(i), 24331), None, now=1.0)
        for s in range(10):
            book.add(peers([public(200 + s * 3 + k) for k in range(3)]), public(s, 150))
        reply = [(e["host"], e["port"]) for e in book.sample(10)]
        assert len(reply) == len(set(reply)) == 10
        assert sum(book.known[a].tried for a in reply) == 6

    def test_one_source_cannot_fill_a_reply(self) -> None:
        book = AddressBook(random.Random(9))
        book.connected(True, ("8.8.8.8", 24331), None, now=1.0)
        book.add(peers([public(i) for i in range(500)]), "6.6.6.6")
        for port in range(1, 50):
            book.connected(False, None, ("6.6.6.7", port), now=2.0)  # claims from the same /16
        reply = [(e["host"], e["port"]) for e in book.sample(10)]
        assert ("8.8.8.8", 24331) in reply
        assert len(reply) == 1 + REPLY_NEW_PER_SOURCE
        book.failed(("8.8.8.8", 24331), now=3.0)  # a failing tried entry is not handed out
        assert ("8.8.8.8", 24331) not in [(e["host"], e["port"]) for e in book.sample(10)]
        assert book.sample(10, exclude=reply[1]) and reply[1] not in [
            (e["host"], e["port"]) for e in book.sample(10, exclude=reply[1])
        ]

    def test_get_peers_of_a_flooded_member_hands_out_the_peer_it_dialled(self) -> None:
        clock = clock_at(5000)
        manager, honest = make_member("aa", clock), make_member("cc", clock)
        Net(clock).link(manager, honest)
        for port in range(1, 300):
            raw = Raw(manager, host="6.6.%d.1" % (port % 200), port=40000 + port)
            raw.hello(node_id="%x" % (port + 256), port=port)
            raw.proto.transport.loseConnection()
            raw.proto.connectionLost(None)
        asker = Raw(manager, host="5.5.5.5")
        asker.hello(node_id="77")
        [reply] = asker.send({"type": "GET_PEERS", "id": 1})
        hosts = [p["host"] for p in reply["peers"]]
        assert "10.1.2.1" in hosts  # the member we dialled (fakes.Net's second host)
        assert sum(h.startswith("6.6.") for h in hosts) <= REPLY_NEW_PER_SOURCE * 2


class SavedEntriesTests(SynchronousTestCase):
    """A damaged saved book never raises: bad entries are skipped."""

    def test_garbage_entries_are_skipped(self) -> None:
        book = AddressBook(random.Random(1))
        junk = [
            None,
            1,
            "x",
            [],
            {"host": 5, "port": 1},
            {"host": "a b", "port": 1},
            {"host": "1.2.3.4", "port": 1, "tried": True, "last_seen": "x"},
            {"host": "1.2.3.5", "port": 1, "tried": "yes", "anchor": True, "last_seen": 4},
            {"host": "1.2.3.6", "port": 1, "source": ["x"]},
            {"host": "1.2.3.7", "port": 1, "source": ""},
            {"host": "1.2.3.8", "port": 1, "tried": True, "anchor": True, "last_seen": True},
        ]
        assert book.load_saved(junk) == 5
        assert not book.anchors and book.tables.count(tried=True) == 0
        assert book.known[("1.2.3.6", 1)].source == "1.2.3.6"


class SpellingTests(SynchronousTestCase):
    """One IP address written many ways is not many addresses (the attack of round three)."""

    def test_other_spellings_of_an_ip_address_are_not_kept(self) -> None:
        book = AddressBook(random.Random(1))
        spellings = ["127.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.0.0.0001", "1.2.3.0004"]
        added = book.add(
            [{"host": h, "port": 24331} for h in spellings]
            + [{"host": "127.0.0.1", "port": 24331}],
            source="127.0.0.9",
        )
        assert added == 1
        assert book.add([{"host": "Seed.Example.ORG", "port": 24331}], source="127.0.0.9") == 1
