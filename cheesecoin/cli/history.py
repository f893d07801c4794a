"""``cheesecoin export`` and ``cheesecoin history`` (docs/protocol.md section 9).

``export`` pages the member's best stack through ``GET /api/cheeses`` and
writes it as the JSON array that ``cheesecoin verify`` reads, a page at a
time (any length, one page in memory). Each page must continue the one
before it (its first cheese's parent is the last one written): a
reorganisation during the export is said, not written as a broken stack.
With ``--output`` the file appears only once it is whole.

``history`` shows an address's transactions, newest first, from
``GET /api/address/{address}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import IO

from cheesecoin.cli.client import Member, member_url
from cheesecoin.cli.errors import CliError
from cheesecoin.cli.options import add_member_client, address_or_wallet, page_query
from cheesecoin.cli.output import print_json

PAGE = 500  # cheeses asked for at a time (the API's most)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "export",
        help="write the member's best stack as a JSON array (what verify reads)",
        description="Write the member's best stack, Blue Cheese first, as the JSON array that "
        "`cheesecoin verify` reads: to stdout, or to FILE (which appears only once complete). "
        "Any length: it is written as it is fetched.",
    )
    export.add_argument(
        "--output", "-o", metavar="FILE", default=None, help="write to FILE instead of stdout"
    )
    add_member_client(export, cmd_export, json=False)

    history = sub.add_parser(
        "history",
        help="an address's transactions, newest first",
        description="Show the transactions from and to ADDRESS (default: your wallet's), "
        "newest first: the pending ones, then the confirmed ones with their cheese.",
    )
    history.add_argument(
        "address", nargs="?", default=None, help="the address (default: your wallet's)"
    )
    history.add_argument("--count", default="50", help="how many (1 to 500, default 50)")
    history.add_argument(
        "--before", default=None, metavar="SEQ", help="only cheeses below this sequence number"
    )
    add_member_client(history, cmd_history, wallet=True)


def export_stack(member: Member, out: IO[str]) -> int:
    """Write the best stack to ``out`` as a JSON array; returns how many cheeses."""
    written = 0
    last_smell = None
    out.write("[")
    while True:
        page = member.get(f"/api/cheeses?from={written}&count={PAGE}")["cheeses"]
        if not page:
            break
        for cheese in page:
            if cheese.get("sequence_number") != written or (
                last_smell is not None and cheese.get("parent_smell") != last_smell
            ):
                raise CliError(
                    "the member's best stack changed under the export at sequence number "
                    f"{written} (a reorganisation): run it again"
                )
            out.write("\n" if written == 0 else ",\n")
            out.write(json.dumps(cheese, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
            last_smell = cheese["smell"]
            written += 1
    out.write("\n]\n")
    if written == 0:
        raise CliError("the member returned no cheeses (not even the Blue Cheese)")
    return written


def cmd_export(args: argparse.Namespace) -> int:
    member = Member(member_url(args.member))
    if args.output is None:
        count = export_stack(member, sys.stdout)
        sys.stdout.flush()
        print(f"cheesecoin: exported {count} cheeses (height {count - 1})", file=sys.stderr)
        return 0
    target = os.path.abspath(args.output)
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise CliError(f"{args.output} is a directory; give a file name")
    try:
        fd, partial = tempfile.mkstemp(prefix=".export-", suffix=".part", dir=directory)
    except OSError as e:
        raise CliError(f"cannot write in {directory}: {e.strerror}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            count = export_stack(member, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    except OSError as e:
        _remove(partial)
        raise CliError(f"cannot write {args.output}: {e.strerror or e}")
    except BaseException:
        _remove(partial)
        raise
    print(f"exported {count} cheeses (height {count - 1}) to {args.output}")
    return 0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def cmd_history(args: argparse.Namespace) -> int:
    address = address_or_wallet(args)
    query = page_query(args.count, "before", args.before)
    answer = Member(member_url(args.member)).get(f"/api/address/{address}?{query}")
    if args.json:
        print_json(answer)
        return 0
    txs = answer["transactions"]
    print(f"address  {address}")
    print(f"balance  {answer['balance']} (pending {answer['pending_balance']})")
    if not txs:
        print("no transactions")
        return 0
    print(
        f"{'cheese':>8}  {'':3}  {'amount':>10}  {'fee':>5}  {'counterparty':16}  {'txid':40}  memo"
    )
    for entry in txs:
        tx = entry["tx"]
        out = tx["from"] == address
        where = "pending" if entry["status"] == "mempool" else str(entry["sequence_number"])
        amount = -(tx["amount"] + tx["fee"]) if out else tx["amount"]
        other = tx["to"] if out else tx["from"]
        fee = tx["fee"] if out else ""
        memo = json.dumps(tx["memo"], ensure_ascii=False) if tx["memo"] else ""
        print(
            f"{where:>8}  {'out' if out else 'in':3}  {amount:>+10}  {fee:>5}  "
            f"{other[:16]:16}  {entry['txid']:40}  {memo}"
        )
    last = txs[-1]["sequence_number"]
    if (
        last is not None
        and Member(member_url(args.member)).get(f"/api/address/{address}?count=1&before={last}")[
            "transactions"
        ]
    ):
        print(f"(older ones: --before {last})")
    return 0
