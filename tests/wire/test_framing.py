"""JSON-line framing and message rules (docs/protocol.md section 1): lineproto + wire."""

from __future__ import annotations

import json

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.errors import BadMessage, ProtocolError
from cheesecoin.wire import codec as wire
from cheesecoin.wire.lineproto import JsonLineProtocol
from tests.cases import case

MAX = wire.MAX_LINE
assert MAX == 4 * 1024 * 1024


class PingProtocol(JsonLineProtocol):
    """The smallest protocol: PING -> PONG."""

    def __init__(self) -> None:
        super().__init__()
        self.pings: list[dict] = []

    def msg_PING(self, msg: dict) -> None:
        self.pings.append(msg)
        self.reply(msg, {"type": "PONG"})


def connect() -> tuple[PingProtocol, StringTransport]:
    proto = PingProtocol()
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def replies(transport: StringTransport) -> list[dict]:
    data = transport.value()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def send(line: bytes) -> tuple[list[dict], StringTransport]:
    proto, transport = connect()
    proto.dataReceived(line)
    return replies(transport), transport


def padded_ping(length: int) -> bytes:
    """A PING line of exactly ``length`` bytes (without its newline)."""
    head, tail = b'{"type":"PING","pad":"', b'"}'
    return head + b"x" * (length - len(head) - len(tail)) + tail


def assert_error(line: bytes, code: str) -> dict:
    got, transport = send(line)
    assert len(got) == 1, got
    assert got[0]["type"] == "ERROR" and got[0]["code"] == code, got
    assert isinstance(got[0]["message"], str) and got[0]["message"]
    assert not transport.disconnecting
    return got[0]


BAD_MESSAGES = [  # lines refused as bad-message, no id echoed
    b'{"type":"PING","n":123456789012345678901234567890}',
    b'{"type":"PING","n":' + b"9" * 5000 + b"}",
    b'{"type":"PING","n":1.5}',
    b'{"type":"PING","n":1e3}',
    b'{"type":"PING","n":-0.0}',
    b'{"type":"PING","n":NaN}',
    b'{"type":"PING","n":Infinity}',
    b'{"type":"PING","n":-Infinity}',
    b'{"type":"PING","s":"\\ud800"}',
    b'{"type":"PING","s":"x\\udfffy"}',
    b'{"type":"PING","\\ud83d":1}',
    b"[1,2]",
    b'"PING"',
    b"3",
    b"null",
    b"{}",
    b'{"type":5}',
    b'{"type":null}',
    b'{"type":"PING","id":1.0}',
    b'{"type":"PING","id":[1]}',
    b'{"type":"PING","id":true}',
    b'{"type":"PING","id":null}',
]

BAD_WITH_ID = [  # lines refused as bad-message that still echo their id 9
    b'{"type":"PING","id":9,"n":1.5}',
    b'{"id":9,"type":"PING","n":NaN}',
    b'{"type":"PING","id":9,"n":123456789012345678901234567890}',
    b'{"type":"PING","id":9,"s":"\\udc00"}',
    b'{"type":7,"id":9}',
    b'{"id":9}',
]


# -- splitting and joining -------------------------------------------------------


class SplittingTests(SynchronousTestCase):
    """Lines split byte by byte, many in one write, partial lines, CRLF."""

    def test_message_split_byte_by_byte(self) -> None:
        proto, transport = connect()
        data = b'{"type":"PING","id":1}\n{"type":"PING","id":"two"}\n'
        for i in range(len(data)):
            proto.dataReceived(data[i : i + 1])
        assert replies(transport) == [{"type": "PONG", "id": 1}, {"type": "PONG", "id": "two"}]

    def test_many_messages_in_one_write(self) -> None:
        proto, transport = connect()
        proto.dataReceived(b"".join(b'{"type":"PING","id":%d}\n' % i for i in range(1000)))
        assert replies(transport) == [{"type": "PONG", "id": i} for i in range(1000)]
        assert len(proto._buffer) == 0

    def test_partial_line_waits_for_rest(self) -> None:
        proto, transport = connect()
        proto.dataReceived(b'{"type":"PING"}\n{"type":')
        assert replies(transport) == [{"type": "PONG"}]
        proto.dataReceived(b'"PING","id":5}\n')
        assert replies(transport) == [{"type": "PONG"}, {"type": "PONG", "id": 5}]

    def test_crlf_tolerated(self) -> None:
        got, _ = send(b'{"type":"PING","id":1}\r\n{"type":"PING"}\r\n')
        assert got == [{"type": "PONG", "id": 1}, {"type": "PONG"}]


# -- line length -------------------------------------------------------------------


