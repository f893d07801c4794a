"""The options and argument checks that the member-client subcommands share
(``--wallet``, ``--member``, ``--json``; whole numbers, addresses and the
query of a page)."""

from __future__ import annotations

import argparse
from typing import Optional

from cheesecoin.cli.client import DEFAULT_MEMBER
from cheesecoin.cli.errors import USAGE, CliError
from cheesecoin.cli.output import Handler, guard
from cheesecoin.core.tx import MAX_VALUE
from cheesecoin.storage.wallet import WalletError, default_wallet_path, wallet_address
from cheesecoin.wire.codec import ADDRESS_RE


def add_wallet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wallet",
        metavar="FILE",
        default=None,
        help="the wallet file (default $CHEESECOIN_WALLET, else ~/.cheesecoin/wallet.json)",
    )


def add_member_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--member",
        metavar="URL",
        default=None,
        help=f"the member's HTTP API (default $CHEESECOIN_MEMBER, else {DEFAULT_MEMBER})",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the member's JSON answer instead"
    )


def add_member_client(
    parser: argparse.ArgumentParser, handler: Handler, wallet: bool = False, json: bool = True
) -> None:
    """A subcommand that asks a member: ``--wallet`` (with ``wallet``), ``--member``
    and ``--json`` (with ``json``), in that order, and ``handler`` guarded (``guard``)."""
    if wallet:
        add_wallet_option(parser)
    add_member_option(parser)
    if json:
        add_json_option(parser)
    parser.set_defaults(handler=guard(handler))


def parse_int(text: str, what: str, lo: int, hi: int = MAX_VALUE) -> int:
    """A whole number from lo to hi; CliError (usage) naming ``what`` otherwise."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not lo <= int(text) <= hi:
        raise CliError(
            f"bad {what} {text[:40]!r}: it must be a whole number from {lo} to {hi}", USAGE
        )
    return int(text)


def page_query(count: str, key: str, start: Optional[str]) -> str:
    """The query of a page of a member's list: ``count=K`` (1 to 500), then
    ``&key=N`` (a sequence number) when ``start`` is given."""
    query = f"count={parse_int(count, 'count', 1, 500)}"
    if start is not None:
        query += f"&{key}={parse_int(start, 'sequence number', 0)}"
    return query


def parse_address(text: str, what: str = "address") -> str:
    """An address (64 hex characters, lowercased); CliError (usage) otherwise."""
    address = text.strip().lower()
    if not ADDRESS_RE.match(address):
        raise CliError(f"bad {what} {text[:80]!r}: an address is 64 hex characters", USAGE)
    return address


def wallet_path(args: argparse.Namespace) -> str:
    """--wallet, else the default wallet file."""
    path: str = args.wallet or default_wallet_path()
    return path


def address_or_wallet(args: argparse.Namespace) -> str:
    """The ADDRESS argument, or the wallet's address."""
    if args.address:
        return parse_address(args.address)
    try:
        return wallet_address(wallet_path(args))
    except WalletError as e:
        raise CliError(f"{e} (or give an ADDRESS)")
