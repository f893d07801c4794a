"""The saved address book: ``peers.json`` in the data directory holds the
anchors (our outbound peers), the tried addresses and the new ones; the
anchors are dialled before any other address after a restart. (Issue 26:
it used to save every peer that completed a handshake, inbound ones by their
claimed port, and dial them all first: an eclipse after a restart.)"""

from __future__ import annotations

import json
import os
import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.p2p.peers import MAX_ANCHORS, MAX_SAVED_ADDRESSES, AddressBook
from cheesecoin.storage.peerfile import FORMAT, PEERS_FILE, load_peers, save_peers
from cheesecoin.testing.fakes import Net, make_member, ready_raw
from tests.cases import temp_path


class SavedAddressBookTests(SynchronousTestCase):
    """Anchors and tried addresses saved first, the file capped, anchors dialled first."""

    def test_anchors_then_tried_most_recent_first_then_new_and_capped(self) -> None:
        book = AddressBook(random.Random(1))
        book.add(
            [{"host": "10.0.0.%d" % i, "port": 24331} for i in range(1, 5)], "tracker"
        )  # heard of
        for i in range(100):
            book.connected(True, ("10.1.0.%d" % i, 24331), None, now=1000.0 + i)  # dialled, worked
        saved = book.to_save()
        anchors, tried = saved[:MAX_ANCHORS], saved[MAX_ANCHORS:100]
        assert [e["host"] for e in anchors] == [
            "10.1.0.%d" % i for i in range(100 - MAX_ANCHORS, 100)
        ]
        assert all(e["anchor"] and e["tried"] for e in anchors)
        assert [e["last_seen"] for e in tried] == sorted(
            (e["last_seen"] for e in tried), reverse=True
        )
        assert (
            all(e["tried"] and "anchor" not in e for e in tried) and len(tried) == 100 - MAX_ANCHORS
        )
        assert sorted(e["host"] for e in saved[100:]) == ["10.0.0.%d" % i for i in range(1, 5)]
        assert all(e["source"] == "tracker" and "tried" not in e for e in saved[100:])
        for s in range(60):  # many sources, many groups: more than the file holds
            book.add(
                [{"host": "%d.%d.0.1" % (s + 1, g), "port": 1} for g in range(40)],
                "%d.9.9.9" % (s + 1),
            )
        assert len(book.to_save()) == MAX_SAVED_ADDRESSES
        assert book.to_save()[:100] == saved[:100]

    def test_only_a_peer_we_dialled_is_an_anchor_and_the_anchors_are_dialled_first(self) -> None:
        clock = Clock()
        clock.advance(5000)
        manager, other = make_member("aa", clock), make_member("cc", clock)
        net = Net(clock)
        client, _server = net.link(manager, other)  # we dial "cc": tried, an anchor
        assert client.ready
        raw = ready_raw(manager, host="10.0.0.5")  # an inbound peer claiming port 5000: new only
        assert raw.proto.ready
        saved = {(e["host"], e["port"]): e for e in manager.addresses.to_save()}
        cc = (net.host(other), 24331)
        assert saved[cc] == {
            "host": cc[0],
            "port": 24331,
            "tried": True,
            "anchor": True,
            "last_seen": 5000,
        }
        assert saved[("10.0.0.5", 5000)] == {"host": "10.0.0.5", "port": 5000, "source": "10.0.0.5"}

        dialled = []
        fresh = make_member(
            "bb",
            clock,
            target_peers=2,
            dialer=lambda host, port, factory: dialled.append(host) or _never(),
        )
        fresh.addresses.add(
            [{"host": "10.9.0.%d" % i, "port": 24331} for i in range(1, 40)], "tracker"
        )
        legacy = {
            "host": "10.0.0.6",
            "port": 24331,
            "last_seen": 5000,
        }  # a format-1 entry: new, from itself
        loaded = fresh.addresses.load_saved(
            list(saved.values())
            + [
                legacy,
                "junk",
                {"host": "", "port": 1},
                {"host": "10.0.0.7", "port": 99999},
                {"host": "10.0.0.8", "port": 1, "last_seen": 10**400},
            ]
        )
        assert loaded == 4
        assert fresh.addresses.known[("10.0.0.6", 24331)].tried is False
        assert fresh.addresses.known[("10.0.0.8", 1)].last_seen == 0
        assert fresh.addresses.anchors == [cc]
        fresh.refill()
        assert dialled[0] == cc[0] and len(dialled) == 2, dialled

    def test_the_file_round_trips_and_bad_files_are_ignored_with_a_reason(self) -> None:
        tmp_path = temp_path(self)
        assert load_peers(str(tmp_path)) == ([], None)
        save_peers(str(tmp_path), [{"host": "10.0.0.5", "port": 24331, "last_seen": 7}])
        assert load_peers(str(tmp_path)) == (
            [{"host": "10.0.0.5", "port": 24331, "last_seen": 7}],
            None,
        )
        assert json.loads((tmp_path / PEERS_FILE).read_text())["format"] == FORMAT == 2
        assert not os.path.exists(tmp_path / (PEERS_FILE + ".tmp"))
        path = tmp_path / PEERS_FILE
        old = [{"host": "10.0.0.5", "port": 24331, "last_seen": 7}]
        path.write_text(
            json.dumps({"format": 1, "peers": old})
        )  # a file of the old format still loads
        assert load_peers(str(tmp_path)) == (old, None)
        for content, why in (
            (b"\xff\xfe", "not JSON"),
            (b"[1, 2]", "not a saved address book"),
            (json.dumps({"format": 9, "peers": []}).encode(), "not a saved address book"),
            (json.dumps({"format": True, "peers": []}).encode(), "not a saved address book"),
            (b"[" * 200000, "not JSON"),  # nested too deep for the parser
            (b" " * (2 * 1024 * 1024), "larger than"),
        ):
            path.write_bytes(content)
            entries, reason = load_peers(str(tmp_path))
            assert entries == [] and why in reason


def _never():
    from twisted.internet.defer import Deferred

    return Deferred()
