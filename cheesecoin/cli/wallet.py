"""``cheesecoin wallet``, ``balance``, ``send`` and ``tx``.

Wallet commands work on the wallet file (cheesecoin.storage.wallet); the
others ask a member's HTTP API (docs/protocol.md section 7) through
``cheesecoin.cli.client`` (``status`` and ``cheeses`` are in
``cheesecoin.cli.status``). Transactions are signed here, on the user's
machine: the member only ever sees signed ones.
Scripts may rely on the last word of ``wallet create``/``wallet address``
(the address), ``balance`` (the balance) and ``send`` (the txid).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cheesecoin.cli.client import Member, member_url
from cheesecoin.cli.errors import USAGE, CliError
from cheesecoin.cli.options import (
    add_member_client,
    add_wallet_option,
    address_or_wallet,
    parse_address,
    parse_int,
    wallet_path,
)
from cheesecoin.cli.output import print_json
from cheesecoin.cli.prompts import ask_passphrase, wallet_passphrase
from cheesecoin.core.signature import key_fault
from cheesecoin.core.tx import MAX_MEMO, MAX_VALUE
from cheesecoin.storage.wallet import (
    WALLET_ENV,
    WalletError,
    address_checked,
    create_wallet,
    load_wallet,
    public_info,
    wallet_address,
)
from cheesecoin.wire.codec import SMELL_RE

DEFAULT_FEE = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the wallet, balance, send and tx subcommands."""
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
    add_wallet_option(create)
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
    add_wallet_option(address)
    address.set_defaults(handler=cmd_wallet_address)
    export = wallet_sub.add_parser(
        "export-public",
        help="print the address and public key as JSON",
        description='Print {"address", "public_key"} (the public key as PEM) for others: '
        "never the private key.",
    )
    add_wallet_option(export)
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
    add_member_client(balance, cmd_balance, wallet=True)

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
    add_member_client(send, cmd_send, wallet=True, json=False)

    tx = sub.add_parser(
        "tx",
        help="a transaction's status",
        description="Show a transaction and whether it is confirmed.",
    )
    tx.add_argument("txid", metavar="TXID", help="40 hex characters")
    add_member_client(tx, cmd_tx)


# -- wallet -----------------------------------------------------------------------------


def cmd_wallet_create(args: argparse.Namespace) -> int:
    path = wallet_path(args)
    try:
        if os.path.lexists(path):  # before asking a passphrase
            raise WalletError(
                f"{path} already exists; a wallet is never overwritten "
                "(use --wallet FILE for another)"
            )
        passphrase = ask_passphrase(confirm=True) if args.encrypt else None
        # Only the default place (~/.cheesecoin) is made when missing: a
        # --wallet or $CHEESECOIN_WALLET path in a missing folder is a typo.
        default = not args.wallet and not os.environ.get(WALLET_ENV)
        directory = os.path.dirname(os.path.abspath(path))
        made_directory = default and not os.path.isdir(directory)
        wallet = create_wallet(path, passphrase, make_directory=default)
    except WalletError as e:
        raise CliError(str(e))
    if made_directory:
        print(f"made the directory {directory} (mode 0700)")
    print(
        f"created {'an encrypted' if args.encrypt else 'a'} wallet in {path} (mode 0600); "
        "keep it safe"
    )
    print(f"address {wallet.address}")
    return 0


def cmd_wallet_address(args: argparse.Namespace) -> int:
    path = wallet_path(args)
    try:
        address = wallet_address(path)
        checked = address_checked(path)
    except WalletError as e:
        raise CliError(str(e))
    if not checked:
        print(
            "cheesecoin: the wallet is encrypted: its address is shown as written, "
            "not checked against the key (send checks it)",
            file=sys.stderr,
        )
    print(address)
    return 0


def cmd_wallet_export_public(args: argparse.Namespace) -> int:
    try:
        print_json(public_info(wallet_address(wallet_path(args))))
    except WalletError as e:
        raise CliError(str(e))
    return 0


# -- member clients ----------------------------------------------------------------------


def cmd_balance(args: argparse.Namespace) -> int:
    address = address_or_wallet(args)
    answer = Member(member_url(args.member)).get(f"/api/balance/{address}")
    if args.json:
        print_json(answer)
        return 0
    spendable = answer.get("spendable", min(answer["balance"], answer["pending_balance"]))
    print(f"address          {answer['address']}")
    print(f"spendable now    {spendable} (confirmed, less your pending payments)")
    print(
        f"pending balance  {answer['pending_balance']} (counting the mempool both ways; "
        f"next nonce {answer['pending_nonce']})"
    )
    print(f"balance          {answer['balance']}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    to = parse_address(args.to, "recipient address")
    fault = key_fault(to)
    if fault is not None:  # no signature from it ever verifies: coins sent there are lost
        raise CliError(
            f"bad recipient address: {fault}; coins sent there could never be spent", USAGE
        )
    amount = parse_int(args.amount, "amount", 1)
    fee = parse_int(args.fee, "fee", 0)
    memo = args.memo
    try:
        memo.encode("utf-8")
    except UnicodeEncodeError:
        raise CliError("bad memo: it is not valid text", USAGE)
    if len(memo) > MAX_MEMO:
        raise CliError(f"bad memo: {len(memo)} characters, at most {MAX_MEMO}", USAGE)
    if amount + fee > MAX_VALUE:
        raise CliError("bad amount: amount plus fee is too large", USAGE)
    try:
        wallet = load_wallet(wallet_path(args), wallet_passphrase)
    except WalletError as e:
        raise CliError(str(e))
    if to == wallet.address:
        raise CliError("you cannot pay yourself: TO is your own address", USAGE)
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
        raise CliError(
            f"not enough coins: {have} spendable now, need {need} "
            f"(amount {amount} + fee {fee}){later}"
        )
    tx = wallet.sign(to, amount, fee, account["pending_nonce"], memo)
    answer = member.post("/api/transactions", tx)
    print(
        f"sent {amount} to {to} (fee {fee}, nonce {tx['nonce']}) from your {have} spendable coins; "
        "it waits in the mempool for a cheese"
    )
    print(f"txid {answer['txid']}")
    return 0


def cmd_tx(args: argparse.Namespace) -> int:
    tx_id = args.txid.strip().lower()
    if not SMELL_RE.match(tx_id):
        raise CliError(f"bad txid {args.txid[:80]!r}: a txid is 40 hex characters", USAGE)
    answer = Member(member_url(args.member)).get(f"/api/tx/{tx_id}")
    if args.json:
        print_json(answer)
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
