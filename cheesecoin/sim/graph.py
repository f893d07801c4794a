"""The network as the propagation limit reads it: each member's links, remembered.

The limit of a cheese (``Report``, docs/protocol.md section 9) is the
latency-weighted shortest path from its miner over the links as they stand
when it is found. Reading every member's links again at each cheese costs,
at 10,000 members, a fifth of a second a cheese; they seldom change. So
``LinkGraph`` remembers each member's edges with what they were read from
(its handshaken connections, and how many times any member came or went)
and reads them again only when that changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from cheesecoin.sim.link import SimTransport

if TYPE_CHECKING:
    from cheesecoin.sim.member import SimMember

Edges = Tuple[Tuple[int, float], ...]  # (peer, one-way latency in seconds), ...


def links(member: "SimMember") -> List[Tuple[int, float]]:
    """(peer, one-way latency) of each handshaken connection of ``member`` to an alive
    member: its edges in the graph of the propagation limit."""
    out: List[Tuple[int, float]] = []
    for proto in member.manager.peers.values():
        transport = proto.transport
        if not isinstance(transport, SimTransport):
            continue
        remote = transport.remote
        if remote is not None and remote.alive:
            out.append((remote.index, transport.out.latency))
    return out


class LinkGraph:
    """Each member's edges, read again only when its connections, or who is alive,
    changed (``came_or_went``)."""

    def __init__(self) -> None:
        self._lives = 0  # members started or stopped so far
        # member -> (its handshaken connections, _lives, its edges), when last read
        self._memo: Dict[int, Tuple[Tuple[Any, ...], int, Edges]] = {}

    def came_or_went(self, gone: Optional["SimMember"] = None) -> None:
        """A member started, or ``gone`` stopped: any member's edges may have changed
        (and what was remembered of ``gone``'s connections is let go)."""
        self._lives += 1
        if gone is not None:
            self._memo.pop(gone.index, None)

    def edges(self, member: "SimMember") -> Edges:
        """``links(member)``, as a tuple (the same tuple while nothing changed)."""
        peers = tuple(member.manager.peers.values())
        memo = self._memo.get(member.index)
        if memo is not None and memo[1] == self._lives and memo[0] == peers:
            return memo[2]
        edges = tuple(links(member))
        self._memo[member.index] = (peers, self._lives, edges)
        return edges

    def remembered(self) -> int:
        """Members whose edges are remembered (those present, once read)."""
        return len(self._memo)
