"""``twistd cheesemember``: the member's services (docs/protocol.md s.5 and s.8).

twistd reads ``Options`` (``cheesecoin.member.options``: the command line) and
``makeService`` here, through the ServiceMaker of
``twisted/plugins/cheesecoin_plugins.py``; ``MemberBuilder``
(``cheesecoin.member.builder``) builds the services in named steps.

With ``tls`` among its features (``all`` lists it) the member has an
identity key in its data directory (``identity.key``, made at the first
start) and its node_id is that key; its links to members that list ``tls``
too are encrypted (docs/protocol.md section 5.3, ``cheesecoin.member.links``).

The stack is loaded from the data directory before the member listens:
every start rebuilds the tree, the ledger and the indexes from the stored
cheeses (signatures are not checked again) and refuses a corrupted database
with one clear line. ``--reindex`` first rebuilds the database itself
(``cheesecoin.storage.reindex``): every stored cheese that still parses is
re-validated from scratch, signatures included, into a fresh database that
replaces the old one (kept as ``stack.sqlite3.bak``); the member then starts
at the longest valid prefix of what it had.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor

from cheesecoin.member.builder import MemberBuilder
from cheesecoin.member.lifecycle import MemberService
from cheesecoin.member.options import Options

__all__ = ["Options", "makeService"]  # what twistd's ServiceMaker reads


def makeService(config: Options, reactor: Any = reactor) -> MemberService:
    """The member: stack, node, peer manager, listeners, tracker link, timers,
    API, miner, all on ``reactor`` (twistd's; a test may pass its own)."""
    return MemberBuilder(config, reactor).build()
