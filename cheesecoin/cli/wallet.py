"""``cheesecoin wallet``, ``balance``, ``send``, ``tx``, ``status`` and ``cheeses``.

Wallet commands work on the wallet file (cheesecoin.wallet); the others ask
a member's HTTP API (docs/protocol.md section 7) through ``cheesecoin.cli.client``. Transactions are
signed here, on the user's machine: the member only ever sees signed ones.
Scripts may rely on the last word of ``wallet create``/``wallet address``
(the address), ``balance`` (the balance) and ``send`` (the txid).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import sys
from typing import Any, Callable, List

from cheesecoin.cli.client import DEFAULT_MEMBER, Member, member_url
from cheesecoin.cli.errors import USAGE as _USAGE
from cheesecoin.cli.errors import CliError
from cheesecoin.core.signature import key_fault
from cheesecoin.core.tx import MAX_MEMO, MAX_VALUE
from cheesecoin.storage.wallet import (
    WALLET_ENV,
    WalletError,
    address_checked,
    ask_passphrase,
    create_wallet,
    default_wallet_path,
    load_wallet,
    public_info,
    wallet_address,
)
from cheesecoin.wire.codec import ADDRESS_RE, SMELL_RE

DEFAULT_FEE = 1


def _error(message: str, code: int = 1) -> Exception:
    return CliError(message, code)


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The handler, with a member answer of an unexpected shape as one clear line."""

    @functools.wraps(handler)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise _error(
                f"the member's answer is not what this command expects ({type(e).__name__}: {e})"
            )

    return guarded


# -- arguments -------------------------------------------------------------------------


def _add_wallet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wallet",
        metavar="FILE",
        default=None,
        help="the wallet file (default $CHEESECOIN_WALLET, else ~/.cheesecoin/wallet.json)",
    )


def _add_member_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--member",
        metavar="URL",
        default=None,
        help=f"the member's HTTP API (default $CHEESECOIN_MEMBER, else {DEFAULT_MEMBER})",
    )


def _add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the member's JSON answer instead"
    )


def register(sub: Any) -> None:
    """Add the wallet and member-client subcommands."""
    wallet = sub.add_parser(
        "wallet",
        help="make and show your wallet",
        description="Make and show a wallet file: one Ed25519 key and its address, mode 0600.",
    )
    wallet_sub = wallet.add_subparsers(dest="wallet_command", metavar="ACTION")
    wallet_sub.required = True
    create = wallet_sub.add_parser(
        "create",
        help="make a new wallet (never overwrites one) and print its address",
        description="Make a new wallet file (mode 0600) and print its address as the last word. "
        "An existing file is never overwritten.",
    )
    _add_wallet_option(create)
    create.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt the key with a passphrase (asked twice, or $CHEESECOIN_PASSPHRASE)",
    )
    create.set_defaults(handler=cmd_wallet_create)
    address = wallet_sub.add_parser(
        "address",
        help="print the wallet's address",
        description="Print the wallet's address (no passphrase needed).",
    )
    _add_wallet_option(address)
    address.set_defaults(handler=cmd_wallet_address)
    export = wallet_sub.add_parser(
        "export-public",
        help="print the address and public key as JSON",
        description='Print {"address", "public_key"} (the public key as PEM) for others: never the private key.',
    )
    _add_wallet_option(export)
    export.set_defaults(handler=cmd_wallet_export_public)

    balance = sub.add_parser(
        "balance",
        help="an address's balance, from a member",
        description="Print an address's balance on the member's best stack as the last word "
        "(and the balance counting the mempool).",
    )
    balance.add_argument(
        "address", metavar="ADDRESS", nargs="?", help="the address (default: your wallet's)"
    )
    _add_wallet_option(balance)
    _add_member_option(balance)
    _add_json_option(balance)
    balance.set_defaults(handler=_guard(cmd_balance))

    send = sub.add_parser(
        "send",
        help="pay someone: sign here, send through a member",
        description="Sign a payment with your wallet and give it to the member, which relays it. "
        "Prints the txid as the last word.",
    )
    send.add_argument("to", metavar="TO", help="the address to pay (64 hex characters)")
    send.add_argument("amount", metavar="AMOUNT", help="coins to pay, 1 or more")
    send.add_argument(
        "--fee",
        default=str(DEFAULT_FEE),
        help=f"fee for the miner, 0 or more (default {DEFAULT_FEE})",
    )
    send.add_argument("--memo", default="", help=f"a note of at most {MAX_MEMO} characters, public")
    _add_wallet_option(send)
    _add_member_option(send)
    send.set_defaults(handler=_guard(cmd_send))

    tx = sub.add_parser(
        "tx",
        help="a transaction's status",
        description="Show a transaction and whether it is confirmed.",
    )
    tx.add_argument("txid", metavar="TXID", help="40 hex characters")
    _add_member_option(tx)
    _add_json_option(tx)
    tx.set_defaults(handler=_guard(cmd_tx))

    status = sub.add_parser(
        "status",
        help="the member's height, tip, peers, mining",
        description="Show the member's state, for people.",
    )
    _add_member_option(status)
    _add_json_option(status)
    status.set_defaults(handler=_guard(cmd_status))

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
    _add_member_option(cheeses)
    _add_json_option(cheeses)
    cheeses.set_defaults(handler=_guard(cmd_cheeses))


