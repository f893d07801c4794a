"""The saved address book: members that worked are kept in the data directory
(``peers.json``) and dialled before any other address after a restart."""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.p2p.peers import MAX_SAVED_ADDRESSES, AddressBook
from cheesecoin.storage.peerfile import PEERS_FILE, load_peers, save_peers
from cheesecoin.testing.fakes import make_member, ready_raw

from tests.cases import temp_path


class SavedAddressBookTests(SynchronousTestCase):
    """Members that worked are saved, capped, and dialled first after a restart."""

    def test_members_that_worked_are_saved_most_recent_first_and_capped(self) -> None:
        book = AddressBook()
        book.add([{"host": "10.0.0.%d" % i, "port": 24331} for i in range(1, 5)])  # heard of, never worked
        for i in range(MAX_SAVED_ADDRESSES + 10):
            book.worked(("10.1.%d.%d" % divmod(i, 250), 24331), now=1000.0 + i)
        saved = book.to_save()
        assert len(saved) == MAX_SAVED_ADDRESSES
        assert saved[0] == {"host": "10.1.1.15", "port": 24331, "last_seen": 1000 + MAX_SAVED_ADDRESSES + 9}
        assert not any(entry["host"].startswith("10.0.0.") for entry in saved), "an address that never worked was saved"

    def test_a_handshake_marks_the_peer_worked_and_the_saved_ones_are_dialled_first(self) -> None:
        clock = Clock()
        clock.advance(5000)
        manager = make_member("aa", clock)
        raw = ready_raw(manager, host="10.0.0.5")
        assert raw.proto.ready
        assert manager.addresses.to_save()[0]["host"] == "10.0.0.5"

        dialled = []
        fresh = make_member("bb", clock, target_peers=2, dialer=lambda host, port, factory: dialled.append(host) or _never())
        fresh.addresses.add([{"host": "10.9.0.%d" % i, "port": 24331} for i in range(1, 40)])
        loaded = fresh.addresses.load_saved([{"host": "10.0.0.5", "port": 24331, "last_seen": 5000},
                                             {"host": "10.0.0.6", "port": 24331}, "junk", {"host": "", "port": 1},
                                             {"host": "10.0.0.7", "port": 99999}])
        assert loaded == 2
        fresh.refill()
        assert sorted(dialled) == ["10.0.0.5", "10.0.0.6"], dialled

    def test_the_file_round_trips_and_bad_files_are_ignored_with_a_reason(self) -> None:
        tmp_path = temp_path(self)
        assert load_peers(str(tmp_path)) == ([], None)
        save_peers(str(tmp_path), [{"host": "10.0.0.5", "port": 24331, "last_seen": 7}])
        assert load_peers(str(tmp_path)) == ([{"host": "10.0.0.5", "port": 24331, "last_seen": 7}], None)
        assert not os.path.exists(tmp_path / (PEERS_FILE + ".tmp"))
        path = tmp_path / PEERS_FILE
        for content, why in ((b"\xff\xfe", "not JSON"), (b"[1, 2]", "not a saved address book"),
                             (json.dumps({"format": 9, "peers": []}).encode(), "not a saved address book"),
                             (b" " * (2 * 1024 * 1024), "larger than")):
            path.write_bytes(content)
            entries, reason = load_peers(str(tmp_path))
            assert entries == [] and why in reason


def _never():
    from twisted.internet.defer import Deferred

    return Deferred()


