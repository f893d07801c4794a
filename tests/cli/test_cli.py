"""The ``cheesecoin`` command: wallet, balance, send, tx, status, cheeses, verify.

Most tests run ``cheesecoin.cli.main`` in this process against the real API
code (cheesecoin.api) served by a small threaded HTTP bridge; the last one
runs a real mining member in a subprocess and pays between two wallets.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from typing import Any, Iterator, List, Tuple

import pytest
from procs import Proc, free_port, http_json, vector, wait_until
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from cheesecoin.cli import prompts
from cheesecoin.cli.main import main
from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.storage import wallet as wallet_mod
from cheesecoin.storage.wallet import create_wallet
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child
from cheesecoin.web.api import make_site

ALICE = key_from_seed("alice")
BOB = key_from_seed("bob")
A, B = address_of(ALICE), address_of(BOB)


def run(capsys, *argv: str) -> Tuple[int, str, str]:
    """Run the command in this process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse: --help, usage errors
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def last_word(text: str) -> str:
    return text.split()[-1]


def one_line_error(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and err.startswith("cheesecoin: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path) -> None:
    for name in ("CHEESECOIN_WALLET", "CHEESECOIN_PASSPHRASE", "CHEESECOIN_MEMBER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# -- a member's API on a real socket, served from a thread ------------------------------------


class _Bridge(http.server.BaseHTTPRequestHandler):
    """Hands each HTTP request to the Twisted site, byte for byte, and sends its answer back."""

    site: Any = None
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        head = f"{self.command} {self.path} HTTP/1.1\r\n"
        for name, value in self.headers.items():
            if name.lower() != "connection":
                head += f"{name}: {value}\r\n"
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(head.encode("latin-1") + b"Connection: close\r\n\r\n" + body)
        self.wfile.write(transport.value())
        channel.connectionLost(None)
        self.close_connection = True

    do_GET = do_POST = do_HEAD = do_PUT = _forward

    def log_message(self, *args: Any) -> None:
        pass


class Member:
    """A member node (alice mined 2 cheeses) with its API on 127.0.0.1."""

    def __init__(self) -> None:
        self.network = make_network()
        self.node = MemberNode(CheeseStack(self.network))
        self.site = make_site(self.node)
        self.site._reactor = Clock()
        self.tip = self.network.blue_cheese
        self.mine(A)
        self.mine(A)
        handler = type("Handler", (_Bridge,), {"site": self.site})
        self.server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def mine(self, miner: str, txs: List[dict] = ()) -> dict:
        self.tip = mine_child(self.tip, self.network.bits, miner, list(txs))
        self.node.submit_cheese(self.tip)
        return self.tip

    def mine_mempool(self, miner: str = A) -> dict:
        return self.mine(miner, self.node.mempool.select(1000))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def member() -> Iterator[Member]:
    m = Member()
    yield m
    m.stop()


@pytest.fixture
def alice_wallet(tmp_path) -> str:
    return create_wallet(str(tmp_path / "alice.json"), private_key=ALICE).path


# -- help and wallets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["wallet", "--help"],
        ["wallet", "create", "--help"],
        ["wallet", "address", "--help"],
        ["wallet", "export-public", "--help"],
        ["balance", "--help"],
        ["send", "--help"],
        ["tx", "--help"],
        ["status", "--help"],
        ["cheeses", "--help"],
    ],
)
def test_help_everywhere(capsys, argv) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 0 and "usage: cheesecoin" in out and err == ""


def test_wallet_create_and_address(capsys, tmp_path) -> None:
    path = str(tmp_path / "w.json")
    code, out, err = run(capsys, "wallet", "create", "--wallet", path)
    assert code == 0 and err == ""
    address = last_word(out)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert run(capsys, "wallet", "address", "--wallet", path) == (0, address + "\n", "")
    code, out, err = run(capsys, "wallet", "export-public", "--wallet", path)
    assert code == 0 and json.loads(out)["address"] == address and "PRIVATE" not in out


def test_wallet_create_never_overwrites(capsys, tmp_path) -> None:
    path = tmp_path / "w.json"
    run(capsys, "wallet", "create", "--wallet", str(path))
    before = path.read_bytes()
    code, out, err = run(capsys, "wallet", "create", "--wallet", str(path))
    assert code == 1 and out == ""
    one_line_error(err, "already exists")
    assert path.read_bytes() == before


def test_default_wallet_and_env(capsys, tmp_path, monkeypatch) -> None:
    code, out, _ = run(capsys, "wallet", "create")
    assert code == 0 and (tmp_path / "home" / ".cheesecoin" / "wallet.json").exists()
    assert run(capsys, "wallet", "address")[1].strip() == last_word(out)
    monkeypatch.setenv("CHEESECOIN_WALLET", str(tmp_path / "env.json"))
    code, out, _ = run(capsys, "wallet", "create")
    assert code == 0 and (tmp_path / "env.json").exists()
    assert run(capsys, "wallet", "address")[1].strip() == last_word(out)


def test_no_wallet(capsys, tmp_path) -> None:
    code, out, err = run(capsys, "wallet", "address", "--wallet", str(tmp_path / "none.json"))
    assert code == 1 and out == ""
    one_line_error(err, "no wallet at", "wallet create")


def test_corrupt_wallet(capsys, tmp_path) -> None:
    path = tmp_path / "w.json"
    path.write_text("{oops")
    code, _, err = run(capsys, "wallet", "address", "--wallet", str(path))
    assert code == 1
    one_line_error(err, "not a wallet file")


def test_encrypted_wallet_from_env(capsys, tmp_path, monkeypatch, member) -> None:
    path = str(tmp_path / "w.json")
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "gruyère")
    code, out, err = run(capsys, "wallet", "create", "--encrypt", "--wallet", path)
    assert code == 0 and "encrypted" in out
    assert "ENCRYPTED PRIVATE KEY" in open(path).read()
    monkeypatch.delenv("CHEESECOIN_PASSPHRASE")
    assert run(capsys, "wallet", "address", "--wallet", path)[1].strip() == last_word(
        out
    )  # no passphrase needed
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "emmental")
    code, _, err = run(capsys, "send", B, "1", "--wallet", path, "--member", member.url)
    assert code == 1
    one_line_error(err, "wrong passphrase")