def _parse_int(text: str, what: str, lo: int, hi: int = MAX_VALUE) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not lo <= int(text) <= hi:
        raise _error(
            f"bad {what} {text[:40]!r}: it must be a whole number from {lo} to {hi}", _USAGE
        )
    return int(text)


def _parse_address(text: str, what: str = "address") -> str:
    address = text.strip().lower()
    if not ADDRESS_RE.match(address):
        raise _error(f"bad {what} {text[:80]!r}: an address is 64 hex characters", _USAGE)
    return address


def _wallet_path(args: argparse.Namespace) -> str:
    return args.wallet or default_wallet_path()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# -- wallet -----------------------------------------------------------------------------


def cmd_wallet_create(args: argparse.Namespace) -> int:
    path = _wallet_path(args)
    try:
        if os.path.lexists(path):  # before asking a passphrase
            raise WalletError(
                f"{path} already exists; a wallet is never overwritten (use --wallet FILE for another)"
            )
        passphrase = ask_passphrase(confirm=True) if args.encrypt else None
        # Only the default place (~/.cheesecoin) is made when missing: a
        # --wallet or $CHEESECOIN_WALLET path in a missing folder is a typo.
        default = not args.wallet and not os.environ.get(WALLET_ENV)
        directory = os.path.dirname(os.path.abspath(path))
        made_directory = default and not os.path.isdir(directory)
        wallet = create_wallet(path, passphrase, make_directory=default)
    except WalletError as e:
        raise _error(str(e))
    if made_directory:
        print(f"made the directory {directory} (mode 0700)")
    print(
        f"created {'an encrypted' if args.encrypt else 'a'} wallet in {path} (mode 0600); keep it safe"
    )
    print(f"address {wallet.address}")
    return 0


def cmd_wallet_address(args: argparse.Namespace) -> int:
    path = _wallet_path(args)
    try:
        address = wallet_address(path)
        checked = address_checked(path)
    except WalletError as e:
        raise _error(str(e))
    if not checked:
        print(
            "cheesecoin: the wallet is encrypted: its address is shown as written, not checked against "
            "the key (send checks it)",
            file=sys.stderr,
        )
    print(address)
    return 0


def cmd_wallet_export_public(args: argparse.Namespace) -> int:
    try:
        _print_json(public_info(wallet_address(_wallet_path(args))))
    except WalletError as e:
        raise _error(str(e))
    return 0


# -- member clients ----------------------------------------------------------------------


def _address_or_wallet(args: argparse.Namespace) -> str:
    """The ADDRESS argument, or the wallet's address."""
    if args.address:
        return _parse_address(args.address)
    try:
        return wallet_address(_wallet_path(args))
    except WalletError as e:
        raise _error(f"{e} (or give an ADDRESS)")


