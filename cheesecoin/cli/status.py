"""``cheesecoin status`` and ``cheesecoin cheeses``: a member's state and its
best stack, asked of its HTTP API (docs/protocol.md section 7)."""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

from cheesecoin.cli.client import Member, member_url
from cheesecoin.cli.options import add_member_client, page_query
from cheesecoin.cli.output import print_json, when

# a peer's link, from its "encrypted" (section 5.3; absent before it)
_LINKS: Dict[Optional[bool], str] = {True: "  encrypted", False: "  plain"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status`` and ``cheeses`` subcommands."""
    status = sub.add_parser(
        "status",
        help="the member's height, tip, peers, mining",
        description="Show the member's state, for people.",
    )
    add_member_client(status, cmd_status)

    cheeses = sub.add_parser(
        "cheeses",
        help="list cheeses of the best stack",
        description="List cheeses of the member's best stack.",
    )
    cheeses.add_argument(
        "--from",
        dest="start",
        metavar="N",
        default=None,
        help="first sequence number (default: the newest)",
    )
    cheeses.add_argument(
        "--count", metavar="K", default="20", help="how many, 1 to 500 (default 20)"
    )
    add_member_client(cheeses, cmd_cheeses)


def cmd_status(args: argparse.Namespace) -> int:
    s = Member(member_url(args.member)).get("/api/status")
    if args.json:
        print_json(s)
        return 0
    peers: List[dict] = s.get("peers") or []
    mining = "yes" if s.get("mining") else "no"
    if s.get("mining"):
        mining += f", {float(s.get('hashrate') or 0):,.0f} hashes/s"
    print(f"network   {s.get('network')} ({s.get('blue_cheese')})")
    print(f"node      {s.get('node_id')}")  # with tls, the identity to pin (HOST:PORT@NODE_ID)
    print(f"height    {s.get('height')}")
    print(f"tip       {s.get('tip')} ({when(s.get('timestamp'))})")
    print(f"work      {s.get('work')}, next bits {s.get('bits')}")
    print(f"mempool   {s.get('mempool')} transactions")
    print(f"mining    {mining}")
    print(f"peers     {len(peers)}")
    for p in peers:
        way = "in " if p.get("inbound") else "out"
        link = _LINKS.get(p.get("encrypted"), "")
        node = str(p.get("node_id"))[:12]
        print(
            f"  {way} {p.get('host')}:{p.get('port')}  height {p.get('height')}  node {node}{link}"
        )
    return 0


def cmd_cheeses(args: argparse.Namespace) -> int:
    query = page_query(args.count, "from", args.start)
    answer = Member(member_url(args.member)).get(f"/api/cheeses?{query}")
    if args.json:
        print_json(answer)
        return 0
    cheeses = answer.get("cheeses") or []
    if not cheeses:
        print("no cheeses there")
        return 0
    print(f"{'seq':>7}  {'smell':40}  {'time (UTC)':19}  {'bits':>4}  {'txs':>4}  miner")
    for c in cheeses:
        info = c.get("unit_of_information") or {}
        miner = str(info.get("miner", "(Blue Cheese)"))
        print(
            f"{c['sequence_number']:>7}  {c['smell']:40}  {when(c['timestamp'])[:19]:19}  "
            f"{c['bits']:>4}  "
            f"{len(info.get('transactions', [])):>4}  {miner[:16]}"
        )
    return 0
