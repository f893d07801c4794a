"""The one signature rule of docs/protocol.md section 4 on every path.

Each vector of ``tests/vectors/signature-vectors.json`` goes through every
place a signature is checked (the rule itself, the mempool, the ledger, a
cheese's validation, the sync's worker check, ``cheesecoin verify``, the
wallet's check and the simulator's shared cache) and must get the file's
verdict. Then a stack holding a cheese that spends from the neutral point
(a key of small order, whose "signatures" OpenSSL accepts for any message)
is refused by ``cheesecoin verify``, by a member receiving it as ANNOUNCE,
as ANNOUNCE_COMPACT and in a sync, and by POST /api/transactions.
"""

from __future__ import annotations

import io
import json
import os
import random
from contextlib import redirect_stderr, redirect_stdout
from typing import List, Optional, Tuple

from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_sign_open,
)
from nacl.exceptions import BadSignatureError
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.cli.main import main as cli_main
from cheesecoin.core import signature
from cheesecoin.core.cheese import Network, compact_announcement, info_hash
from cheesecoin.core.errors import InvalidCheese, InvalidTx
from cheesecoin.core.headers import body_hash, checked_bodies
from cheesecoin.core.ledger import Ledger
from cheesecoin.core.mempool import Mempool
from cheesecoin.core.node import MemberNode
from cheesecoin.core.signature import SignatureCache, key_fault, use_signature_cache
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import (
    sign_tx,
    signed_cheeses,
    signing_bytes,
    tx_signature_fault,
    verify_signature,
)
from cheesecoin.storage.wallet import Wallet
from cheesecoin.testing.chain import ChainBuilder, key_from_seed, make_network, mine_child
from cheesecoin.testing.fakes import BOB, NETWORK, NOW, Net, Raw, make_member, ready_raw
from cheesecoin.web import api
from tests.cases import case, clock_at, temp_path

VECTORS_FILE = os.path.join(os.path.dirname(__file__), "..", "vectors", "signature-vectors.json")
with open(VECTORS_FILE, encoding="utf-8") as _f:
    VECTORS = json.load(_f)["vectors"]
NEUTRAL = "01" + "00" * 31  # the neutral point: a key of order 1
RULE_NAME = "tx-signature"
PAST_NETWORK = make_network("signature-rule")  # timestamps in the past, for ``cheesecoin verify``


def by_name(name: str) -> dict:
    return next(v for v in VECTORS if v["name"] == name)


def anyone_signs(tx: dict, s: int = 12345) -> dict:
    """``tx`` from the neutral point A "signed" as OpenSSL accepts for any message:
    [S]B - [k]A = [S]B whatever k is, so (R, S) = (encode([s]B), s)."""
    scalar = s.to_bytes(32, "little")
    r = crypto_scalarmult_ed25519_base_noclamp(scalar)
    return dict(tx, signature=(r + scalar).hex())


def openssl_accepts(tx: dict) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(tx["from"]))
        key.verify(bytes.fromhex(tx["signature"]), signing_bytes(tx))
        return True
    except (InvalidSignature, ValueError):
        return False


def stack_for(tx: dict, network: Network = NETWORK) -> Tuple[CheeseStack, List[dict]]:
    """A stack on which ``tx``'s sender has coins and ``tx``'s nonce is next (a
    nonce-1 vector follows the 'valid' one, from the same key)."""
    cheeses = ChainBuilder(network).extend(network.blue_cheese, 2, tx["from"])
    if tx["nonce"] == 1:
        first = by_name("valid")["tx"]
        assert first["from"] == tx["from"] and first["nonce"] == 0
        cheeses.append(mine_child(cheeses[-1], network.bits, "ab" * 32, [first]))
    else:
        assert tx["nonce"] == 0
    stack = CheeseStack(network, clock=lambda: NOW)
    for cheese in cheeses:
        stack.add_cheese(cheese)
    return stack, cheeses


