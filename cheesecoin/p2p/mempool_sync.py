# The mempool exchange: docs/protocol.md section 5.1, feature ``mempool``.
#
# Messages it speaks:
#   request  {"type":"GET_MEMPOOL"}                    -> MEMPOOL {"txids"} (both ways)
#   request  {"type":"GET_TXS","txids":[..],["smell"]} -> TXS {"transactions"} (both ways)
#   pushed   {"type":"TX","tx":T} to a peer without the feature (Relay.send_mempool)
"""The mempool exchange of docs/protocol.md section 5.1 (feature ``mempool``).

Messages: GET_MEMPOOL -> MEMPOOL {"txids"} (at most 5,000, highest fee
first); GET_TXS {"txids", ["smell"]} -> TXS {"transactions"} (those we have,
in the order asked). After each handshake with a peer that listed
``mempool`` we ask for its mempool's txids and fetch the ones we lack, 1,000
a request, one request at a time; a peer without the feature gets our
mempool pushed as TX instead (``Relay.send_mempool``). Either waits until
the transactions can be taken: ours are pushed once the peer has *shown* it
holds our work (its tip, from its HELLO, STATS_REPLY or announcements, is a
valid cheese we hold with at least our work: a claim alone gets nothing), and
at most once per PUSH_INTERVAL to one host; theirs fetched once we have
theirs (a member still syncing would refuse them).

A transaction in a TXS reply is judged as a pushed TX is (``Relay.receive_tx``,
issue 26 finding 9): an invalid one costs the peer the points of ERROR
``invalid-tx``, one that is merely stale (a nonce, balance or fee race) one
point, one already confirmed nothing; the reply stops being read once the
peer is closed, and one ERROR tells it why.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Tuple

from twisted.internet.interfaces import IReactorTime

from cheesecoin.core.errors import InvalidTx, ProtocolError
from cheesecoin.core.tx import check_tx_format, txid
from cheesecoin.p2p.errors import ERROR_POINTS, PeerError
from cheesecoin.p2p.features import MEMPOOL
from cheesecoin.p2p.fields import get_txids
from cheesecoin.p2p.interfaces import PeerDirectory, PeerNode
from cheesecoin.wire import codec as wire

if TYPE_CHECKING:
    from cheesecoin.p2p.interfaces import RelayView
    from cheesecoin.p2p.protocol import MemberProtocol

MEMPOOL_REPLY = 5000  # txids in a MEMPOOL, at most
TXS_PER_REQUEST = 1000  # txids in a GET_TXS, at most
SIDE_DEPTH = 10  # how far below our tip a side-branch cheese is still looked in for GET_TXS
PUSH_INTERVAL = 600.0  # seconds before our mempool is pushed again to the same host
MAX_PUSHED_HOSTS = 4096  # hosts whose last push we remember (the oldest forgotten)
# A pushed TX or a TXS transaction refused by one of these may be an honest race
# (a nonce, balance or fee): it costs STALE_TX_POINTS (Relay.receive_tx, take_tx).
STALE_TX_RULES = frozenset({"tx-nonce", "tx-balance", "tx-fee"})
STALE_TX_POINTS = 1

# Why a peer's transaction was refused, as far as what it costs the peer goes.
TxRefusal = Literal["full", "have", "stale", "invalid"]


def classify_refusal(node: PeerNode, tx: Any, error: InvalidTx) -> TxRefusal:
    """Why ``tx`` from a peer (a pushed TX or one of a TXS) was refused: "full"
    (our mempool's limit, not the peer's fault), "have" (refused as stale because
    it is confirmed: we have it), "stale" (well formed, a race may explain it:
    STALE_TX_POINTS) or "invalid" (ERROR_POINTS of invalid-tx)."""
    if error.rule == "mempool-full":
        return "full"
    if error.rule in STALE_TX_RULES and check_tx_format(tx) is None:
        return "have" if node.stack.tx_height(txid(tx)) is not None else "stale"
    return "invalid"


class MempoolExchange:
    """Both sides of the mempool exchange for one member."""

    def __init__(
        self, node: PeerNode, clock: IReactorTime, directory: PeerDirectory, relay: RelayView
    ) -> None:
        self.node = node
        self.clock = clock
        self.directory = directory
        self.relay = relay
        self.fetched = 0  # transactions new to us that the exchange brought (tests, logs)
        self.pushed: "OrderedDict[str, float]" = OrderedDict()  # host -> our last push to it

    # -- answering ------------------------------------------------------------------

    def mempool_txids(self) -> List[str]:
        return self.node.mempool.select_ids(MEMPOOL_REPLY)  # the mempool's keys: no txid recomputed

    def find_txs(self, txids: List[str], smell: Optional[str]) -> List[dict]:
        """The transactions among ``txids`` that we have (mempool, the best stack, the
        cheese ``smell``), in the order asked, each once, stopping before the reply
        passes MAX_LINE. Each costs a look-up (the mempool, the txid index: a best-stack
        cheese is never decoded for it); a cheese off the best stack has its txids
        computed once while it stays in ``StackServing.cheese_txs``' LRU cache, and only
        one being validated or within SIDE_DEPTH of our tip is looked in (what a peer
        rebuilding a competing new cheese asks for; old side cheeses, each costing its
        maker only the lowest bits, cycled past the cache cost 3 ms a 136-byte request)."""
        stack = self.node.stack
        in_cheese: Optional[dict] = None
        found, size = [], 64
        for tx_id in dict.fromkeys(txids):  # duplicates cost nothing
            status = self.node.tx_status(tx_id)  # the mempool, then the best stack
            tx = status["tx"] if status is not None else None
            if tx is None and smell is not None and not stack.is_best(smell):
                if in_cheese is None:
                    in_cheese = self._side_cheese_txs(smell)
                tx = in_cheese.get(tx_id)
            if tx is None:
                continue
            size += len(wire.encode(tx)) + 1
            if size > wire.MAX_LINE - 4096:
                break
            found.append(tx)
        return found

    def _side_cheese_txs(self, smell: str) -> Dict[str, dict]:
        """txid -> tx of a cheese off the best stack that is being validated (or was
        relayed early and lately refused: ``Relay.relayed``) or within SIDE_DEPTH of
        our tip; {} for any other."""
        stack = self.node.stack
        cheese = self.relay.relayed(smell)
        if cheese is None:
            node = stack.nodes.get(smell)
            if node is None or node.height < stack.height - SIDE_DEPTH:
                return {}
            cheese = stack.get_cheese(smell)
        return {} if cheese is None else stack.serving.cheese_txs(smell, cheese)

    # -- asking ---------------------------------------------------------------------

    def maybe_start(self, proto: MemberProtocol) -> None:
        """Once per connection, as soon as it can work: with a peer that lists
        ``mempool``, fetch its mempool once we have at least its work (before,
        its transactions would not fit our ledger); to a peer without it, push
        ours once it has shown it holds our work (``holds_our_work``), unless
        its host had it pushed less than PUSH_INTERVAL ago."""
        if proto.mempool_done or not proto.ready or proto.closing:
            return
        if MEMPOOL in proto.peer_features and MEMPOOL in self.directory.features:
            if self.node.stack.work >= proto.peer_work:
                proto.mempool_done = True
                self.start(proto)
        elif self.holds_our_work(proto):
            proto.mempool_done = True
            if self._may_push(proto.peer_host() or "?"):
                self.relay.send_mempool(proto)

    def holds_our_work(self, proto: MemberProtocol) -> bool:
        """Proven, not claimed: the peer's tip is a valid cheese we hold with at
        least our work (our tip, or a branch as heavy). A HELLO that names a
        tip we do not know, however much work it claims, is not enough."""
        stack = self.node.stack
        known = stack.nodes.get(proto.peer_tip) if isinstance(proto.peer_tip, str) else None
        return known is not None and not known.invalid and known.work >= stack.work

    def _may_push(self, host: str) -> bool:
        """At most one push of our mempool per host per PUSH_INTERVAL (a peer that
        reconnects does not get it again); the memory of hosts is bounded."""
        now = self.clock.seconds()
        last = self.pushed.get(host)
        if last is not None and now - last < PUSH_INTERVAL:
            return False
        self.pushed.pop(host, None)
        self.pushed[host] = now
        while len(self.pushed) > MAX_PUSHED_HOSTS:
            self.pushed.popitem(last=False)
        return True

    def on_tip(self) -> None:
        for proto in list(self.directory.peers.values()):
            if not proto.mempool_done:
                self.maybe_start(proto)

    def start(self, proto: MemberProtocol) -> None:
        """After the handshake with a peer that listed ``mempool``: fetch what it has
        that we lack."""
        proto.request({"type": "GET_MEMPOOL"}).addCallbacks(
            self._got_txids, lambda f: None, (proto,)
        )

    def _got_txids(self, reply: dict, proto: MemberProtocol) -> None:
        try:
            txids = get_txids(reply, "txids", MEMPOOL_REPLY, least=0)
        except ProtocolError as e:
            proto.misbehaved(10, f"a malformed MEMPOOL: {e.message}")
            return
        mempool, stack = self.node.mempool, self.node.stack
        missing = [
            t for t in dict.fromkeys(txids) if t not in mempool and stack.tx_height(t) is None
        ]
        self._fetch(proto, missing)

    def _fetch(self, proto: MemberProtocol, missing: List[str]) -> None:
        if not missing or proto.closing:
            return
        chunk, rest = missing[:TXS_PER_REQUEST], missing[TXS_PER_REQUEST:]
        proto.request({"type": "GET_TXS", "txids": chunk}).addCallbacks(
            self._got_txs, lambda f: None, (proto, chunk, rest)
        )

    def _got_txs(
        self, reply: dict, proto: MemberProtocol, asked: List[str], rest: List[str]
    ) -> None:
        txs = reply.get("transactions")
        if not isinstance(txs, list) or len(txs) > len(asked):
            proto.misbehaved(10, "a malformed TXS")
            return
        wanted = set(asked)
        refused: Optional[Tuple[str, str]] = None  # the first invalid transaction's (rule, message)
        for tx in txs:
            if proto.closing:
                return  # banned or closed by what it sent: the rest is not read
            if isinstance(tx, dict) and check_tx_format(tx) is None and txid(tx) not in wanted:
                continue  # not what we asked for
            why = self.take_tx(proto, tx)
            if why is not None and refused is None:
                refused = why
        if refused is not None and not proto.closing:
            message = f"a transaction in TXS: {refused[0]}: {refused[1]}"
            proto.refuse(PeerError("invalid-tx", message, 0))  # charged above, one by one
        self._fetch(proto, rest)

    def take_tx(self, proto: MemberProtocol, tx: Any) -> Optional[Tuple[str, str]]:
        """Submit one transaction of a TXS reply; the (rule, message) that refused it,
        charged to the peer as a pushed TX would be, or None."""
        try:
            if not isinstance(tx, dict):
                raise InvalidTx("tx-fields", "a transaction must be a JSON object")
            try:
                _, new = self.node.submit_tx(tx, proto)  # relayed on by the node's listeners
            except (TypeError, ValueError, KeyError) as e:
                raise InvalidTx("tx-fields", f"an unreadable transaction ({type(e).__name__})")
        except InvalidTx as e:
            why = classify_refusal(self.node, tx, e)
            if why in ("full", "have"):
                return None  # our limit, or confirmed meanwhile: not the peer's fault
            if why == "stale":
                proto.misbehaved(STALE_TX_POINTS, f"a stale transaction in TXS ({e.rule})")
            else:
                points = ERROR_POINTS["invalid-tx"]
                proto.misbehaved(points, f"an invalid transaction in TXS ({e.rule})")
            return e.rule, e.message
        if new:
            self.fetched += 1
        return None