def cmd_balance(args: argparse.Namespace) -> int:
    address = _address_or_wallet(args)
    answer = Member(member_url(args.member)).get(f"/api/balance/{address}")
    if args.json:
        _print_json(answer)
        return 0
    spendable = answer.get("spendable", min(answer["balance"], answer["pending_balance"]))
    print(f"address          {answer['address']}")
    print(f"spendable now    {spendable} (confirmed, less your pending payments)")
    print(
        f"pending balance  {answer['pending_balance']} (counting the mempool both ways; next nonce {answer['pending_nonce']})"
    )
    print(f"balance          {answer['balance']}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    to = _parse_address(args.to, "recipient address")
    fault = key_fault(to)
    if fault is not None:  # no signature from it ever verifies: coins sent there are lost
        raise _error(
            f"bad recipient address: {fault}; coins sent there could never be spent", _USAGE
        )
    amount = _parse_int(args.amount, "amount", 1)
    fee = _parse_int(args.fee, "fee", 0)
    memo = args.memo
    try:
        memo.encode("utf-8")
    except UnicodeEncodeError:
        raise _error("bad memo: it is not valid text", _USAGE)
    if len(memo) > MAX_MEMO:
        raise _error(f"bad memo: {len(memo)} characters, at most {MAX_MEMO}", _USAGE)
    if amount + fee > MAX_VALUE:
        raise _error("bad amount: amount plus fee is too large", _USAGE)
    try:
        wallet = load_wallet(_wallet_path(args))
    except WalletError as e:
        raise _error(str(e))
    if to == wallet.address:
        raise _error("you cannot pay yourself: TO is your own address", _USAGE)
    member = Member(member_url(args.member))
    account = member.get(f"/api/balance/{wallet.address}")
    # What the member lets a new payment spend: confirmed coins less our
    # pending payments (a member without "spendable": the smaller figure).
    have = account.get("spendable", min(account["balance"], account["pending_balance"]))
    need = amount + fee
    if have < need:
        incoming = account["pending_balance"] - have
        later = (
            f"; {incoming} more are on their way, spendable once confirmed" if incoming > 0 else ""
        )
        raise _error(
            f"not enough coins: {have} spendable now, need {need} (amount {amount} + fee {fee}){later}"
        )
    tx = wallet.sign(to, amount, fee, account["pending_nonce"], memo)
    answer = member.post("/api/transactions", tx)
    print(
        f"sent {amount} to {to} (fee {fee}, nonce {tx['nonce']}) from your {have} spendable coins; "
        "it waits in the mempool for a cheese"
    )
    print(f"txid {answer['txid']}")
    return 0


def _when(timestamp: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(int(timestamp), datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def cmd_tx(args: argparse.Namespace) -> int:
    tx_id = args.txid.strip().lower()
    if not SMELL_RE.match(tx_id):
        raise _error(f"bad txid {args.txid[:80]!r}: a txid is 40 hex characters", _USAGE)
    answer = Member(member_url(args.member)).get(f"/api/tx/{tx_id}")
    if args.json:
        _print_json(answer)
        return 0
    tx = answer["tx"]
    where = (
        f"in cheese {answer['sequence_number']}"
        if answer["status"] == "confirmed"
        else "waiting in the mempool"
    )
    print(f"txid    {tx_id}")
    print(f"from    {tx['from']}")
    print(f"to      {tx['to']}")
    print(f"amount  {tx['amount']} (fee {tx['fee']}, nonce {tx['nonce']})")
    if tx["memo"]:
        print(f"memo    {json.dumps(tx['memo'], ensure_ascii=False)}")
    print(f"status  {answer['status']}, {where}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    s = Member(member_url(args.member)).get("/api/status")
    if args.json:
        _print_json(s)
        return 0
    peers: List[dict] = s.get("peers") or []
    mining = "yes" if s.get("mining") else "no"
    if s.get("mining"):
        mining += f", {float(s.get('hashrate') or 0):,.0f} hashes/s"
    print(f"network   {s.get('network')} ({s.get('blue_cheese')})")
    print(f"node      {s.get('node_id')}")  # with tls, the identity to pin (HOST:PORT@NODE_ID)
    print(f"height    {s.get('height')}")
    print(f"tip       {s.get('tip')} ({_when(s.get('timestamp'))})")
    print(f"work      {s.get('work')}, next bits {s.get('bits')}")
    print(f"mempool   {s.get('mempool')} transactions")
    print(f"mining    {mining}")
    print(f"peers     {len(peers)}")
    for p in peers:
        way = "in " if p.get("inbound") else "out"
        link = {True: "  encrypted", False: "  plain"}.get(p.get("encrypted"), "")  # section 5.3
        node = str(p.get("node_id"))[:12]
        print(
            f"  {way} {p.get('host')}:{p.get('port')}  height {p.get('height')}  node {node}{link}"
        )
    return 0


def cmd_cheeses(args: argparse.Namespace) -> int:
    count = _parse_int(args.count, "count", 1, 500)
    query = f"count={count}"
    if args.start is not None:
        query += f"&from={_parse_int(args.start, 'sequence number', 0)}"
    answer = Member(member_url(args.member)).get(f"/api/cheeses?{query}")
    if args.json:
        _print_json(answer)
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
            f"{c['sequence_number']:>7}  {c['smell']:40}  {_when(c['timestamp'])[:19]:19}  {c['bits']:>4}  "
            f"{len(info.get('transactions', [])):>4}  {miner[:16]}"
        )
    return 0
