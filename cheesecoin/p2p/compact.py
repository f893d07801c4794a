"""Headers and compact relay of docs/protocol.md section 5.1 (features ``headers``, ``compact``).

Messages: GET_HEADERS {"locator", "count"} -> HEADERS {"headers"};
GET_CHEESES {"smells"} -> CHEESES (any branch, in the order asked); pushed
ANNOUNCE_COMPACT {"header", "miner", "txids", ["note"]}.

A compact announcement is rebuilt from our mempool; the transactions we lack
come from one GET_TXS (with the cheese's smell) to the announcer, and if it
cannot supply them, or the rebuilt body does not match the header's
``info_hash``, the whole cheese from a GET_CHEESE by smell. The rebuilt
cheese then goes the way of an ANNOUNCE (``Relay.receive_cheese``). While a
cheese is being rebuilt, other announcements of it are ignored.

Early relay: a header is checked against its parent (rules 2 to 4) as soon as
it arrives; once the body is rebuilt and matches its ``info_hash``, a cheese
that would be our new best goes on to our other compact peers at the
reactor's next turn, skipping those whose announcement of it we read
meanwhile (``Relay.relay_early``), and its full validation (ledger,
signatures, the store) runs after those announcements are written (for a
cheese of EARLY_MIN_TXS or more; a smaller one is validated at once).
Because an honest member relays
a body it has not validated yet, the announcer of a compact cheese whose
header is valid but whose body breaks a rule loses RELAYED_INVALID_POINTS,
not the invalid-cheese points of a whole ANNOUNCE (as Bitcoin Core treats a
compact block relayed before validation, BIP 152); the cost of sending one is
a proof of work on top of our best stack.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Optional

from cheesecoin.core.cheese import (
    HEADER_FIELDS,
    compact_announcement,
    info_hash,
    meets_pow,
    preimage_prefix,
    rebuild_cheese,
    sha1_hex,
)
from cheesecoin.core.errors import ProtocolError
from cheesecoin.core.formats import ADDRESS_RE, SMELL_RE
from cheesecoin.core.tx import txid
from cheesecoin.p2p.mempool_sync import get_txids
from cheesecoin.wire import codec as wire

HEADERS = "headers"
COMPACT = "compact"
MAX_HEADERS = 2000  # per GET_HEADERS
MAX_SMELLS = 500  # per GET_CHEESES by smells
MAX_REBUILDING = 64  # compact cheeses being rebuilt at once
MAX_NOTE = 256
RELAYED_INVALID_POINTS = 5  # a header-valid compact cheese whose body breaks a rule
EARLY_MIN_TXS = 50  # transactions that make a cheese's validation worth waiting for its early relay


def check_header(header: Any) -> dict:
    """A header's shape, smell and proof of work (rule 5), else ProtocolError."""
    if not isinstance(header, dict) or set(header) != set(HEADER_FIELDS):
        raise wire.BadMessage("field 'header' must have exactly " + ", ".join(HEADER_FIELDS))
    for key in ("parent_smell", "info_hash", "smell"):
        if not isinstance(header[key], str) or not SMELL_RE.match(header[key]):
            raise wire.BadMessage(f"header field '{key}' must be 40 lowercase hex characters")
    for key in ("sequence_number", "timestamp", "bits", "nonce"):
        value = header[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise wire.BadMessage(f"header field '{key}' must be a whole number")
    prefix = preimage_prefix(header["parent_smell"], header["sequence_number"], header["timestamp"], header["bits"],
                             header["info_hash"])
    if sha1_hex((prefix + str(header["nonce"])).encode("ascii")) != header["smell"]:
        raise ProtocolError("invalid-cheese", "rule 5 (smell): the header's smell is not the SHA1 of its preimage")
    if not meets_pow(header["smell"], header["bits"]):
        raise ProtocolError("invalid-cheese", "rule 5 (smell): the header's smell does not meet its bits")
    return header


class CompactRelay:
    """Both sides of headers and compact relay for one member."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.node = manager.node
        self.rebuilding: "OrderedDict[str, None]" = OrderedDict()
        self.rebuilt = 0  # compact cheeses rebuilt from the mempool alone (tests, figures)
        self.fetched_txs = 0
        self.fell_back = 0  # compact cheeses we had to fetch whole
        self.early_relayed = 0  # compact cheeses relayed on before their full validation

    # -- answering ------------------------------------------------------------------

    def headers_after(self, locator: List[str], count: int) -> List[dict]:
        stack = self.node.stack
        start = stack.fork_height(locator) + 1
        out = []
        size = 64
        for height in range(start, min(stack.height + 1, start + count)):
            header = stack.header_at(height)
            size += 300
            if size > wire.MAX_LINE - 4096:
                break
            out.append(header)
        return out

    def cheeses_by_smell(self, smells: List[str]) -> List[str]:
        stack, texts, size = self.node.stack, [], 64
        for smell in smells:
            text = stack.get_text(smell, cache=False)
            if text is None:
                continue
            size += len(text.encode("utf-8")) + 1
            if size > wire.MAX_LINE - 4096:
                break
            texts.append(text)
        return texts

    # -- sending ---------------------------------------------------------------------

    @staticmethod
    def announcement(cheese: dict) -> bytes:
        return wire.dumps(compact_announcement(cheese))

    # -- receiving ---------------------------------------------------------------------

    def receive(self, proto: Any, msg: dict) -> None:
        header = msg.get("header")
        if self.manager.relay.already_have(proto, header.get("smell") if isinstance(header, dict) else None):
            return
        header = check_header(header)
        smell = header["smell"]
        rule = self.node.stack.invalid_rule(smell)
        if rule is not None:
            proto.penalise_next_error(RELAYED_INVALID_POINTS)  # another honest early relayer, maybe
            raise ProtocolError("invalid-cheese", f"cheese {smell} is known to be invalid ({rule})")
        miner = wire.get_str(msg, "miner", 64)
        if not ADDRESS_RE.match(miner):
            raise wire.BadMessage("field 'miner' must be an address (64 lowercase hex characters)")
        txids = get_txids(msg, "txids", max(1, self.node.network.max_transactions), least=0)
        note = wire.get_str(msg, "note", MAX_NOTE) if "note" in msg else None
        self.manager.relay.check_header_link(proto, header)  # rules 2 to 4, when we hold its parent
        if smell in self.rebuilding or smell in self.manager.relay.pending:
            self.manager.relay.note_holder(proto, smell)
            return  # another peer's announcement of it is being rebuilt, or validated
        if len(self.rebuilding) >= MAX_REBUILDING:
            self.rebuilding.popitem(last=False)
        self.rebuilding[smell] = None
        mempool = self.node.mempool
        txs: List[Optional[dict]] = [mempool.get(t) for t in txids]
        missing = [t for t, tx in zip(txids, txs) if tx is None]
        if not missing:
            self.rebuilt += 1
            self._finish(proto, header, miner, txids, txs, note)
            return
        d = proto.request({"type": "GET_TXS", "txids": missing[:1000], "smell": smell})
        d.addCallbacks(self._got_txs, lambda f: self._whole(proto, smell), (proto, header, miner, txids, txs, note))

    def _got_txs(self, reply: dict, proto: Any, header: dict, miner: str, txids: List[str], txs: List[Optional[dict]],
                 note: Optional[str]) -> None:
        got = reply.get("transactions")
        if isinstance(got, list):
            by_id = {}
            for tx in got[:1000]:
                if isinstance(tx, dict):
                    try:
                        by_id[txid(tx)] = tx
                    except (TypeError, ValueError):
                        continue
            txs = [tx if tx is not None else by_id.get(t) for t, tx in zip(txids, txs)]
        if any(tx is None for tx in txs):
            self._whole(proto, header["smell"])
            return
        self.fetched_txs += 1
        self._finish(proto, header, miner, txids, txs, note)

    def _finish(self, proto: Any, header: dict, miner: str, txids: List[str], txs: List[Any],
                note: Optional[str]) -> None:
        cheese = rebuild_cheese(header, miner, list(txs), note)
        if info_hash(cheese["unit_of_information"]) != header["info_hash"]:
            self._whole(proto, header["smell"])  # our transactions are not the ones it was built with
            return
        self.rebuilding.pop(header["smell"], None)
        line = wire.dumps(compact_announcement(cheese, header["info_hash"], txids))
        if self.manager.relay.relay_early(proto, cheese, line):
            self.early_relayed += 1
            if len(txs) >= EARLY_MIN_TXS:
                # A transport writes when the reactor next polls, and a delayed call
                # made now runs before that poll: the second hop runs after it.
                clock = self.manager.clock
                clock.callLater(0, clock.callLater, 0, self._receive, proto, cheese, RELAYED_INVALID_POINTS,
                                header["info_hash"])
                return
        self._receive(proto, cheese, RELAYED_INVALID_POINTS, header["info_hash"])

    def _whole(self, proto: Any, smell: str) -> None:
        """Fall back to the whole cheese, by smell, from the announcer."""
        self.fell_back += 1
        if proto.closing:
            self.rebuilding.pop(smell, None)
            return

        def got(reply: dict) -> None:
            self.rebuilding.pop(smell, None)
            cheese = reply.get("cheese")
            if isinstance(cheese, dict) and cheese.get("smell") == smell:
                self._receive(proto, cheese)
            else:
                proto.misbehaved(10, "a CHEESE that is not the one asked for")

        proto.request({"type": "GET_CHEESE", "smell": smell}).addCallbacks(
            got, lambda f: self.rebuilding.pop(smell, None))

    def _receive(self, proto: Any, cheese: dict, invalid_points: Optional[int] = None,
                 ihash: Optional[str] = None) -> None:
        """Validate and add a rebuilt (or whole) cheese; an invalid one costs its sender
        points. ``ihash``: its body's info_hash, already checked."""
        relay = self.manager.relay
        try:
            relay.receive_cheese(proto, cheese, invalid_points, ihash)
        except ProtocolError as e:
            if not proto.closing:
                proto.send_error(e.code, e.message)
        finally:
            relay.pending.pop(cheese["smell"], None)
