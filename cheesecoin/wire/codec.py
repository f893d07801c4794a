"""Parsing and checking JSON-line messages (docs/protocol.md section 1), no Twisted.

``parse_message`` turns one line into a dict or raises ``ProtocolError``;
the ``get_*`` helpers read typed fields or raise ``BadMessage``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Optional, Tuple, overload

from cheesecoin.core.errors import BadMessage, ProtocolError
from cheesecoin.core.formats import (  # noqa: F401  (part of the codec's API)
    ADDRESS_RE,
    IDENTITY_RE,
    MAX_INT,
    MAX_LINE,
    NODE_ID_RE,
    SMELL_RE,
)

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")
# More decimal digits than any integer the protocol allows (2^64 has 20).
_MAX_INT_DIGITS = 24


class _FloatSeen(Exception):
    pass


class _IntTooLarge(Exception):
    pass


def _parse_float(text: str) -> Any:
    raise _FloatSeen(text)


def _parse_constant(text: str) -> Any:
    raise _FloatSeen(text)


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise _IntTooLarge(text)
    return int(text)


_decoder = json.JSONDecoder(
    parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant
)
# Without a parse_int hook the C scanner builds integers itself (a Python call
# per integer costs about as much as the rest of a small message). Used only
# for lines without a run of more than _MAX_INT_DIGITS digits, where the hook
# could not have refused anything.
_fast_decoder = json.JSONDecoder(parse_float=_parse_float, parse_constant=_parse_constant)
# (Every digit made "0", then one find: several times cheaper than a regex search.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * (_MAX_INT_DIGITS + 1)


def has_lone_surrogate(value: Any) -> bool:
    """True if any string in ``value`` (recursively) holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(line: bytes) -> Any:
    """Decode one JSON text under the protocol's number and string rules."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad-json", "the line is not valid UTF-8")
    try:
        value = (
            _decoder if _LONG_DIGITS in line.translate(_DIGITS_TO_ZERO) else _fast_decoder
        ).decode(text)
    except _FloatSeen as e:
        raise BadMessage(f"numbers must be integers, got {str(e)[:40]}")
    except _IntTooLarge:
        raise BadMessage("an integer is out of range")
    except RecursionError:
        raise ProtocolError("bad-json", "the JSON is nested too deeply")
    except ValueError as e:
        raise ProtocolError("bad-json", f"not JSON: {str(e)[:80]}")
    if _SURROGATE_ESCAPE.search(line) and has_lone_surrogate(value):
        raise BadMessage("a string holds a lone surrogate")
    return value


def parse_message(line: bytes) -> dict:
    """Parse one line (without its newline) into a message with a string ``type``."""
    if line.endswith(b"\r"):
        line = line[:-1]
    msg = loads(line)
    if not isinstance(msg, dict):
        raise BadMessage("a message must be a JSON object")
    if not isinstance(msg.get("type"), str):
        raise BadMessage("the message has no string field 'type'")
    return msg


_ANNOUNCE_PREFIX = b'{"type":"ANNOUNCE'
_SMELL_KEY = b'"smell":"'
_SMELL_VALUE = re.compile(rb'[0-9a-f]{40}"')


def announced_smell(line: bytes) -> Optional[Tuple[str, str]]:
    """(type, smell) of an ANNOUNCE, ANNOUNCE_COMPACT or ANNOUNCE_HEADER line as our encoder
    writes it, read without decoding it: the line holds exactly one
    ``"smell":"`` (a cheese's or a header's own; inside a JSON string those
    quotes would be escaped). None for any other line, which is then parsed.
    Lets a member drop the announcements of a cheese it has (most of them)
    without decoding each."""
    if not line.startswith(_ANNOUNCE_PREFIX):
        return None
    if line.startswith(b'",', len(_ANNOUNCE_PREFIX)):
        kind = "ANNOUNCE"
    elif line.startswith(b'_COMPACT",', len(_ANNOUNCE_PREFIX)):
        kind = "ANNOUNCE_COMPACT"
    elif line.startswith(b'_HEADER",', len(_ANNOUNCE_PREFIX)):
        kind = "ANNOUNCE_HEADER"  # its header's smell: the only "smell" key of the line
    else:
        return None
    smell = _one_smell(line)
    return None if smell is None else (kind, smell)


_COMPACT_PREFIX = b'{"type":"COMPACT",'
_ID_KEY = b'"id":'
_ID_VALUE = re.compile(rb"(0|[1-9][0-9]{0,14})[,}]")


def compact_reply_smell(line: bytes) -> Optional[Tuple[int, str]]:
    """(id, smell) of a COMPACT reply line as our encoder writes it, read without
    decoding it: the line holds exactly one ``"smell":"`` (its header's) and one
    ``"id":`` (inside a JSON string the quotes would be escaped). None for any other
    line, which is then parsed. Lets a member drop the answer to a GET_COMPACT for a
    cheese a high-bandwidth peer brought meanwhile (most of them) without decoding it."""
    if not line.startswith(_COMPACT_PREFIX):
        return None
    smell = _one_smell(line)
    at = line.find(_ID_KEY)
    start = at + len(_ID_KEY)
    if smell is None or at < 0 or line.find(_ID_KEY, start) >= 0:
        return None
    match = _ID_VALUE.match(line, start)
    return None if match is None else (int(match.group(1)), smell)


def _one_smell(line: bytes) -> Optional[str]:
    """The value of the one ``"smell":"`` of ``line`` (None: none, several, or not a smell)."""
    at = line.find(_SMELL_KEY)
    start = at + len(_SMELL_KEY)
    if at < 0 or line.find(_SMELL_KEY, start) >= 0 or not _SMELL_VALUE.match(line, start):
        return None
    return line[start : start + 40].decode("ascii")


