"""Section 5.3 between real members on loopback (issue 30).

Two members link encrypted through a recording relay (no JSON crosses it
after the STARTTLS exchange) and relay cheeses and payments; a peer whose
certificate does not hold its node_id's key is refused, whichever side it
is on; a relay that strips ``tls`` from both HELLOs is refused by a pinned
member and not by an unpinned one; ``--require-tls`` refuses revision-2
members; a ClientHello or garbage where a line is expected, a stalled
handshake and a STARTTLS to a member without ``tls`` are closed cleanly.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from typing import Any, List

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from OpenSSL import SSL
from procs import free_port, http_json
from rawpeer import Member, RawPeer, honest_ping, start_member, wait_until
from tlsrelay import Relay, strip_tls

from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.p2p.tls import TlsCreator, make_certificate
from cheesecoin.storage.identity import node_id_of
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child, payment_stack

pytestmark = pytest.mark.slow

NET = make_network(name="tlsnet", bits=1, timestamp=int(time.time()) - 10**6)
STACK = payment_stack(NET, 6, 0, n_keys=3, seed="tls")
KEYS = [key_from_seed(f"tls-{i}") for i in range(3)]
STARTTLS = b'{"type":"STARTTLS"}\n'


def no_traceback(*members: Member) -> None:
    for m in members:
        assert "Traceback" not in m.proc.output(), m.proc.output()[-3000:]


def peers(member: Member) -> List[dict]:
    return member.status()["peers"]


def tls_handshake(
    sock: socket.socket, creator: Any, client: bool, timeout: float = 10.0
) -> SSL.Connection:
    """Run a TLS handshake over a connected socket with pyOpenSSL (non-blocking loop)."""
    sock.setblocking(False)
    conn = SSL.Connection(creator.context, sock)
    if client:
        conn.set_connect_state()
    else:
        conn.set_accept_state()
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.do_handshake()
            return conn
        except SSL.WantReadError:
            if time.monotonic() > deadline:
                raise AssertionError("TLS handshake timed out")
            select.select([sock], [], [], 0.2)


def closed_after_tls(conn: SSL.Connection, timeout: float = 10.0) -> bool:
    """Whether the member closes the TLS connection within ``timeout`` (data read is dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return True
        except SSL.WantReadError:
            select.select([conn], [], [], 0.2)
        except (SSL.ZeroReturnError, SSL.SysCallError, SSL.Error, OSError):
            return True
    return False


def client_hello() -> bytes:
    """The first flight of a real TLS 1.3 client."""
    conn = SSL.Connection(TlsCreator(Ed25519PrivateKey.generate()).context, None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


def test_two_members_link_encrypted_and_relay_cheeses_and_payments(tmp_path, procs) -> None:
    a = start_member(tmp_path, procs, NET, STACK, name="a")
    relay = Relay(a.port)
    try:
        b = start_member(tmp_path, procs, NET, (), "--connect", f"127.0.0.1:{relay.port}", name="b")
        wait_until(lambda: b.height() == 6, timeout=30, what="b synced over TLS")
        [link] = peers(b)
        assert link["encrypted"] is True and link["node_id"] == a.status()["node_id"]
        assert [p["encrypted"] for p in peers(a)] == [True]
        tx = sign_tx(KEYS[1], "cd" * 32, 5, 1, 0, "over tls")
        http_json(f"http://127.0.0.1:{a.api}/api/transactions", tx)
        wait_until(
            lambda: http_json(f"http://127.0.0.1:{b.api}/api/tx/{txid(tx)}")["status"] == "mempool",
            timeout=20,
            what="the payment reached b",
        )
        cheese = mine_child(STACK[-1], NET.bits, "ef" * 32, [tx])
        outsider = RawPeer(a.port, NET, features=None)
        outsider.send({"type": "ANNOUNCE", "cheese": cheese})
        wait_until(lambda: b.height() == 7, timeout=20, what="the new cheese reached b")
        assert http_json(f"http://127.0.0.1:{b.api}/api/tx/{txid(tx)}")["status"] == "confirmed"
        outsider.close()
    finally:
        relay.stop()
    # (a also dials the relay's address, which b hands out, and meets itself: one HELLO, no answer)
    talks = [c for c in relay.conversations if c[0].data and c[1].data]
    assert talks and max(len(back.data) for _, back in talks) > 1000
    for pipe in [pipe for talk in talks for pipe in talk]:
        head, sep, tail = bytes(pipe.data).partition(STARTTLS)
        assert sep, "no STARTTLS crossed the relay"
        assert head.count(b"\n") == 1 and b'"type":"HELLO"' in head  # HELLO, then STARTTLS
        assert tail[:1] == b"\x16"  # TLS records from the first byte on
        for plain in (
            b'"type"',
            b'"smell"',
            b"over tls",
            cheese["smell"].encode(),
            txid(tx).encode(),
        ):
            assert plain not in tail
    no_traceback(a, b)


def test_a_certificate_that_is_not_the_node_id_is_refused(tmp_path, procs) -> None:
    a = start_member(tmp_path, procs, NET, STACK, name="a")
    claimed, actual = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    liar = RawPeer(a.port, NET, node_id=node_id_of(claimed), features=["tls"])
    assert "tls" in liar.peer_hello["features"]
    liar.send({"type": "STARTTLS"})
    liar.wait_for(lambda m: m.get("type") == "STARTTLS")
    assert not liar.buffer
    conn = tls_handshake(liar.sock, TlsCreator(actual), client=True)
    assert closed_after_tls(conn)
    assert peers(a) == []
    a.proc.wait_for("not its node id", timeout=10)
    assert a.proc.output().count("not its node id") == 1
    honest_ping(a, NET)
    no_traceback(a)


def test_a_failed_handshake_is_one_line_and_no_traceback(tmp_path, procs) -> None:
    a = start_member(tmp_path, procs, NET, STACK, name="a")
    key = Ed25519PrivateKey.generate()
    old = RawPeer(a.port, NET, node_id=node_id_of(key), features=["tls"])
    old.send({"type": "STARTTLS"})
    old.wait_for(lambda m: m.get("type") == "STARTTLS")
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)  # what a member must refuse
    ctx.use_certificate(make_certificate(key))
    ctx.use_privatekey(key)

    class Tls12:
        context = ctx

    try:
        tls_handshake(old.sock, Tls12, client=True)
        refused = False
    except SSL.Error:
        refused = True
    assert refused
    a.proc.wait_for("the TLS handshake failed", timeout=10)
    assert a.proc.output().count("the TLS handshake failed") == 1
    assert peers(a) == []
    honest_ping(a, NET)
    no_traceback(a)


class _LyingServer:
    """A listening peer: its HELLO claims ``claimed`` (tls), its certificate holds ``actual``."""

    def __init__(self, claimed: Ed25519PrivateKey, actual: Ed25519PrivateKey) -> None:
        self.claimed, self.creator = claimed, TlsCreator(actual)
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.closed = threading.Event()
        self.handshaken = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(30)
        sock, _ = self.listener.accept()
        sock.settimeout(10)
        data = b""
        while data.count(b"\n") < 1:
            data += sock.recv(65536)
        hello = {
            "type": "HELLO",
            "version": 1,
            "network": NET.smell,
            "node_id": node_id_of(self.claimed),
            "port": self.port,
            "height": 0,
            "tip": NET.smell,
            "work": "2",
            "features": ["tls"],
        }
        sock.sendall(json.dumps(hello).encode() + b"\n")
        while STARTTLS not in data:
            data += sock.recv(65536)
        sock.sendall(STARTTLS)
        conn = tls_handshake(sock, self.creator, client=False)
        self.handshaken.set()
        if closed_after_tls(conn, 15):
            self.closed.set()


def test_a_dialled_peer_whose_certificate_is_not_its_node_id_is_refused(tmp_path, procs) -> None:
    liar = _LyingServer(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())
    b = start_member(tmp_path, procs, NET, (), "--connect", f"127.0.0.1:{liar.port}", name="b")
    assert liar.closed.wait(30)
    assert liar.handshaken.is_set()
    b.proc.wait_for("not its node id", timeout=10)
    assert peers(b) == []
    no_traceback(b)


def test_a_pinned_member_refuses_a_relay_that_strips_tls_and_an_unpinned_one_does_not(
    tmp_path, procs
) -> None:
    a = start_member(tmp_path, procs, NET, STACK, "--peers", "0", name="a")  # a dials nobody itself
    a_id = a.status()["node_id"]
    relay = Relay(a.port, rewrite=strip_tls)
    try:
        pinned = start_member(
            tmp_path, procs, NET, (), "--connect", f"127.0.0.1:{relay.port}@{a_id}", name="pinned"
        )
        pinned.proc.wait_for("is pinned to node id", timeout=20)
        unpinned = start_member(
            tmp_path, procs, NET, (), "--connect", f"127.0.0.1:{relay.port}", name="unpinned"
        )
        wait_until(
            lambda: unpinned.height() == 6,
            timeout=30,
            what="the unpinned member synced in plain text",
        )
        [link] = [p for p in peers(unpinned) if p["node_id"] == a_id]
        assert link["encrypted"] is False  # the gap the protocol names: a first contact
        assert a_id not in [p["node_id"] for p in peers(pinned)]
        assert pinned.proc.output().count("is pinned to node id") >= 1
    finally:
        relay.stop()
    no_traceback(a, pinned, unpinned)


def test_require_tls_refuses_a_revision_2_member(tmp_path, procs) -> None:
    a = start_member(tmp_path, procs, NET, STACK, "--require-tls", name="a")
    old = start_member(
        tmp_path,
        procs,
        NET,
        (),
        "--features",
        "rev2",
        "--connect",
        f"127.0.0.1:{a.port}",
        name="old",
    )
    a.proc.wait_for("does not list tls (--require-tls)", timeout=20)
    new = start_member(tmp_path, procs, NET, (), "--connect", f"127.0.0.1:{a.port}", name="new")
    wait_until(lambda: new.height() == 6, timeout=30, what="a member with tls is kept")
    assert [p["encrypted"] for p in peers(a)] == [True]
    assert peers(old) == [] and old.height() == 0
    no_traceback(a, old, new)


def test_hostile_bytes_around_starttls_are_closed_cleanly(tmp_path, procs) -> None:
    a = start_member(tmp_path, procs, NET, STACK, name="a")
    plain = start_member(tmp_path, procs, NET, (), "--features", "rev2", name="plain")
    # A TLS ClientHello, and garbage, where a line is expected.
    for data in (client_hello(), bytes(range(256)) * 12):
        sock = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        sock.sendall(data)
        got = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        assert b'"code":"bad-json"' in got
        sock.close()
    # STARTTLS to a member that did not list tls: an error, then closed.
    peer = RawPeer(
        plain.port, NET, node_id=node_id_of(Ed25519PrivateKey.generate()), features=["tls"]
    )
    assert "tls" not in peer.peer_hello.get("features", [])
    peer.send({"type": "STARTTLS"})
    err = peer.wait_for(lambda m: m.get("type") == "ERROR")
    assert err["code"] == "bad-message"
    assert peer.closed_by_member(10)
    # A stalled handshake: STARTTLS answered, then silence; dropped by the handshake timeout.
    stalled = RawPeer(
        a.port, NET, node_id=node_id_of(Ed25519PrivateKey.generate()), features=["tls"]
    )
    stalled.send({"type": "STARTTLS"})
    stalled.wait_for(lambda m: m.get("type") == "STARTTLS")
    honest_ping(a, NET)
    assert stalled.closed_by_member(45)
    assert peers(a) == []
    honest_ping(a, NET)
    no_traceback(a, plain)