class CountingBuffer(bytearray):
    """A receive buffer that counts the bytes its ``find`` calls look at."""

    scanned = 0
    calls = 0

    def find(self, sub, start=0, *args):  # type: ignore[override]
        CountingBuffer.calls += 1
        CountingBuffer.scanned += len(self) - start
        return super().find(sub, start, *args)


class LineLengthTests(SynchronousTestCase):
    """4 MiB accepted, one byte more refused and closed, found before the newline, scanned once."""

    def test_exactly_4mib_line_accepted(self) -> None:
        line = padded_ping(MAX)
        assert len(line) == MAX
        proto, transport = connect()
        proto.dataReceived(line + b"\n")
        assert replies(transport) == [{"type": "PONG"}]
        assert not transport.disconnecting
        # The tolerated "\r" does not count against the limit.
        transport.clear()
        proto.dataReceived(line + b"\r\n")
        assert replies(transport) == [{"type": "PONG"}]

    def test_4mib_plus_one_refused_and_closed(self) -> None:
        proto, transport = connect()
        proto.dataReceived(padded_ping(MAX + 1) + b"\n" + b'{"type":"PING"}\n')
        got = replies(transport)
        assert [m["code"] for m in got] == ["too-long"]
        assert transport.disconnecting
        # Nothing more is read once closing.
        proto.dataReceived(b'{"type":"PING"}\n')
        assert len(replies(transport)) == 1

    def test_too_long_detected_before_newline(self) -> None:
        proto, transport = connect()
        proto.dataReceived(b"x" * (MAX + 1))
        assert transport.value() == b""  # could still be 4 MiB + "\r"
        proto.dataReceived(b"x")
        assert [m["code"] for m in replies(transport)] == ["too-long"]
        assert transport.disconnecting
        assert len(proto._buffer) == 0

    def test_long_line_byte_by_byte_is_scanned_linearly(self) -> None:
        self.scanned_linearly(1)

    def test_long_line_in_pieces_is_scanned_linearly(self) -> None:
        self.scanned_linearly(1024)

    def scanned_linearly(self, piece: int) -> None:
        """A line over 4 MiB arriving ``piece`` bytes at a time."""
        self.patch(CountingBuffer, "scanned", 0)
        self.patch(CountingBuffer, "calls", 0)
        proto, transport = connect()
        proto._buffer = CountingBuffer()
        data = b"x" * (MAX + 1) + b"\n"
        sent = 0
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            proto.dataReceived(chunk)
            sent += len(chunk)
            if proto.closing:
                break
        assert [m["code"] for m in replies(transport)] == ["too-long"]
        assert transport.disconnecting
        # Each byte is searched for "\n" once: no re-scanning of the buffer.
        assert CountingBuffer.calls <= sent // piece + 1
        assert CountingBuffer.scanned <= sent


# -- JSON and field rules ----------------------------------------------------------------


class JsonAndFieldRuleTests(SynchronousTestCase):
    """bad-json, bad-message and unknown-type, and what is accepted."""

    def test_invalid_utf8_is_bad_json(self) -> None:
        assert_error(b'{"type":"PING","s":"\xff\xfe"}\n', "bad-json")

    def test_not_json_is_bad_json(self) -> None:
        for line in [b"{", b"not json", b'{"type":"PING"} x', b"", b"{'type':'PING'}"]:
            with case(line=line):
                assert_error(line + b"\n", "bad-json")

    def test_deep_nesting_is_bad_json_without_crash(self) -> None:
        assert_error(b"[" * 100000 + b"\n", "bad-json")
        assert_error(b'{"type":"PING","x":' + b"[" * 100000 + b"]" * 100000 + b"}\n", "bad-json")

    def test_bad_message(self) -> None:
        for line in BAD_MESSAGES:
            with case(line=line):
                error = assert_error(line + b"\n", "bad-message")
                assert "id" not in error

    def test_valid_strings_and_integers_accepted(self) -> None:
        got, _ = send(
            b'{"type":"PING","pair":"\\ud83d\\ude00","esc":"\\\\ud800","big":9223372036854775807,'
            b'"neg":-5,"text":"\xc3\xa9"}\n'
        )
        assert got == [{"type": "PONG"}]

    def test_unknown_type(self) -> None:
        for line in [
            b'{"type":"NOPE"}',
            b'{"type":"ping"}',
            b'{"type":""}',
            b'{"type":"dispatch"}',
        ]:
            with case(line=line):
                assert_error(line + b"\n", "unknown-type")


# -- ids -------------------------------------------------------------------------------


