# What the stack serves: docs/protocol.md sections 5 and 5.1.
#
# Messages it answers: STATS -> STATS_REPLY, GET_CHEESE -> CHEESE, GET_CHEESES
# (from, locator, smells) -> CHEESES, GET_HEADERS -> HEADERS (see below).
"""What a member serves its peers from its stack: the replies to STATS,
GET_CHEESE, GET_CHEESES (from a height, after a locator, or by smells of any
branch, feature ``headers``) and GET_HEADERS (feature ``headers``).

Messages it answers (docs/protocol.md sections 5 and 5.1), request -> reply:
  {"type":"STATS"}                                 -> STATS_REPLY {height, tip, work, peers}
  {"type":"GET_CHEESE","sequence_number":N}        -> CHEESE {cheese} or ERROR not-found
  {"type":"GET_CHEESE","smell":S}                  -> CHEESE {cheese} or ERROR not-found
  {"type":"GET_CHEESES","from":N,"count":K}        -> CHEESES {cheeses}: best stack from N
  {"type":"GET_CHEESES","locator":[S..],"count":K} -> CHEESES after the locator's fork
  {"type":"GET_CHEESES","smells":[S..]}            -> CHEESES: those we have, any branch
  {"type":"GET_HEADERS","locator":[S..],"count":K} -> HEADERS {headers}

The connection's ready state reads the fields (``cheesecoin.p2p.fields``) and
calls these; the stored text of each cheese is written as it is, neither
decoded nor encoded again, and every reply stops before it passes MAX_LINE.
"""

from __future__ import annotations

from typing import Any, List

from cheesecoin.core.errors import ProtocolError
from cheesecoin.core.serving import StackServing
from cheesecoin.core.stack import CheeseStack
from cheesecoin.p2p.fields import id_suffix
from cheesecoin.p2p.interfaces import PeerNode
from cheesecoin.wire import codec as wire

MAX_HEADERS = 2000  # headers per GET_HEADERS (asked and answered)
MAX_SMELLS = 500  # smells per GET_CHEESES by smells


class StackServer:
    """The replies a member's stack gives its peers."""

    def __init__(self, node: PeerNode) -> None:
        self.node = node

    @property
    def stack(self) -> CheeseStack:
        return self.node.stack

    @property
    def serving(self) -> StackServing:
        """What the stack serves from (its texts, headers, locator fork)."""
        return self.node.stack.serving

    def stats_line(self, peers: int, msg_id: Any) -> bytes:
        """The STATS_REPLY line to the STATS ``msg_id``: our height, tip, work (a decimal
        string) and ``peers``, as our encoder writes them (built by hand: every peer asks
        every 60 s)."""
        stack = self.stack
        return b'{"type":"STATS_REPLY","height":%d,"tip":"%s","work":"%d","peers":%d%s}\n' % (
            stack.height,
            stack.tip.smell.encode("ascii"),
            stack.work,
            peers,
            id_suffix(msg_id).encode("utf-8"),
        )

    def cheese_at(self, height: int, msg_id: Any) -> bytes:
        """The CHEESE line of the best stack's cheese at ``height``."""
        stack = self.stack
        text = (
            stack.serving.get_text(stack.main[height].smell, cache=False)
            if height <= stack.height
            else None
        )
        return self._cheese_line(text, msg_id)

    def cheese_by_smell(self, smell: str, msg_id: Any) -> bytes:
        """The CHEESE line of the cheese ``smell`` (any branch)."""
        return self._cheese_line(self.serving.get_text(smell, cache=False), msg_id)

    @staticmethod
    def _cheese_line(text: Any, msg_id: Any) -> bytes:
        if text is None:
            raise ProtocolError("not-found", "no such cheese here")
        return ('{"type":"CHEESE","cheese":' + text + id_suffix(msg_id) + "}\n").encode("utf-8")

    def cheeses_from(self, start: int, count: int, msg_id: Any) -> bytes:
        """The CHEESES line of up to ``count`` best-stack cheeses from height ``start``."""
        head = '{"type":"CHEESES","cheeses":['
        tail = "]" + id_suffix(msg_id) + "}"
        room = wire.MAX_LINE - len(head) - len(tail.encode("utf-8"))
        texts = self.serving.range_texts(start, count, max_bytes=room) if room > 0 else []
        return (head + ",".join(texts) + tail + "\n").encode("utf-8")

    def cheeses_after(self, locator: List[str], count: int, msg_id: Any) -> bytes:
        """The CHEESES line of up to ``count`` cheeses after the locator's fork."""
        return self.cheeses_from(self.serving.fork_height(locator) + 1, count, msg_id)

    def cheeses_by_smell(self, smells: List[str], msg_id: Any) -> bytes:
        """The CHEESES line of those of ``smells`` we have (any branch), in order."""
        serving, texts, size = self.serving, [], 64
        for smell in smells:
            text = serving.get_text(smell, cache=False)
            if text is None:
                continue
            size += len(text.encode("utf-8")) + 1
            if size > wire.MAX_LINE - 4096:
                break
            texts.append(text)
        return (
            '{"type":"CHEESES","cheeses":[' + ",".join(texts) + "]" + id_suffix(msg_id) + "}\n"
        ).encode("utf-8")

    def headers_after(self, locator: List[str], count: int) -> List[dict]:
        """Up to ``count`` best-stack headers after the locator's fork (HEADERS)."""
        stack, serving = self.stack, self.serving
        start = serving.fork_height(locator) + 1
        out = []
        size = 64
        for height in range(start, min(stack.height + 1, start + count)):
            header = serving.header_at(height)
            if header is None:  # not on the best stack any more (it cannot be: we are below it)
                break
            size += 300
            if size > wire.MAX_LINE - 4096:
                break
            out.append(header)
        return out
