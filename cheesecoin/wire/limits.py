"""The protocol's numbers, each defined once (docs/protocol.md sections 2, 5, 6, 7, 8).

Members, the tracker, the tracker link, the miner port and the external
miner all take them from here.
"""

from __future__ import annotations

from cheesecoin.core.formats import MAX_COUNT, MAX_LINE  # noqa: F401  (re-exported: protocol numbers)

PROTOCOL_VERSION = 1  # the "version" of HELLO (section 5)
TRACKER_PORT = 24330  # default ports (section 8)
MEMBER_PORT = 24331
API_PORT = 24332
MINER_PORT = 24333
PEERS_PER_REPLY = 10  # addresses in one PEERS (sections 2 and 5)
PING_INTERVAL = (
    30.0  # seconds between PINGs, member to tracker and member to member (sections 2 and 5)
)
