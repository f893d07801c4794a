"""The mempool exchange of docs/protocol.md section 5.1 (feature ``mempool``).

Messages: GET_MEMPOOL -> MEMPOOL {"txids"} (at most 5,000, highest fee
first); GET_TXS {"txids", ["smell"]} -> TXS {"transactions"} (those we have,
in the order asked). After each handshake with a peer that listed
``mempool`` we ask for its mempool's txids and fetch the ones we lack, 1,000
a request, one request at a time; a peer without the feature gets our
mempool pushed as TX instead (``Relay.send_mempool``). Either waits until
the transactions can be taken: ours are pushed once the peer has our work,
theirs fetched once we have theirs (a member still syncing would refuse
them).
"""

from __future__ import annotations

from typing import Any, List, Optional

from cheesecoin.core.errors import InvalidTx, ProtocolError
from cheesecoin.core.formats import SMELL_RE
from cheesecoin.core.tx import txid
from cheesecoin.wire import codec as wire

MEMPOOL_REPLY = 5000  # txids in a MEMPOOL, at most
TXS_PER_REQUEST = 1000  # txids in a GET_TXS, at most
FEATURE = "mempool"


def get_txids(msg: dict, key: str, most: int, least: int = 1) -> List[str]:
    """A list of ``least`` to ``most`` txids (40 lowercase hex characters), else BadMessage."""
    value = msg.get(key)
    if not isinstance(value, list) or not least <= len(value) <= most:
        raise wire.BadMessage(f"field '{key}' must be a list of {least} to {most} txids")
    if not all(isinstance(t, str) and SMELL_RE.match(t) for t in value):
        raise wire.BadMessage(f"field '{key}' must hold txids (40 lowercase hex characters)")
    return value


class MempoolExchange:
    """Both sides of the mempool exchange for one member."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.node = manager.node
        self.fetched = 0  # transactions new to us that the exchange brought (tests, logs)

    # -- answering ------------------------------------------------------------------

    def mempool_txids(self) -> List[str]:
        return self.node.mempool.select_ids(MEMPOOL_REPLY)  # the mempool's keys: no txid recomputed

    def find_txs(self, txids: List[str], smell: Optional[str]) -> List[dict]:
        """The transactions among ``txids`` that we have (mempool, the best stack, the
        cheese ``smell``), in the order asked, each once, stopping before the reply
        passes MAX_LINE. Each costs a look-up (the mempool, the txid index: a best-stack
        cheese is never decoded for it); a cheese off the best stack has its txids
        computed once while it stays in ``StackServing.cheese_txs``' LRU cache."""
        stack = self.node.stack
        in_cheese: Optional[dict] = None
        found, size = [], 64
        for tx_id in dict.fromkeys(txids):  # duplicates cost nothing
            status = self.node.tx_status(tx_id)  # the mempool, then the best stack
            tx = status["tx"] if status is not None else None
            if tx is None and smell is not None and not stack.is_best(smell):
                if in_cheese is None:
                    cheese = stack.get_cheese(smell) or self.manager.relay.pending.get(smell)
                    in_cheese = {} if cheese is None else stack.serving.cheese_txs(smell, cheese)
                tx = in_cheese.get(tx_id)
            if tx is None:
                continue
            size += len(wire.encode(tx)) + 1
            if size > wire.MAX_LINE - 4096:
                break
            found.append(tx)
        return found

    # -- asking ---------------------------------------------------------------------

    def maybe_start(self, proto: Any) -> None:
        """Once per connection, as soon as it can work: with a peer that lists
        ``mempool``, fetch its mempool once we have at least its work (before,
        its transactions would not fit our ledger); to a peer without it, push
        ours once it has at least our work."""
        if proto.mempool_done or not proto.ready or proto.closing:
            return
        ours = self.node.stack.work
        if FEATURE in proto.peer_features and FEATURE in self.manager.features:
            if ours >= proto.peer_work:
                proto.mempool_done = True
                self.start(proto)
        elif proto.peer_work >= ours:
            proto.mempool_done = True
            self.manager.relay.send_mempool(proto)

    def on_tip(self) -> None:
        for proto in list(self.manager.peers.values()):
            if not proto.mempool_done:
                self.maybe_start(proto)

    def start(self, proto: Any) -> None:
        """After the handshake with a peer that listed ``mempool``: fetch what it has that we lack."""
        proto.request({"type": "GET_MEMPOOL"}).addCallbacks(self._got_txids, lambda f: None, (proto,))

    def _got_txids(self, reply: dict, proto: Any) -> None:
        try:
            txids = get_txids(reply, "txids", MEMPOOL_REPLY, least=0)
        except ProtocolError as e:
            proto.misbehaved(10, f"a malformed MEMPOOL: {e.message}")
            return
        mempool, stack = self.node.mempool, self.node.stack
        missing = [t for t in dict.fromkeys(txids) if t not in mempool and stack.tx_height(t) is None]
        self._fetch(proto, missing)

    def _fetch(self, proto: Any, missing: List[str]) -> None:
        if not missing or proto.closing:
            return
        chunk, rest = missing[:TXS_PER_REQUEST], missing[TXS_PER_REQUEST:]
        proto.request({"type": "GET_TXS", "txids": chunk}).addCallbacks(self._got_txs, lambda f: None, (proto, chunk, rest))

    def _got_txs(self, reply: dict, proto: Any, asked: List[str], rest: List[str]) -> None:
        txs = reply.get("transactions")
        if not isinstance(txs, list) or len(txs) > len(asked):
            proto.misbehaved(10, "a malformed TXS")
            return
        wanted = set(asked)
        for tx in txs:
            if not isinstance(tx, dict):
                continue
            try:
                if txid(tx) not in wanted:
                    continue  # not what we asked for
                _, new = self.node.submit_tx(tx, proto)  # relayed on by the node's listeners
            except (InvalidTx, TypeError, ValueError, KeyError):
                continue  # stale (mined meanwhile) or bad: the peer's mempool is not ours to judge
            if new:
                self.fetched += 1
        self._fetch(proto, rest)