def test_encrypt_asks_twice(capsys, tmp_path, monkeypatch) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr(prompts.getpass, "getpass", lambda prompt="": next(answers))
    path = tmp_path / "w.json"
    code, out, err = run(capsys, "wallet", "create", "--encrypt", "--wallet", str(path))
    assert code == 1 and not path.exists()
    one_line_error(err, "differ")
    answers = iter(["same", "same"])
    assert run(capsys, "wallet", "create", "--encrypt", "--wallet", str(path))[0] == 0
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "same")
    assert (
        wallet_mod.load_wallet(str(path)).address
        == run(capsys, "wallet", "address", "--wallet", str(path))[1].strip()
    )


# -- balance, send, tx ------------------------------------------------------------------------


def test_wallet_create_refuses_a_missing_directory(capsys, tmp_path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    code, out, err = run(capsys, "wallet", "create", "--wallet", str(missing / "w.json"))
    assert code == 1 and out == ""
    one_line_error(err, f"the directory {missing} does not exist")
    assert not (tmp_path / "no").exists()  # nothing made behind the user's back


def test_wallet_create_makes_the_default_directory_and_says_so(capsys, tmp_path) -> None:
    code, out, err = run(capsys, "wallet", "create")
    home = tmp_path / "home" / ".cheesecoin"
    assert code == 0 and err == "" and f"made the directory {home}" in out
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700


def test_wallet_address_refuses_an_address_that_does_not_match_the_key(
    capsys, tmp_path, alice_wallet
) -> None:
    document = json.load(open(alice_wallet))
    document["address"] = B  # bob's address beside alice's key
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    code, out, err = run(capsys, "wallet", "address", "--wallet", str(forged))
    assert code == 1 and out == ""
    one_line_error(err, "does not match the private key")


def test_wallet_address_of_an_encrypted_wallet_says_it_is_unchecked(
    capsys, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("CHEESECOIN_PASSPHRASE", "brie")
    path = str(tmp_path / "e.json")
    assert run(capsys, "wallet", "create", "--encrypt", "--wallet", path)[0] == 0
    monkeypatch.delenv("CHEESECOIN_PASSPHRASE")
    code, out, err = run(capsys, "wallet", "address", "--wallet", path)
    assert code == 0 and len(out.split()) == 1
    one_line_error(err, "encrypted", "not checked")


def test_no_terminal_for_a_passphrase_is_one_line_without_a_warning(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHEESECOIN_PASSPHRASE"}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cheesecoin.cli",
            "wallet",
            "create",
            "--encrypt",
            "--wallet",
            str(tmp_path / "w.json"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        start_new_session=True,  # no terminal
    )
    assert done.returncode == 1
    assert (
        done.stderr.count("\n") == 1
        and "Warning" not in done.stderr
        and "Traceback" not in done.stderr
    )
    assert (
        "no terminal to ask the passphrase on" in done.stderr
        and "CHEESECOIN_PASSPHRASE" in done.stderr
    )
    assert not (tmp_path / "w.json").exists()


def test_balance_shows_spendable_beside_pending_and_send_says_which_it_used(
    capsys, member, tmp_path
) -> None:
    member.node.submit_tx(sign_tx(ALICE, B, 30, 1, 0))  # 30 on its way to bob
    code, out, _ = run(capsys, "balance", B, "--member", member.url)
    assert code == 0 and last_word(out) == "0"
    assert "spendable now    0" in out and "pending balance  30" in out
    bob_wallet = create_wallet(str(tmp_path / "bob.json"), private_key=BOB).path
    code, out, err = run(capsys, "send", A, "5", "--wallet", bob_wallet, "--member", member.url)
    assert code == 1 and out == ""
    one_line_error(err, "not enough coins: 0 spendable now, need 6", "30 more are on their way")
    member.mine_mempool(miner=A)
    code, out, err = run(capsys, "send", A, "5", "--wallet", bob_wallet, "--member", member.url)
    assert code == 0 and "from your 30 spendable coins" in out


def test_balance(capsys, member, alice_wallet) -> None:
    code, out, err = run(capsys, "balance", A, "--member", member.url)
    assert code == 0 and err == "" and last_word(out) == "100"
    code, out, _ = run(capsys, "balance", "--wallet", alice_wallet, "--member", member.url)
    assert code == 0 and last_word(out) == "100"
    code, out, _ = run(capsys, "balance", B, "--member", member.url, "--json")
    assert code == 0 and json.loads(out) == {
        "address": B,
        "balance": 0,
        "nonce": 0,
        "pending_balance": 0,
        "pending_nonce": 0,
        "spendable": 0,
    }
    code, out, _ = run(
        capsys, "balance", A.upper(), "--member", member.url
    )  # hex in capitals is fine
    assert code == 0 and last_word(out) == "100"


def test_member_from_env(capsys, member, monkeypatch) -> None:
    monkeypatch.setenv("CHEESECOIN_MEMBER", member.url.replace("http://", ""))
    code, out, _ = run(capsys, "balance", A)
    assert code == 0 and last_word(out) == "100"


def test_balance_errors(capsys, member, tmp_path) -> None:
    code, _, err = run(capsys, "balance", "xyz", "--member", member.url)
    assert code == 2
    one_line_error(err, "bad address")
    code, _, err = run(
        capsys, "balance", "--wallet", str(tmp_path / "none"), "--member", member.url
    )
    assert code == 1
    one_line_error(err, "no wallet", "ADDRESS")
    code, _, err = run(capsys, "balance", A, "--member", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    one_line_error(err, "cannot reach the member")
    code, _, err = run(capsys, "balance", A, "--member", "ftp://example.org")
    assert code == 2
    one_line_error(err, "bad member URL")


def test_send_then_confirm(capsys, member, alice_wallet) -> None:
    code, out, err = run(
        capsys,
        "send",
        B,
        "10",
        "--fee",
        "2",
        "--memo",
        "for the fondue",
        "--wallet",
        alice_wallet,
        "--member",
        member.url,
    )
    assert code == 0 and err == ""
    tx_id = last_word(out)
    expected = sign_tx(ALICE, B, 10, 2, 0, "for the fondue")
    assert tx_id == txid(expected) and member.node.mempool.get(tx_id) == expected
    # A second payment before the first is mined takes the next nonce.
    code, out, _ = run(
        capsys, "send", B, "5", "--fee", "0", "--wallet", alice_wallet, "--member", member.url
    )
    assert code == 0 and member.node.mempool.get(last_word(out))["nonce"] == 1
    code, out, _ = run(capsys, "tx", tx_id, "--member", member.url)
    assert code == 0 and "mempool" in out and "for the fondue" in out
    member.mine_mempool(miner=B)
    code, out, _ = run(capsys, "tx", tx_id, "--member", member.url)
    assert code == 0 and "confirmed" in out and "in cheese 3" in out
    code, out, _ = run(capsys, "tx", tx_id, "--member", member.url, "--json")
    assert json.loads(out) == {"tx": expected, "status": "confirmed", "sequence_number": 3}
    assert last_word(run(capsys, "balance", B, "--member", member.url)[1]) == str(10 + 5 + 50 + 2)
    assert last_word(run(capsys, "balance", A, "--member", member.url)[1]) == str(100 - 12 - 5)


def test_send_not_enough_coins(capsys, member, alice_wallet) -> None:
    code, out, err = run(
        capsys, "send", B, "99", "--fee", "2", "--wallet", alice_wallet, "--member", member.url
    )
    assert code == 1 and out == ""
    one_line_error(err, "not enough coins: 100 spendable now, need 101")
    run(capsys, "send", B, "60", "--wallet", alice_wallet, "--member", member.url)
    code, _, err = run(capsys, "send", B, "60", "--wallet", alice_wallet, "--member", member.url)
    one_line_error(err, "not enough coins: 39 spendable now, need 61")  # counts the pending payment
    assert len(member.node.mempool) == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nope", "1"], "bad recipient address"),
        ([B, "0"], "bad amount"),
        ([B, "-1"], "bad amount"),
        ([B, "1.5"], "bad amount"),
        ([B, "ten"], "bad amount"),
        ([B, str(2**63)], "bad amount"),
        ([B, "1", "--fee", "-1"], "bad fee"),
        ([B, "1", "--memo", "x" * 141], "bad memo"),
        ([A, "1"], "cannot pay yourself"),
    ],
)
def test_send_bad_arguments(capsys, member, alice_wallet, args, needle) -> None:
    code, out, err = run(capsys, "send", *args, "--wallet", alice_wallet, "--member", member.url)
    assert code == 2 and out == ""
    one_line_error(err, needle)
    assert len(member.node.mempool) == 0


def test_send_refused_by_the_member(capsys, member, alice_wallet) -> None:
    member.node.mempool.max_size = 0
    code, out, err = run(capsys, "send", B, "1", "--wallet", alice_wallet, "--member", member.url)
    assert code == 1 and out == ""
    one_line_error(err, "the member refused (invalid-tx)", "mempool is full")


def test_send_without_wallet_or_member(capsys, tmp_path, alice_wallet) -> None:
    code, _, err = run(capsys, "send", B, "1", "--wallet", str(tmp_path / "none.json"))
    assert code == 1
    one_line_error(err, "no wallet at")
    code, _, err = run(
        capsys, "send", B, "1", "--wallet", alice_wallet, "--member", f"127.0.0.1:{free_port()}"
    )
    assert code == 1
    one_line_error(err, "cannot reach the member")


def test_tx_errors(capsys, member) -> None:
    code, _, err = run(capsys, "tx", "abc", "--member", member.url)
    assert code == 2
    one_line_error(err, "bad txid")
    code, _, err = run(capsys, "tx", "0" * 40, "--member", member.url)
    assert code == 1
    one_line_error(err, "the member refused (not-found)", "no transaction")


def test_not_a_member(capsys, member) -> None:
    # The explorer page is not JSON: a URL that lands on it is not a member's API.
    code, _, err = run(capsys, "status", "--member", member.url + "/index.html?")
    assert code == 1
    one_line_error(err, "did not answer JSON")
    code, _, err = run(capsys, "status", "--member", member.url + "/elsewhere")
    assert code == 1
    one_line_error(err, "the member refused (not-found)")


def test_status_and_cheeses(capsys, member) -> None:
    code, out, err = run(capsys, "status", "--member", member.url)
    assert code == 0 and err == ""
    assert (
        "height    2" in out
        and member.tip["smell"] in out
        and "mining    no" in out
        and "peers     0" in out
    )
    assert json.loads(run(capsys, "status", "--member", member.url, "--json")[1])["height"] == 2
    code, out, _ = run(capsys, "cheeses", "--member", member.url)
    assert (
        code == 0
        and member.tip["smell"] in out
        and member.network.smell in out
        and len(out.splitlines()) == 4
    )
    code, out, _ = run(
        capsys, "cheeses", "--from", "1", "--count", "1", "--member", member.url, "--json"
    )
    assert json.loads(out)["cheeses"][0]["sequence_number"] == 1
    code, _, err = run(capsys, "cheeses", "--count", "501", "--member", member.url)
    assert code == 2
    one_line_error(err, "bad count")


def test_verify_the_vectors(capsys, tmp_path) -> None:
    chain = vector("chain-vectors.json")
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(chain["cheeses"]))
    code, out, err = run(capsys, "verify", str(path), "--workers", "1")
    assert code == 0 and json.loads(out)["balances"] == chain["balances"]
    path.write_text("{}")
    code, out, err = run(capsys, "verify", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1


# -- end to end with a real member ----------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_with_a_real_member(capsys, tmp_path, procs) -> None:
    network_file = tmp_path / "net.json"
    code, out, err = run(
        capsys, "network", "new", "--name", "t", "--bits", "1", "--retarget-interval", "0"
    )
    assert code == 0, err
    network_file.write_text(out)
    miner_wallet, payee_wallet = str(tmp_path / "miner.json"), str(tmp_path / "payee.json")
    miner = last_word(run(capsys, "wallet", "create", "--wallet", miner_wallet)[1])
    payee = last_word(run(capsys, "wallet", "create", "--wallet", payee_wallet)[1])
    api_port = free_port()
    url = f"http://127.0.0.1:{api_port}"
    options = [
        "--network", str(network_file), "--data-dir", str(tmp_path / "data"),
        "--port", str(free_port()), "--api-port", str(api_port), "--miner-port", str(free_port()),
        "--mine", "--mining-workers", "1", "--miner-address", miner,
    ]  # fmt: skip
    proc = Proc.twistd("cheesemember", options, str(tmp_path / "member"))
    procs.append(proc)
    wait_until(
        lambda: proc.alive() and http_json(f"{url}/api/status"), timeout=60, what="the member's API"
    )
    wait_until(
        lambda: http_json(f"{url}/api/balance/{miner}")["balance"] >= 20,
        timeout=60,
        what="mined coins",
    )

    code, out, err = run(capsys, "status", "--member", url)
    assert code == 0 and "mining    yes" in out, err
    code, out, err = run(
        capsys,
        "send",
        payee,
        "7",
        "--fee",
        "1",
        "--memo",
        "e2e",
        "--wallet",
        miner_wallet,
        "--member",
        url,
    )
    assert code == 0, err
    tx_id = last_word(out)
    status = wait_until(
        lambda: (lambda s: s if s["status"] == "confirmed" else None)(
            http_json(f"{url}/api/tx/{tx_id}")
        ),
        timeout=60,
        what="the payment in a cheese",
    )
    assert status["tx"]["amount"] == 7 and status["tx"]["memo"] == "e2e"
    code, out, err = run(capsys, "balance", "--wallet", payee_wallet, "--member", url)
    assert code == 0 and last_word(out) == "7", err
    # The miner paid 7 + 1 and got the fee back in the cheese that holds it: 50 a cheese, less 7.
    account = http_json(f"{url}/api/balance/{miner}")
    assert account["nonce"] == 1 and account["balance"] % 50 == 43
    code, out, err = run(capsys, "tx", tx_id, "--member", url)
    assert code == 0 and f"in cheese {status['sequence_number']}" in out
    # Not enough coins for the payee to send 7 plus a fee of 1.
    code, _, err = run(capsys, "send", miner, "7", "--wallet", payee_wallet, "--member", url)
    assert code == 1
    one_line_error(err, "not enough coins: 7 spendable now, need 8")
    assert proc.alive()
