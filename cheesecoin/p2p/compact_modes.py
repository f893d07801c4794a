# Compact relay modes: docs/protocol.md section 5.2, feature ``compact-modes``.
#
# Messages it speaks:
#   pushed   {"type":"SEND_COMPACT","high_bandwidth":BOOL}   announce new best cheeses to me
#                                                           as ANNOUNCE_COMPACT (true) or as
#                                                           ANNOUNCE_HEADER (false, the default)
#   pushed   {"type":"ANNOUNCE_HEADER","header":H}          a new best cheese, its header alone
#   request  {"type":"GET_COMPACT","smell":S}             -> COMPACT {"header","miner","txids",
#                                                           ["note"]} or ERROR not-found
"""Which peers get a new cheese whole-compact, and headers for the rest.

Between two members that both list ``compact-modes`` a new best cheese is
announced by its header alone, unless the receiver asked for high bandwidth
(``SEND_COMPACT``). We ask at most ``MAX_HIGH_BANDWIDTH`` peers at a time: at
first our first ``compact-modes`` peers (one of them one we dialled, when we
have one), then those that most recently were first to bring us a new best
cheese (BIP 152's choice), always keeping one we dialled. An
``ANNOUNCE_HEADER`` of a cheese we lack is checked as a compact header is, an
orphan one starts a sync from its announcer, and otherwise we ask the
announcer ``GET_COMPACT`` and rebuild its ``COMPACT`` exactly as an
``ANNOUNCE_COMPACT`` (``CompactRelay.receive``). At most ``MAX_ATTEMPTS``
announcers are asked for one cheese at once and ``MAX_PEER_ATTEMPTS``
``GET_COMPACT`` are under way with one peer; an announcer that does not
answer loses ``UNDELIVERED_POINTS``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Dict, List, Optional, Set

from twisted.logger import Logger
from twisted.python.failure import Failure

from cheesecoin.core.cheese import compact_announcement, header_of
from cheesecoin.core.errors import ProtocolError
from cheesecoin.p2p.compact import MAX_ATTEMPTS, MAX_PEER_ATTEMPTS, UNDELIVERED_POINTS
from cheesecoin.p2p.errors import ERROR_POINTS, RemoteError, RequestTimeout
from cheesecoin.p2p.features import COMPACT_MODES
from cheesecoin.p2p.interfaces import CompactView, PeerDirectory, PeerNode, RelayView
from cheesecoin.wire import codec as wire

if TYPE_CHECKING:
    from cheesecoin.p2p.protocol import MemberProtocol

MAX_HIGH_BANDWIDTH = 3  # peers asked for high-bandwidth announcements at once (section 5.2)
MAX_FETCHING = 64  # cheeses whose COMPACT is being asked for at once
COMPACT_CACHE = 64  # COMPACT replies of recent cheeses kept ready


class CompactModes:
    """Both sides of ``compact-modes`` for one member."""

    def __init__(
        self,
        node: PeerNode,
        log: Logger,
        directory: PeerDirectory,
        relay: RelayView,
        compact: CompactView,
    ) -> None:
        self.node = node
        self.log = log
        self.directory = directory
        self.relay = relay
        self.compact = compact
        # peers we asked for high bandwidth, most recent choice first
        self.high: List[MemberProtocol] = []
        # smell -> the peers asked GET_COMPACT for it
        self.fetching: "OrderedDict[str, Set[MemberProtocol]]" = OrderedDict()
        self.asking: Dict[MemberProtocol, int] = {}  # peer -> its GET_COMPACT under way
        self.cache: "OrderedDict[str, dict]" = OrderedDict()  # smell -> its COMPACT message

    @property
    def enabled(self) -> bool:
        return COMPACT_MODES in self.directory.features

    def speaks(self, proto: MemberProtocol) -> bool:
        """Whether both sides list ``compact-modes``."""
        return self.enabled and COMPACT_MODES in proto.peer_features

    def wants_header(self, proto: MemberProtocol) -> bool:
        """Whether a new best cheese goes to ``proto`` as ANNOUNCE_HEADER (it did not
        ask for more)."""
        return self.speaks(proto) and not proto.wants_compact

    # -- choosing our high-bandwidth peers -------------------------------------------------

    def peer_ready(self, proto: MemberProtocol) -> None:
        """A new peer: one of our first high-bandwidth peers while we have fewer than
        three, or in place of an inbound one if it is the first we dialled."""
        if not self.speaks(proto):
            return
        if len(self.high) < MAX_HIGH_BANDWIDTH:
            self._choose(proto)
        elif proto.outbound and not any(p.outbound for p in self.high):
            self._drop(self.high[-1])
            self._choose(proto)

    def brought_first(self, proto: MemberProtocol) -> None:
        """``proto`` was the first to bring us a new best cheese: it goes first."""
        if not self.speaks(proto) or (self.high and self.high[0] is proto):
            return
        if proto in self.high:
            self.high.remove(proto)
            self.high.insert(0, proto)
            return
        if len(self.high) >= MAX_HIGH_BANDWIDTH:
            victim = self._oldest_replaceable(proto)
            if victim is None:
                return
            self._drop(victim)
        self._choose(proto, first=True)

    def _oldest_replaceable(self, newcomer: MemberProtocol) -> Optional[MemberProtocol]:
        """The oldest choice whose place ``newcomer`` may take: never the last one we dialled."""
        outbound = [p for p in self.high if p.outbound]
        for p in reversed(self.high):
            if p.outbound and len(outbound) == 1 and not newcomer.outbound:
                continue
            return p
        return None

    def peer_gone(self, proto: MemberProtocol) -> None:
        """A closed connection: its place goes to another ``compact-modes`` peer."""
        self.asking.pop(proto, None)
        if proto not in self.high:
            return
        self.high.remove(proto)
        others = [
            p
            for p in self.directory.peers.values()
            if p is not proto and p not in self.high and not p.closing and self.speaks(p)
        ]
        if others:
            need_outbound = not any(p.outbound for p in self.high)
            self._choose(
                max(others, key=lambda p: (p.outbound and need_outbound, p.last_cheese_at))
            )

    def _choose(self, proto: MemberProtocol, first: bool = False) -> None:
        self.high.insert(0 if first else len(self.high), proto)
        proto.push({"type": "SEND_COMPACT", "high_bandwidth": True})

    def _drop(self, proto: MemberProtocol) -> None:
        self.high.remove(proto)
        if not proto.closing:
            proto.push({"type": "SEND_COMPACT", "high_bandwidth": False})

    # -- messages -------------------------------------------------------------------------

    def send_compact(self, proto: MemberProtocol, high_bandwidth: bool) -> None:
        """SEND_COMPACT: how this peer wants our new best cheeses from now on."""
        proto.wants_compact = high_bandwidth

    def compact_of(self, smell: str) -> Optional[dict]:
        """The COMPACT message of a cheese we have (any branch), or one we sent on before
        its validation (being validated, or lately refused: ``Relay.relayed``)."""
        msg = self.cache.get(smell)
        if msg is not None:
            self.cache.move_to_end(smell)
            return msg
        cheese = self.node.stack.get_cheese(smell) or self.relay.relayed(smell)
        if cheese is None or cheese.get("sequence_number") == 0:
            return None
        msg = dict(compact_announcement(cheese), type="COMPACT")
        self.cache[smell] = msg
        while len(self.cache) > COMPACT_CACHE:
            self.cache.popitem(last=False)
        return msg

    def header_line(self, cheese: dict) -> bytes:
        return wire.dumps({"type": "ANNOUNCE_HEADER", "header": header_of(cheese)})

    def receive_header(self, proto: MemberProtocol, msg: dict) -> None:
        """ANNOUNCE_HEADER: check it, and ask its announcer for the compact cheese."""
        header = self.compact.announced_header(proto, msg.get("header"))
        if header is None:
            return
        smell = header["smell"]
        asked = self.fetching.get(smell)
        if asked is None:
            if len(self.fetching) >= MAX_FETCHING:
                self.fetching.popitem(last=False)
            asked = self.fetching[smell] = set()
        if (
            len(asked) >= MAX_ATTEMPTS
            or proto in asked
            or self.asking.get(proto, 0) >= MAX_PEER_ATTEMPTS
        ):
            return
        asked.add(proto)
        self.asking[proto] = self.asking.get(proto, 0) + 1
        d = proto.request({"type": "GET_COMPACT", "smell": smell})
        d.addCallbacks(
            self._got_compact,
            self._no_compact,
            callbackArgs=(proto, smell),
            errbackArgs=(proto, smell),
        )
        d.addErrback(self._broke, proto, smell)

    def _done(self, proto: MemberProtocol, smell: str) -> None:
        left = self.asking.get(proto, 0) - 1
        if left > 0:
            self.asking[proto] = left
        else:
            self.asking.pop(proto, None)
        asked = self.fetching.get(smell)
        if asked is not None:
            asked.discard(proto)
            if not asked:
                del self.fetching[smell]  # nobody asked any more: a later header starts afresh

    def _got_compact(self, reply: dict, proto: MemberProtocol, smell: str) -> None:
        self._done(proto, smell)
        header = reply.get("header")
        if not isinstance(header, dict) or header.get("smell") != smell:
            proto.misbehaved(UNDELIVERED_POINTS, "a COMPACT that is not the cheese asked for")
            return
        self.fetching.pop(smell, None)
        try:  # rebuilt exactly as an ANNOUNCE_COMPACT from this peer (same points)
            announcement = dict(reply, type="ANNOUNCE_COMPACT")
            self.compact.receive(proto, announcement)
        except ProtocolError as e:
            if not proto.closing:
                proto.refuse(e)

    def _no_compact(self, failure: Failure, proto: MemberProtocol, smell: str) -> None:
        self._done(proto, smell)
        if failure.check(RequestTimeout, RemoteError) and not proto.closing:
            proto.misbehaved(UNDELIVERED_POINTS, f"did not deliver the cheese {smell} it announced")

    def _broke(self, failure: Failure, proto: MemberProtocol, smell: str) -> None:
        self._done(proto, smell)
        self.log.warn(
            "A COMPACT from {peer} broke its handler: {error}",
            peer=proto.label(),
            error=f"{failure.type.__name__}: {failure.getErrorMessage()}"[:200],
        )
        proto.misbehaved(ERROR_POINTS["bad-message"], "a COMPACT that broke its handler")