def message_id(msg: Any) -> Any:
    """The message's ``id`` if it is a valid one (string or integer), else None."""
    if not isinstance(msg, dict) or "id" not in msg:
        return None
    value = msg["id"]
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


_lenient_decoder = json.JSONDecoder(
    parse_float=lambda text: None,
    parse_constant=lambda text: None,
    parse_int=lambda text: int(text) if len(text) <= _MAX_INT_DIGITS else None,
)


def salvage_id(line: bytes) -> Any:
    """The valid ``id`` of a line that is JSON but broke a number or string rule.

    Used only on the error path, so that the ERROR a request causes carries
    its ``id`` (docs/protocol.md section 1) even when ``parse_message`` refused it.
    """
    try:
        value = _lenient_decoder.decode(line.rstrip(b"\r").decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    msg_id = message_id(value)
    if isinstance(msg_id, str) and has_lone_surrogate(msg_id):
        return None
    return msg_id


# One encoder for every message: json.dumps with options builds a new
# JSONEncoder (and the C encoder under it) at each call, which costs about as
# much as encoding a small message.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
try:
    from json import encoder as _json_encoder

    # The C encoder JSONEncoder.encode would build, built once. No circular
    # check (our messages are trees): a cycle would be a RecursionError.
    _c_encode = _json_encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _encoder.default, _json_encoder.encode_basestring, None, ":", ",", False, False, True
    )
except (
    ImportError,
    AttributeError,
    TypeError,
):  # pragma: no cover - a Python without the C accelerator
    _c_encode = None


def encode(value: Any) -> bytes:
    """Compact JSON in UTF-8, not ASCII-escaped (messages, and the HTTP API's answers)."""
    if _c_encode is not None and isinstance(value, dict):
        return "".join(_c_encode(value, 0)).encode("utf-8")
    return _encoder.encode(value).encode("utf-8")


def dumps(msg: Any) -> bytes:
    """Encode a message as one line (with its newline)."""
    return encode(msg) + b"\n"


_MISSING = object()


def get_int(msg: dict, key: str, lo: int = 0, hi: int = MAX_INT, default: Any = _MISSING) -> int:
    """Integer field ``key`` with lo <= value <= hi."""
    value = msg.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise BadMessage(f"field '{key}' is missing")
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadMessage(f"field '{key}' must be an integer")
    if not lo <= value <= hi:
        raise BadMessage(f"field '{key}' must be between {lo} and {hi}")
    return value


def get_str(msg: dict, key: str, max_length: int = 1024, default: Any = _MISSING) -> str:
    """String field ``key`` of at most ``max_length`` characters."""
    value = msg.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise BadMessage(f"field '{key}' is missing")
        return default
    if not isinstance(value, str):
        raise BadMessage(f"field '{key}' must be a string")
    if len(value) > max_length:
        raise BadMessage(f"field '{key}' is longer than {max_length} characters")
    return value


def get_smell(msg: dict, key: str, default: Any = _MISSING) -> str:
    """A smell field: 40 lowercase hex characters."""
    value = get_str(msg, key, 40, default)
    if value is default and default is not _MISSING:
        return value
    if not SMELL_RE.match(value):
        raise BadMessage(f"field '{key}' must be 40 lowercase hex characters")
    return value


@overload
def get_port(msg: dict, key: str, default: Any = ..., allow_null: Literal[False] = ...) -> int: ...


@overload
def get_port(msg: dict, key: str, default: Any = ..., *, allow_null: bool) -> Optional[int]: ...


def get_port(
    msg: dict, key: str, default: Any = _MISSING, allow_null: bool = False
) -> Optional[int]:
    """A TCP port field, 1 to 65535 (or null when ``allow_null``)."""
    if allow_null and msg.get(key, 0) is None:
        return None
    return get_int(msg, key, 1, 65535, default)


def get_host(msg: dict, key: str, default: Any = _MISSING) -> str:
    """A host name or address: 1 to 255 printable characters, no spaces."""
    value = get_str(msg, key, 255, default)
    if value is default and default is not _MISSING:
        return value
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise BadMessage(f"field '{key}' is not a host name or address")
    return value


def get_object(msg: dict, key: str) -> dict:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise BadMessage(f"field '{key}' must be an object")
    return value


def error_message(code: str, text: str, msg_id: Any = None) -> dict:
    reply = {"type": "ERROR", "code": code, "message": text}
    if msg_id is not None:
        reply["id"] = msg_id
    return reply
