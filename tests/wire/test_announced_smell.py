"""``codec.announced_smell``: the smell of an ANNOUNCE or ANNOUNCE_COMPACT line
read without decoding it, so that a member drops the announcements of a
cheese it has unread. It must never name a smell the message does not
announce; a line it cannot read that way is left to the parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.wire.codec import announced_smell, compact_reply_smell, dumps

SMELL = "ab" * 20
PARENT = "cd" * 20


def compact(note: str = "", **header_extra) -> dict:
    header = {
        "parent_smell": PARENT,
        "sequence_number": 4,
        "timestamp": 9,
        "bits": 1,
        "info_hash": "ef" * 20,
        "nonce": 3,
        "smell": SMELL,
        **header_extra,
    }
    msg = {"type": "ANNOUNCE_COMPACT", "header": header, "miner": "12" * 32, "txids": []}
    if note:
        msg["note"] = note
    return msg


def whole(memo: str = "") -> dict:
    tx = {
        "sender": "34" * 32,
        "recipient": "56" * 32,
        "amount": 1,
        "fee": 1,
        "nonce": 0,
        "memo": memo,
        "signature": "78" * 64,
    }
    cheese = {
        "parent_smell": PARENT,
        "sequence_number": 4,
        "timestamp": 9,
        "bits": 1,
        "unit_of_information": {"miner": "12" * 32, "transactions": [tx]},
        "nonce": 3,
        "smell": SMELL,
    }
    return {"type": "ANNOUNCE", "cheese": cheese}


class AnnouncedSmellTests(SynchronousTestCase):
    """The smell of an announcement read without decoding it, or None."""

    def test_our_own_lines_are_read(self) -> None:
        assert announced_smell(dumps(compact())[:-1]) == ("ANNOUNCE_COMPACT", SMELL)
        assert announced_smell(dumps(whole())[:-1]) == ("ANNOUNCE", SMELL)

    def test_other_lines_are_left_to_the_parser(self) -> None:
        announced = dumps({"type": "ANNOUNCED", "cheese": {"smell": SMELL}})[:-1]
        assert announced_smell(announced) is None
        assert announced_smell(dumps({"type": "TX", "tx": {"smell": SMELL}})[:-1]) is None
        assert (
            announced_smell(
                b'{ "type": "ANNOUNCE", "cheese": {"smell": "' + SMELL.encode() + b'"}}'
            )
            is None
        )
        twice = dumps(compact(**{"smell2": 1}))[:-1].replace(
            b'"smell2":1', b'"x":{"smell":"' + PARENT.encode() + b'"}'
        )
        assert announced_smell(twice) is None, (
            "two smells: which one is announced is the parser's to say"
        )
        upper = dumps(compact())[:-1].replace(SMELL.encode(), b"AB" * 20)
        assert announced_smell(upper) is None
        assert (
            announced_smell(dumps(compact())[:-1].replace(SMELL.encode(), SMELL[:-1].encode()))
            is None
        )

    @settings(max_examples=300, deadline=None)
    @given(
        text=st.lists(
            st.sampled_from(['"', "\\", ":", ",", "smell", SMELL, "{", "}", "a", "é"]), max_size=40
        ).map("".join),
        kind=st.sampled_from(["compact", "whole"]),
    )
    def test_a_string_field_never_passes_for_the_smell(self, text: str, kind: str) -> None:
        msg = compact(note=text) if kind == "compact" else whole(memo=text)
        got = announced_smell(dumps(msg)[:-1])
        assert got == (msg["type"], SMELL), (
            "a JSON string escapes its quotes: the one smell is the cheese's"
        )


def reply(rid: object = 7, note: str = "") -> bytes:
    """A COMPACT reply as a member writes it (``LineProtocol.send``: the id last)."""
    msg = dict(compact(note=note), type="COMPACT", id=rid)
    return dumps(msg)[:-1]


class CompactReplySmellTests(SynchronousTestCase):
    """``codec.compact_reply_smell``: (id, smell) of a COMPACT reply read without
    decoding it, so that the answer to a GET_COMPACT for a cheese a high-bandwidth
    peer brought meanwhile is dropped unread; never an id or smell the reply does
    not carry."""

    def test_our_own_replies_are_read(self) -> None:
        assert compact_reply_smell(reply(7)) == (7, SMELL)
        assert compact_reply_smell(reply(0)) == (0, SMELL)
        assert compact_reply_smell(reply(10**14)) == (10**14, SMELL)

    def test_other_lines_are_left_to_the_parser(self) -> None:
        assert compact_reply_smell(dumps(compact())[:-1]) is None  # ANNOUNCE_COMPACT
        assert compact_reply_smell(reply("seven")) is None  # an id that is not ours
        assert compact_reply_smell(reply(-1)) is None
        assert compact_reply_smell(reply(7).replace(b'"id":7', b'"id":07')) is None
        assert compact_reply_smell(reply(7).replace(b'"id":7', b'"id":7.5')) is None
        assert compact_reply_smell(reply(7).replace(b'"id":7', b'"di":7')) is None
        twice = reply(7).replace(b'"txids":[]', b'"txids":[],"x":{"id":8}')
        assert compact_reply_smell(twice) is None, "two ids: the parser's to say"
        upper = reply(7).replace(SMELL.encode(), b"AB" * 20)
        assert compact_reply_smell(upper) is None

    @settings(max_examples=300, deadline=None)
    @given(
        text=st.lists(
            st.sampled_from(['"', "\\", ":", ",", "id", "smell", "8", SMELL, "{", "}", "é"]),
            max_size=40,
        ).map("".join),
    )
    def test_a_string_field_never_passes_for_the_id_or_the_smell(self, text: str) -> None:
        assert compact_reply_smell(reply(7, note=text)) == (7, SMELL), (
            "a JSON string escapes its quotes: the one id and smell are the reply's"
        )
