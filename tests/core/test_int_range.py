"""Section 1's integer range, 0 <= x < 2^63, at its boundary: one MAX_INT
(core/formats.py) for the cheese fields, the header fields, the transaction
fields and the codec's default range."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.cheese import check_header_format
from cheesecoin.core.errors import BadMessage, InvalidCheese, ProtocolError
from cheesecoin.core.formats import MAX_INT
from cheesecoin.core.rules import check_header
from cheesecoin.core.tx import check_tx_format
from cheesecoin.testing.chain import make_network
from cheesecoin.wire import codec

LAST = 2**63 - 1  # the last integer section 1 allows
NET = make_network("int-range", bits=1)


def cheese_with(**changes: Any) -> dict:
    cheese = {
        "parent_smell": "ab" * 20,
        "sequence_number": 1,
        "timestamp": 1,
        "bits": 1,
        "unit_of_information": {},
        "nonce": 0,
        "smell": "cd" * 20,
    }
    cheese.update(changes)
    return cheese


def header_with(**changes: Any) -> dict:
    header = cheese_with(**changes)
    header["info_hash"] = header.pop("unit_of_information") or "ef" * 20
    return header


def tx_with(**changes: Any) -> dict:
    tx = {
        "from": "1" * 64,
        "to": "2" * 64,
        "amount": 1,
        "fee": 0,
        "nonce": 0,
        "memo": "",
        "signature": "3" * 128,
    }
    tx.update(changes)
    return tx


class IntRangeTest(SynchronousTestCase):
    def test_max_int_is_the_last_integer_of_section_1(self) -> None:
        self.assertEqual(MAX_INT, LAST)

    def test_cheese_fields(self) -> None:
        for key in ("sequence_number", "timestamp"):
            check_header_format(cheese_with(**{key: LAST}))  # accepted
            with self.assertRaises(InvalidCheese) as caught:
                check_header_format(cheese_with(**{key: LAST + 1}))
            self.assertEqual(caught.exception.rule, "fields")

    def test_header_fields(self) -> None:
        for key in ("sequence_number", "timestamp"):
            # In range: the header gets as far as its smell (which is not its preimage's).
            with self.assertRaises(ProtocolError) as caught:
                check_header(header_with(**{key: LAST}), NET)
            self.assertIn("smell", str(caught.exception))
            with self.assertRaises(BadMessage):
                check_header(header_with(**{key: LAST + 1}), NET)

    def test_tx_fields(self) -> None:
        for key in ("amount", "fee", "nonce"):
            self.assertIsNone(check_tx_format(tx_with(**{key: LAST})))
            fault = check_tx_format(tx_with(**{key: LAST + 1}))
            self.assertIsNotNone(fault)
            assert fault is not None
            self.assertEqual(fault[0], "tx-fields")

    def test_codec_default_range(self) -> None:
        self.assertEqual(codec.get_int({"n": LAST}, "n"), LAST)
        with self.assertRaises(BadMessage):
            codec.get_int({"n": LAST + 1}, "n")