def spend_from_neutral(network: Network = NETWORK) -> Tuple[List[dict], dict, dict]:
    """(three cheeses whose miner is the neutral point, a fourth holding a payment
    from it signed as anyone could, that payment)."""
    cheeses = ChainBuilder(network).extend(network.blue_cheese, 3, NEUTRAL)
    tx = anyone_signs(
        {"from": NEUTRAL, "to": BOB, "amount": 100, "fee": 1, "nonce": 0, "memo": "anyone's"}
    )
    bad = mine_child(cheeses[-1], network.bits, "ab" * 32, [tx], note="small order")
    return cheeses, bad, tx


def run_cli(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


class RuleTests(SynchronousTestCase):
    """The rule itself: verdicts, the clause named, its constants."""

    def test_each_vector_gets_its_verdict_and_a_named_clause(self) -> None:
        for v in VECTORS:
            with case(vector=v["name"]):
                tx = v["tx"]
                assert verify_signature(tx) is v["valid"]
                assert (
                    signature.verify(tx["from"], tx["signature"], signing_bytes(tx)) is v["valid"]
                )
                assert (tx_signature_fault(tx) is None) is v["valid"]

    def test_libsodium_alone_reaches_the_same_verdicts(self) -> None:
        """The linked libsodium applies the rule itself: the explicit checks before it
        only name the clause (and hold should a build differ)."""
        for v in VECTORS:
            with case(vector=v["name"]):
                tx = v["tx"]
                try:
                    crypto_sign_open(
                        bytes.fromhex(tx["signature"]) + signing_bytes(tx),
                        bytes.fromhex(tx["from"]),
                    )
                    verdict = True
                except BadSignatureError:
                    verdict = False
                assert verdict is v["valid"]

    def test_the_clauses_named(self) -> None:
        assert tx_signature_fault(by_name("s-not-reduced")["tx"]) == signature.S_NOT_REDUCED
        assert tx_signature_fault(by_name("small-order-key")["tx"]) == signature.KEY_SMALL_ORDER
        assert tx_signature_fault(by_name("small-order-r")["tx"]) == signature.R_SMALL_ORDER
        assert tx_signature_fault(by_name("other-message")["tx"]) == signature.EQUATION

    def test_openssl_accepts_what_the_rule_refuses(self) -> None:
        """Why the rule is explicit: the signing side's library takes both small-order forms."""
        for name in ("small-order-key", "small-order-r"):
            assert openssl_accepts(by_name(name)["tx"]) and not verify_signature(
                by_name(name)["tx"]
            )
        tx = anyone_signs(dict(by_name("small-order-key")["tx"], memo="any message at all"))
        assert openssl_accepts(tx) and tx_signature_fault(tx) == signature.KEY_SMALL_ORDER

    def test_every_small_order_encoding_is_refused_as_key_and_as_r(self) -> None:
        good = by_name("valid")["tx"]
        for encoding in sorted(signature.SMALL_ORDER_ENCODINGS):
            with case(encoding=encoding.hex()):
                assert key_fault(encoding.hex()) in (
                    signature.KEY_SMALL_ORDER,
                    signature.KEY_NOT_CANONICAL,
                )
                forged = dict(good, signature=encoding.hex() + good["signature"][64:])
                assert tx_signature_fault(forged) == signature.R_SMALL_ORDER

    def test_the_small_order_points_are_the_eight_torsion_points(self) -> None:
        """y = 1, p - 1, 0 and the order-8 y values: each on the curve, and 8P = 0 by doubling."""
        p, d = signature.P, signature.D
        for y in signature.SMALL_ORDER_Y:
            x2 = (y * y - 1) * pow(d * y * y + 1, p - 2, p) % p
            assert x2 == 0 or pow(x2, (p - 1) // 2, p) == 1, y
            point = y.to_bytes(32, "little")
            for _ in range(3):  # [2]P, [4]P, [8]P through libsodium's addition
                point = crypto_core_ed25519_add(point, point)
            assert point == bytes.fromhex(NEUTRAL), y

    def test_on_curve_agrees_with_libsodium(self) -> None:
        base = crypto_scalarmult_ed25519_base_noclamp((1).to_bytes(32, "little"))
        rng = random.Random(28)
        for _ in range(200):
            raw = rng.randbytes(32)
            if int.from_bytes(raw, "little") & ((1 << 255) - 1) >= signature.P:
                continue
            try:
                crypto_core_ed25519_add(raw, base)
                libsodium = True
            except RuntimeError:  # nacl.exceptions.RuntimeError: not a point of the curve
                libsodium = False
            assert signature._on_curve(raw) is libsodium, raw.hex()

    def test_a_real_key_is_fine(self) -> None:
        assert key_fault(by_name("valid")["tx"]["from"]) is None
        assert key_fault("zz" * 32) == signature.NOT_HEX


class PathTests(SynchronousTestCase):
    """Each vector through each path that checks a signature."""

    def test_mempool(self) -> None:
        for v in VECTORS:
            with case(vector=v["name"]):
                tx = v["tx"]
                ledger = Ledger()
                ledger.balances[tx["from"]] = 1000
                ledger.nonces[tx["from"]] = tx["nonce"]
                pool = Mempool(ledger)
                if v["valid"]:
                    assert pool.add(tx)[1] and len(pool) == 1
                else:
                    error = self.assertRaises(InvalidTx, pool.add, tx)
                    assert error.rule == RULE_NAME and tx_signature_fault(tx) in error.message
                    assert len(pool) == 0

    def test_ledger(self) -> None:
        for v in VECTORS:
            with case(vector=v["name"]):
                tx = v["tx"]
                ledger = Ledger()
                ledger.balances[tx["from"]] = 1000
                ledger.nonces[tx["from"]] = tx["nonce"]
                if v["valid"]:
                    ledger.check_tx(tx)
                else:
                    assert self.assertRaises(InvalidTx, ledger.check_tx, tx).rule == RULE_NAME

    def test_a_cheese_validation(self) -> None:
        for v in VECTORS:
            with case(vector=v["name"]):
                stack, cheeses = stack_for(v["tx"])
                cheese = mine_child(cheeses[-1], NETWORK.bits, "ab" * 32, [v["tx"]])
                if v["valid"]:
                    assert (
                        stack.add_cheese(cheese).status == "added"
                        and stack.tip.smell == cheese["smell"]
                    )
                else:
                    error = self.assertRaises(InvalidCheese, stack.add_cheese, cheese)
                    assert error.rule == RULE_NAME and stack.tip.smell == cheeses[-1]["smell"]

    def test_the_sync_worker_check(self) -> None:
        for v in VECTORS:
            with case(vector=v["name"]):
                _, cheeses = stack_for(v["tx"])
                cheese = mine_child(cheeses[-1], NETWORK.bits, "ab" * 32, [v["tx"]])
                signed, hashes = checked_bodies([cheeses[-1], cheese], offset=10)
                assert (11 in signed) is v["valid"] and 10 in signed
                assert hashes[11] == info_hash(cheese["unit_of_information"])
                assert (3 in signed_cheeses([cheese], offset=3)) is v["valid"]

    def test_the_worker_check_agrees_with_the_general_functions(self) -> None:
        """checked_bodies builds each transaction's texts once: same verdicts and
        info_hashes as signed_cheeses and core.cheese.info_hash, whatever the body."""
        key = key_from_seed("texts")
        txs = [
            sign_tx(key, BOB, 1, 1, n, memo)
            for n, memo in enumerate(["", 'é ✓ "q" \\ \n', "x" * 140])
        ]
        parent = PAST_NETWORK.blue_cheese
        bodies = [
            mine_child(parent, 1, "ab" * 32, t, note=note)
            for t, note in [
                (txs, None),
                (txs, "nöte"),
                ([], None),
                ([dict(txs[0], memo="changed")], "n"),
                ([dict(txs[0], amount=True)], None),
                ([by_name("small-order-key")["tx"]], None),
            ]
        ]
        bodies += [
            {
                "unit_of_information": {
                    "miner": "ab" * 32,
                    "transactions": [dict(txs[0], memo="\ud800")],
                }
            },
            {"unit_of_information": {"miner": "ab" * 32, "transactions": txs, "extra": 1}},
            {"unit_of_information": {"miner": 7, "transactions": txs}},
            "not a cheese",
        ]
        signed, hashes = checked_bodies(bodies, offset=5)
        assert signed == {i + 5 for i in signed_cheeses(bodies)} == {5, 6, 7, 12, 13}
        assert hashes == {i + 5: body_hash(body) for i, body in enumerate(bodies)}

    def test_cheesecoin_verify(self) -> None:
        tmp = temp_path(self)
        for v in VECTORS:
            _, cheeses = stack_for(v["tx"], PAST_NETWORK)
            cheese = mine_child(cheeses[-1], PAST_NETWORK.bits, "ab" * 32, [v["tx"]])
            path = tmp / f"{v['name']}.json"
            path.write_text(json.dumps([PAST_NETWORK.blue_cheese] + cheeses + [cheese]))
            for workers in ("1", "2"):
                with case(vector=v["name"], workers=workers):
                    code, out, err = run_cli("verify", "--workers", workers, str(path))
                    if v["valid"]:
                        assert code == 0 and json.loads(out)["tip"] == cheese["smell"], err
                    else:
                        assert code == 1 and f"({RULE_NAME})" in err and out == ""

    def test_cheesecoin_verify_with_a_memo_that_is_not_text(self) -> None:
        """A lone surrogate (JSON "\\ud800") in a plainly shaped transaction: the rule
        named, not a traceback while the signed bytes are built."""
        tx = dict(by_name("valid")["tx"], memo="\ud800")
        _, cheeses = stack_for(tx, PAST_NETWORK)
        info = {"miner": "ab" * 32, "transactions": [tx]}
        body = dict(
            cheeses[-1],
            sequence_number=cheeses[-1]["sequence_number"] + 1,
            parent_smell=cheeses[-1]["smell"],
            unit_of_information=info,
        )
        path = temp_path(self) / "surrogate.json"
        path.write_text(json.dumps([PAST_NETWORK.blue_cheese] + cheeses + [body]))
        for workers in ("1", "2"):
            with case(workers=workers):
                code, out, err = run_cli("verify", "--workers", workers, str(path))
                assert code == 1 and "(tx-fields)" in err and "lone surrogate" in err, err

    def test_the_wallet(self) -> None:
        """The wallet checks what it signs with the same rule, and will not pay a key
        that can never sign (coins sent there could never move)."""
        for v in VECTORS:
            with case(vector=v["name"]):
                assert (tx_signature_fault(v["tx"]) is None) is v["valid"]
        wallet = Wallet("w.json", key_from_seed("signature-rule"))
        tx = wallet.sign(BOB, 5, 1, 0, "checked")
        assert verify_signature(tx)
        code, _, err = run_cli("send", NEUTRAL, "5", "--wallet", "/nonexistent/w.json")
        assert code == 2 and "small order" in err and "never be spent" in err

    def test_the_simulators_shared_cache(self) -> None:
        cache = SignatureCache()
        previous = use_signature_cache(cache)
        try:
            for _ in range(2):
                for v in VECTORS:
                    with case(vector=v["name"]):
                        assert verify_signature(v["tx"]) is v["valid"]
        finally:
            use_signature_cache(previous)
        valid = sum(v["valid"] for v in VECTORS)
        assert len(cache.good) == valid and cache.hits == valid  # only good verdicts are kept
        assert cache.checks == len(VECTORS) + (len(VECTORS) - valid)


class SmallOrderSpendTests(SynchronousTestCase):
    """A cheese that spends from the neutral point is refused everywhere, the rule named."""

    def setUp(self) -> None:
        self.clock = clock_at(NOW)
        self.cheeses, self.bad, self.tx = spend_from_neutral()
        assert openssl_accepts(self.tx), "the payment is one OpenSSL would accept"

    def assert_refused(self, manager) -> None:
        stack = manager.node.stack
        assert stack.tip.smell == self.cheeses[-1]["smell"]
        assert stack.invalid_rule(self.bad["smell"]) == RULE_NAME

    def test_cheesecoin_verify(self) -> None:
        cheeses, bad, _ = spend_from_neutral(
            PAST_NETWORK
        )  # ``cheesecoin verify`` checks against now
        path = temp_path(self) / "stack.json"
        path.write_text(json.dumps([PAST_NETWORK.blue_cheese] + cheeses + [bad]))
        code, out, err = run_cli("verify", "--workers", "1", str(path))
        assert code == 1 and out == ""
        assert "cheese 4 (sequence_number 4)" in err and f"({RULE_NAME})" in err, err

    def test_announce(self) -> None:
        manager = make_member("aa", self.clock, self.cheeses)
        raw = ready_raw(manager)
        replies = raw.send({"type": "ANNOUNCE", "cheese": self.bad})
        errors = [m for m in replies if m["type"] == "ERROR"]
        assert (
            errors and errors[0]["code"] == "invalid-cheese" and RULE_NAME in errors[0]["message"]
        ), replies
        self.assert_refused(manager)

    def test_announce_compact(self) -> None:
        manager = make_member("aa", self.clock, self.cheeses)
        raw = Raw(manager, host="10.0.0.5")
        raw.hello(node_id="55", features=["headers", "compact", "mempool"])
        [ask] = raw.send(compact_announcement(self.bad))
        assert ask["type"] == "GET_TXS"
        replies = raw.send({"type": "TXS", "transactions": [self.tx], "id": ask["id"]})
        errors = [m for m in replies if m["type"] == "ERROR"]
        assert (
            errors and errors[0]["code"] == "invalid-cheese" and RULE_NAME in errors[0]["message"]
        ), replies
        self.assert_refused(manager)

    def test_sync_with_headers_and_version_1(self) -> None:
        for features in (None, ()):
            with case(features=features):
                kw = {} if features is None else {"features": features}
                seed = make_member(
                    "11", self.clock, self.cheeses + [self.bad], **kw
                )  # added unchecked
                assert seed.node.stack.tip.smell == self.bad["smell"]
                fresh = make_member("22", self.clock, **kw)
                Net(self.clock).link(fresh, seed)
                self.assert_refused(fresh)

    def test_post_api_transactions(self) -> None:
        stack = CheeseStack(NETWORK, clock=lambda: NOW)
        for cheese in self.cheeses:
            stack.add_cheese(cheese)
        node = MemberNode(stack, clock=lambda: NOW)
        assert stack.ledger.balance(NEUTRAL) >= 101
        status, answer = post_transaction(node, self.tx)
        assert status == 400 and answer["rule"] == RULE_NAME, answer
        assert signature.KEY_SMALL_ORDER in answer["message"] and len(node.mempool) == 0


def post_transaction(node: MemberNode, tx: dict) -> Tuple[int, Optional[dict]]:
    """POST /api/transactions through the site's real HTTP parser (no sockets)."""
    site = api.make_site(node)
    site._reactor = clock_at(NOW)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    body = json.dumps(tx).encode("utf-8")
    channel.dataReceived(
        b"POST /api/transactions HTTP/1.1\r\nHost: m\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    raw = transport.value()
    channel.connectionLost(None)
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)