class IdTests(SynchronousTestCase):
    """The id is echoed on replies and errors, unless it is itself bad."""

    def test_id_echoed_on_reply_and_error(self) -> None:
        for msg_id in [0, 7, -3, 2**70, "", "abc", "é\u2603"]:
            with case(msg_id=msg_id):
                encoded = json.dumps(msg_id).encode()
                got, _ = send(b'{"type":"PING","id":' + encoded + b"}\n")
                assert got == [{"type": "PONG", "id": msg_id}]
                error = assert_error(b'{"type":"NOPE","id":' + encoded + b"}\n", "unknown-type")
                assert error["id"] == msg_id

    def test_id_echoed_on_bad_message_from_parsing(self) -> None:
        for line in BAD_WITH_ID:
            with case(line=line):
                error = assert_error(line + b"\n", "bad-message")
                assert error["id"] == 9

    def test_no_id_when_the_id_itself_is_bad(self) -> None:
        for line in [b'{"type":"PING","id":"\\ud800"}', b'{"type":"PING","id":1e400,"n":1.5}']:
            assert "id" not in assert_error(line + b"\n", "bad-message")


# -- error counting ------------------------------------------------------------------------


class ErrorCountingTests(SynchronousTestCase):
    """Ten errors close the connection; a handler's exception is an ERROR, not a crash."""

    def test_ten_errors_close_the_connection(self) -> None:
        proto, transport = connect()
        for i in range(9):
            proto.dataReceived(b'{"type":"NOPE","id":%d}\n' % i)
        assert not transport.disconnecting
        proto.dataReceived(b'{"type":"PING"}\n')  # a good message does not reset the count
        assert not transport.disconnecting
        proto.dataReceived(b"oops\n" + b'{"type":"PING","id":"late"}\n')
        got = replies(transport)
        assert [m.get("code") for m in got] == ["unknown-type"] * 9 + [None, "bad-json"]
        assert [m.get("id") for m in got[:9]] == list(range(9))
        assert transport.disconnecting
        assert proto.errors == 10

    def test_handler_exception_becomes_error_not_crash(self) -> None:
        class Broken(PingProtocol):
            def msg_BOOM(self, msg: dict) -> None:
                raise KeyError("boom")

        proto, transport = Broken(), StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b'{"type":"BOOM","id":3}\n{"type":"PING"}\n')
        got = replies(transport)
        assert got[0]["type"] == "ERROR" and got[0]["id"] == 3
        assert got[1] == {"type": "PONG"}
        assert len(self.flushLoggedErrors(KeyError)) == 1, "the handler's exception is logged, once"


# -- wire helpers ------------------------------------------------------------------------------


class WireHelperTests(SynchronousTestCase):
    """The field readers and parse_message of cheesecoin.wire.codec."""

    def test_wire_field_readers(self) -> None:
        msg = {"type": "X", "port": 80, "big": 2**63, "s": "h", "b": True, "f": None}
        assert wire.get_port(msg, "port") == 80
        for key in ["big", "b", "s", "missing"]:
            with self.assertRaises(BadMessage):
                wire.get_port(msg, key)
        with self.assertRaises(BadMessage):
            wire.get_int(msg, "big")
        assert wire.get_int(msg, "big", hi=2**64 - 1) == 2**63
        assert wire.get_str(msg, "s") == "h"
        assert wire.get_host(msg, "nohost", default=None) is None
        with self.assertRaises(BadMessage):
            wire.get_host({"h": "a b"}, "h")
        with self.assertRaises(BadMessage):
            wire.get_host({"h": ""}, "h")
        with self.assertRaises(BadMessage):
            wire.get_port({"p": 0}, "p")
        with self.assertRaises(BadMessage):
            wire.get_port({"p": 65536}, "p")

    def test_wire_parse_message_errors_are_protocol_errors(self) -> None:
        with self.assertRaises(ProtocolError) as info:
            wire.parse_message(b"\xff")
        assert info.exception.code == "bad-json"
        assert wire.parse_message(b'{"type":"A"}\r') == {"type": "A"}
        assert wire.dumps({"type": "A", "s": "é"}) == '{"type":"A","s":"é"}\n'.encode()

    def test_integer_digit_limit_on_both_decoding_paths(self) -> None:
        """Lines without a long run of digits take the decoder without the integer
        hook: the same limit holds, and digits inside strings are not numbers."""
        assert wire.parse_message(b'{"type":"A","n":' + b"9" * 24 + b"}")["n"] == int("9" * 24)
        assert wire.parse_message(b'{"type":"A","memo":"' + b"1" * 40 + b'","n":7}') == {
            "type": "A",
            "memo": "1" * 40,
            "n": 7,
        }
        for line in (
            b'{"type":"A","n":' + b"9" * 25 + b"}",
            b'{"type":"A","memo":"' + b"1" * 40 + b'","n":1.5}',
        ):
            with self.assertRaises(BadMessage):
                wire.parse_message(line)
