"""The shapes and sizes of the protocol that the pure core checks (docs/protocol.md 1, 3, 4, 5).

One place for each: the codec (``cheesecoin.wire.codec``) and the protocol
limits (``cheesecoin.wire.limits``) take them from here.
"""

from __future__ import annotations

import re

MAX_LINE = 4 * 1024 * 1024  # 4 MiB: the longest message line (section 1)
# The largest protocol integer: integers are 0 <= x < 2^63 unless a range is given
# (section 1), so MAX_INT = 2^63 - 1 is the last one accepted.
MAX_INT = 2**63 - 1
MAX_COUNT = 500  # cheeses in one GET_CHEESES reply (section 5)
SMELL_RE = re.compile(r"[0-9a-f]{40}\Z")  # a smell or a txid: 40 lowercase hex characters
# an address: an Ed25519 public key, 64 lowercase hex characters
ADDRESS_RE = re.compile(r"[0-9a-f]{64}\Z")
# a node_id as a HELLO, a REGISTER or a PEERS entry carries it (sections 2 and 5):
# 1 to 64 lowercase hex characters
NODE_ID_RE = re.compile(r"[0-9a-f]{1,64}\Z")
# a node_id that is an identity key (section 5.3): an Ed25519 public key, as an address
IDENTITY_RE = ADDRESS_RE
