"""The HTTP API (cheesecoin.api, docs/protocol.md section 7) through Twisted's real HTTP parser.

Each request is raw bytes fed to the site's HTTPChannel over a StringTransport:
no reactor and no sockets, but the same parsing, routing, headers and body
limits as a listening member.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.core.node import MemberNode
from cheesecoin.core.stack import CheeseStack
from cheesecoin.core.tx import address_of, sign_tx, txid
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child
from cheesecoin.web import api
from tests.cases import case

ALICE = key_from_seed("alice")
BOB = key_from_seed("bob")
A, B = address_of(ALICE), address_of(BOB)


class Response:
    """A parsed HTTP response."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        assert self.headers["cache-control"] == "no-store"
        return json.loads(self.body)


class Harness:
    """A member node on a bits-1 network and its site: alice has mined 3 cheeses."""

    def __init__(self) -> None:
        self.network = make_network()
        self.node = MemberNode(CheeseStack(self.network))
        self.site = api.make_site(self.node)
        self.site._reactor = Clock()  # the channel's timeouts, never run
        self.cheeses = [self.network.blue_cheese]
        for _ in range(3):
            self.mine()

    def mine(self, txs=(), parent: Optional[dict] = None, start_nonce: int = 0) -> dict:
        parent = parent or self.cheeses[-1]
        cheese = mine_child(parent, self.network.bits, A, list(txs), start_nonce=start_nonce)
        self.node.submit_cheese(cheese)
        if parent is self.cheeses[-1]:
            self.cheeses.append(cheese)
        return cheese

    def raw(self, data: bytes) -> Response:
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(data)
        out = transport.value()
        channel.connectionLost(None)
        return Response(out)

    def request(
        self, method: str, path: str, body: Optional[bytes] = None, headers: str = ""
    ) -> Response:
        head = f"{method} {path} HTTP/1.1\r\nHost: member\r\nConnection: close\r\n{headers}"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        return self.raw(head.encode("latin-1") + b"\r\n" + (body or b""))

    def get(self, path: str) -> Tuple[int, Any]:
        response = self.request("GET", path)
        return response.status, response.json()

    def post(self, body: Any, raw: Optional[bytes] = None) -> Tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode("utf-8")
        response = self.request("POST", "/api/transactions", data)
        return response.status, response.json()


class HarnessCase(SynchronousTestCase):
    """A fresh ``Harness`` for each test, as ``self.h``."""

    def setUp(self) -> None:
        self.h = Harness()


# -- the site and the explorer files -----------------------------------------------------------


class SiteAndExplorerTests(HarnessCase):
    """No tracebacks; the explorer's files, GET and HEAD only, no listing, no escape."""

    def test_site_never_shows_tracebacks(self) -> None:
        assert self.h.site.displayTracebacks is False

    def test_explorer_page_and_files(self) -> None:
        page = self.h.request("GET", "/")
        assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        with open(os.path.join(api.EXPLORER_DIR, "index.html"), "rb") as f:
            assert page.body == f.read()
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert self.h.request("GET", "/index.html").body == page.body
        script = self.h.request("GET", "/app.js")
        assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
        assert self.h.request("GET", "/style.css").headers["content-type"].startswith("text/css")

    def test_no_directory_listing_or_escape(self) -> None:
        for path in (
            "/explorer/",
            "/explorer",
            "/../",
            "/%2e%2e/cheesecoin/api.py",
            "/api.py",
            "/app.js/x",
            "/nothing",
        ):
            response = self.h.request("GET", path)
            assert response.status == 404, path
            assert response.json()["error"] == "not-found"

    def test_static_files_take_get_and_head_only(self) -> None:
        response = self.h.request("POST", "/app.js", b"x")
        assert response.status == 405 and response.json()["error"] == "method-not-allowed"
        head = self.h.request("HEAD", "/")
        assert head.status == 200 and head.body == b""
        assert int(head.headers["content-length"]) > 1000


# -- GET endpoints -----------------------------------------------------------------------


class GetEndpointTests(HarnessCase):
    """GET /api/status, cheeses, cheese, balance, mempool and tx."""

    def test_status(self) -> None:
        status, answer = self.h.get("/api/status")
        assert status == 200
        assert answer["network"] == "testnet" and answer["blue_cheese"] == self.h.network.smell
        assert answer["height"] == 3 and answer["tip"] == self.h.cheeses[3]["smell"]
        assert answer["work"] == str(2 * 4) and answer["bits"] == 1
        assert answer["peers"] == [] and answer["mempool"] == 0
        assert answer["mining"] is False and answer["hashrate"] == 0.0

    def test_cheeses_newest_first_window_and_ranges(self) -> None:
        for _ in range(30):
            self.h.mine()
        status, answer = self.h.get("/api/cheeses")
        assert status == 200
        # the newest 20
        assert [c["sequence_number"] for c in answer["cheeses"]] == list(range(14, 34))
        assert answer["cheeses"][-1] == self.h.cheeses[33]
        listed = self.h.get("/api/cheeses?count=3")[1]["cheeses"]
        assert [c["sequence_number"] for c in listed] == [31, 32, 33]
        assert self.h.get("/api/cheeses?from=0&count=2")[1]["cheeses"] == self.h.cheeses[:2]
        listed = self.h.get("/api/cheeses?from=30")[1]["cheeses"]
        assert [c["sequence_number"] for c in listed] == [30, 31, 32, 33]
        assert self.h.get("/api/cheeses?from=34")[1] == {"cheeses": []}
        assert len(self.h.get("/api/cheeses?from=0&count=500")[1]["cheeses"]) == 34
        assert len(self.h.get("/api/cheeses?count=500")[1]["cheeses"]) == 34

    def test_cheeses_bad_numbers(self) -> None:
        for query in [
            "count=501",
            "count=0",
            "count=-1",
            "count=abc",
            "count=1.5",
            "from=-1",
            "from=x",
            "from=1e3",
            "count=",
            "from=%00",
        ]:
            with case(query=query):
                h = Harness()
                status, answer = h.get(f"/api/cheeses?{query}")
                assert status == 400 and answer["error"] == "bad-request" and answer["message"]

    def test_one_cheese_by_number_or_smell(self) -> None:
        tx = sign_tx(ALICE, B, 3, 1, 0)
        self.h.mine([tx])
        status, answer = self.h.get("/api/cheese/4")
        assert status == 200
        assert answer == {"cheese": self.h.cheeses[4], "best": True, "txids": [txid(tx)]}
        assert self.h.get("/api/cheese/0")[1]["cheese"] == self.h.network.blue_cheese
        assert self.h.get(f"/api/cheese/{self.h.cheeses[2]['smell']}")[1]["best"] is True
        side = self.h.mine(parent=self.h.cheeses[2], start_nonce=500)  # a side branch, not best
        status, answer = self.h.get(f"/api/cheese/{side['smell']}")
        assert status == 200 and answer == {"cheese": side, "best": False, "txids": []}

    def test_one_cheese_errors(self) -> None:
        for key, status in [
            ("5", 404),
            ("99999999999999999999", 400),
            ("a" * 40, 404),
            ("A" * 40, 400),
            ("tip", 400),
            ("-1", 400),
        ]:
            with case(key=key, status=status):
                h = Harness()
                code, answer = h.get(f"/api/cheese/{key}")
                assert code == status
                assert answer["error"] == ("not-found" if status == 404 else "bad-request")

    def test_balance(self) -> None:
        self.h.node.submit_tx(sign_tx(ALICE, B, 10, 2, 0))
        status, answer = self.h.get(f"/api/balance/{A}")
        assert status == 200
        assert answer == {
            "address": A,
            "balance": 150,
            "nonce": 0,
            "pending_balance": 138,
            "pending_nonce": 1,
            "spendable": 138,
        }
        assert self.h.get(f"/api/balance/{B}")[1] == {
            "address": B,
            "balance": 0,
            "nonce": 0,
            "pending_balance": 10,
            "pending_nonce": 0,
            "spendable": 0,
        }

    def test_balance_bad_address(self) -> None:
        for address in ["abc", "A" * 64, "0" * 63, "0" * 65, "%ff" * 32, "g" * 64]:
            with case(address=address):
                h = Harness()
                status, answer = h.get(f"/api/balance/{address}")
                assert status == 400 and answer["error"] == "bad-address"

    def test_mempool_listing(self) -> None:
        assert self.h.get("/api/mempool") == (200, {"transactions": []})
        txs = [sign_tx(ALICE, B, 1, 0, n) for n in range(3)]
        for tx in txs:
            self.h.node.submit_tx(tx)
        status, answer = self.h.get("/api/mempool")
        assert status == 200 and answer == {
            "transactions": [{"txid": txid(tx), "tx": tx} for tx in txs]
        }

    def test_tx_in_mempool_then_confirmed(self) -> None:
        tx = sign_tx(ALICE, B, 7, 1, 0)
        self.h.node.submit_tx(tx)
        pending = {"tx": tx, "status": "mempool", "sequence_number": None}
        assert self.h.get(f"/api/tx/{txid(tx)}") == (200, pending)
        self.h.mine([tx])
        confirmed = {"tx": tx, "status": "confirmed", "sequence_number": 4}
        assert self.h.get(f"/api/tx/{txid(tx)}") == (200, confirmed)
        status, answer = self.h.get("/api/tx/" + "0" * 40)
        assert status == 404 and answer["error"] == "not-found"
        status, answer = self.h.get("/api/tx/xyz")
        assert status == 400 and answer["error"] == "bad-request"


# -- POST /api/transactions ------------------------------------------------------------------


INVALID_TXS = [  # changes to a signed payment, and the rule that refuses it
    ({"memo": "changed"}, "tx-signature"),  # changed after signing
    ({"amount": 0}, "tx-fields"),
    ({"to": A}, "tx-self"),
    ({"memo": "x" * 141}, "tx-fields"),
    ({"extra": 1}, "tx-fields"),
]


NOT_TRANSACTIONS = [  # POST bodies that are not a transaction, and the error
    (b"", "bad-json"),
    (b"{", "bad-json"),
    (b"\xff\xfe", "bad-json"),
    (b"[]", "invalid-tx"),
    (b'"tx"', "invalid-tx"),
    (b"null", "invalid-tx"),
    (b'{"amount": 1.0}', "invalid-tx"),
    (b'{"amount": NaN}', "invalid-tx"),
    (b'{"amount": 1e400}', "invalid-tx"),
    (b'{"amount": ' + b"9" * 40 + b"}", "invalid-tx"),
    (b'{"memo": "\\ud800"}', "invalid-tx"),
    (b"[" * 100000 + b"]" * 100000, "too-long"),
]


class PostTransactionTests(HarnessCase):
    """POST /api/transactions: accepted, refused by rule, bodies that are not
    transactions, limits."""

    def test_post_accepts_relays_and_is_idempotent(self) -> None:
        heard = []
        self.h.node.tx_listeners.append(lambda tx_id, tx, source: heard.append((tx_id, source)))
        tx = sign_tx(ALICE, B, 10, 1, 0, "for the fondue ✓")
        assert self.h.post(tx) == (202, {"txid": txid(tx)})
        # already pending: same answer, no second relay
        assert self.h.post(tx) == (202, {"txid": txid(tx)})
        assert heard == [(txid(tx), "api")]
        assert self.h.node.mempool.get(txid(tx)) == tx

    def test_post_invalid_transactions(self) -> None:
        for change, rule in INVALID_TXS:
            with case(change=change, rule=rule):
                h = Harness()
                tx = dict(sign_tx(ALICE, B, 10, 1, 0), **change)
                status, answer = h.post(tx)
                assert (
                    status == 400
                    and answer["error"] == "invalid-tx"
                    and answer["rule"] == rule
                    and answer["message"]
                )
                assert len(h.node.mempool) == 0

    def test_post_ledger_rules(self) -> None:
        status, answer = self.h.post(sign_tx(ALICE, B, 10, 1, 3))
        assert (status, answer["rule"]) == (400, "tx-nonce")
        assert "next nonce is 0" in answer["message"]
        status, answer = self.h.post(sign_tx(ALICE, B, 150, 1, 0))
        assert (status, answer["rule"]) == (400, "tx-balance")
        status, answer = self.h.post(sign_tx(BOB, A, 1, 0, 0))
        assert (status, answer["rule"]) == (400, "tx-balance")
        self.h.post(sign_tx(ALICE, B, 10, 5, 0))
        status, answer = self.h.post(sign_tx(ALICE, B, 11, 5, 0))
        assert (status, answer["rule"]) == (400, "tx-fee")

    def test_post_mempool_full(self) -> None:
        self.h.node.submit_cheese(mine_child(self.h.cheeses[-1], 1, B))  # bob gets coins too
        self.h.node.mempool.max_size = 1
        assert self.h.post(sign_tx(ALICE, B, 1, 5, 0))[0] == 202
        status, answer = self.h.post(sign_tx(BOB, A, 1, 5, 0))
        assert (status, answer["error"], answer["rule"]) == (400, "invalid-tx", "mempool-full")
        better = sign_tx(BOB, A, 1, 6, 0)
        assert self.h.post(better) == (202, {"txid": txid(better)})
        assert [t for t, _ in self.h.node.mempool.items()] == [txid(better)]

    def test_post_bodies_that_are_not_transactions(self) -> None:
        for raw, error in NOT_TRANSACTIONS:
            with case(raw=raw, error=error):
                h = Harness()
                status, answer = h.post(None, raw=raw)
                assert answer["error"] == error and answer["message"]
                assert status == (413 if error == "too-long" else 400)

    def test_post_form_bodies_are_not_parsed_as_forms(self) -> None:
        for content_type in [
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
        ]:
            with case(content_type=content_type):
                h = Harness()
                response = h.request(
                    "POST", "/api/transactions", b"--x\r\na=b", f"Content-Type: {content_type}\r\n"
                )
                assert response.status == 400 and response.json()["error"] == "bad-json"
                tx = sign_tx(ALICE, B, 1, 0, 0)
                response = h.request(
                    "POST",
                    "/api/transactions",
                    json.dumps(tx).encode(),
                    f"Content-Type: {content_type}\r\n",
                )
                assert response.status == 202

    def test_post_deeply_nested_json_within_the_limit(self) -> None:
        status, answer = self.h.post(None, raw=b"[" * 30000 + b"]" * 30000)
        assert status == 400 and answer["error"] in ("bad-json", "invalid-tx")

    def test_post_body_limit_is_64_kib(self) -> None:
        tx = sign_tx(ALICE, B, 1, 0, 0)
        padded = json.dumps(tx).encode()
        padded = padded[:-1] + b" " * (api.MAX_BODY - len(padded)) + b"}"
        assert len(padded) == api.MAX_BODY
        assert self.h.post(None, raw=padded) == (202, {"txid": txid(tx)})
        too_long = padded[:-1] + b" }"
        status, answer = self.h.post(None, raw=too_long)
        assert status == 413 and answer["error"] == "too-long"

    def test_post_chunked_body_over_the_limit(self) -> None:
        chunk = b"x" * 30000
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
        response = self.h.raw(
            b"POST /api/transactions HTTP/1.1\r\nHost: m\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body
        )
        assert response.status == 413 and response.json()["error"] == "too-long"

    def test_post_chunked_body_within_the_limit(self) -> None:
        data = json.dumps(sign_tx(ALICE, B, 1, 0, 0)).encode()
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        response = self.h.raw(
            b"POST /api/transactions HTTP/1.1\r\nHost: m\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body
        )
        assert response.status == 202


# -- errors, methods, headers ---------------------------------------------------------------


WRONG_METHODS = [  # a method and a path that does not take it
    ("POST", "/api/status"),
    ("DELETE", "/api/cheese/1"),
    ("PUT", "/api/transactions"),
    ("GET", "/api/transactions"),
    ("POST", "/api/mempool"),
    ("PATCH", "/api/balance/" + "0" * 64),
]


class ErrorsMethodsHeadersTests(HarnessCase):
    """JSON 404, 405 and 500, the headers of every answer, and no endpoint that spends."""

    def test_unknown_paths_are_json_404(self) -> None:
        for path in [
            "/api",
            "/api/",
            "/api/nothing",
            "/api/status/extra",
            "/api/cheese",
            "/api/cheese/1/2",
            "/api/balance",
            "/api/tx/",
            "/api/%ff",
        ]:
            with case(path=path):
                h = Harness()
                response = h.request("GET", path)
                assert response.status == 404 and response.json()["error"] == "not-found"

    def test_wrong_methods_are_json_405(self) -> None:
        for method, path in WRONG_METHODS:
            with case(method=method, path=path):
                h = Harness()
                response = h.request(method, path, b"{}")
                assert response.status == 405 and response.json()["error"] == "method-not-allowed"
                assert response.headers["allow"] in ("GET, HEAD", "POST")

    def test_trailing_slash_and_head(self) -> None:
        assert self.h.get("/api/status/")[0] == 200
        head = self.h.request("HEAD", "/api/status")
        assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 50

    def test_every_json_answer_has_the_headers(self) -> None:
        for path in (
            "/api/status",
            "/api/cheeses",
            "/api/cheese/1",
            "/api/mempool",
            f"/api/balance/{A}",
            "/api/nope",
        ):
            response = self.h.request("GET", path)
            response.json()  # checks Content-Type and Cache-Control
            assert response.headers["x-content-type-options"] == "nosniff"

    def test_a_failure_inside_is_a_json_500_without_traceback(self) -> None:
        def broken() -> dict:
            raise RuntimeError("secret internals")

        self.patch(self.h.node, "status", broken)
        response = self.h.request("GET", "/api/status")
        assert response.status == 500
        assert response.json() == {"error": "internal", "message": "the member failed to answer"}
        assert b"secret" not in response.body and b"Traceback" not in response.body
        assert self.h.get("/api/mempool")[0] == 200  # and it keeps serving
        logged = self.flushLoggedErrors(RuntimeError)
        assert len(logged) == 1, "the failure is logged for the operator, once"

    def test_no_endpoint_spends_coins(self) -> None:
        """Only POST /api/transactions writes, and only with the sender's signature."""
        before = self.h.node.balance(A)
        unsigned = {
            "from": A,
            "to": B,
            "amount": 1,
            "fee": 0,
            "nonce": 0,
            "memo": "",
            "signature": "0" * 128,
        }
        assert self.h.post(unsigned)[0] == 400
        for method in ("POST", "PUT", "DELETE"):
            for path in ("/api/balance/" + A, "/api/send", "/api/wallet", "/api/mempool"):
                body = b'{"to": "%s", "amount": 1}' % B.encode()
                assert self.h.request(method, path, body).status in (404, 405)
        assert self.h.node.balance(A) == before


# -- the connection: pipelining with back-pressure, folded headers, JSON framing errors -------


class SmallBuffer(StringTransport):
    """A transport whose write buffer is full after one answer, as a real one
    (with a client that does not read) is after 64 KiB: it pauses its producer."""

    def write(self, data: bytes) -> None:
        super().write(data)
        if (
            self.producer is not None
            and self.producerState == "producing"
            and self.value().endswith(b"}")
        ):
            self.producer.pauseProducing()


class ConnectionTests(HarnessCase):
    """Pipelining with back-pressure, folded headers, JSON framing errors."""

    def test_a_pipeline_waits_while_the_client_does_not_read(self) -> None:
        channel = self.h.site.buildProtocol(None)
        transport = SmallBuffer()
        channel.makeConnection(transport)
        assert transport.producer is channel  # the channel is its transport's producer
        channel.dataReceived(b"GET /api/status HTTP/1.1\r\nHost: m\r\n\r\n" * 3000)
        assert (
            transport.value().count(b"HTTP/1.1 200 OK") == 1
        )  # not 3000 answers held for a client that reads none
        # and it reads no more meanwhile
        assert channel.holding and transport.producerState == "paused"
        answered = 1
        for _ in range(5):  # the client reads an answer: one more is written each time
            transport.clear()
            channel.resumeProducing()
            answered += transport.value().count(b"HTTP/1.1 200 OK")
        assert answered == 6
        transport.producer = None  # now it reads as fast as we write
        transport.clear()
        channel.resumeProducing()
        assert transport.value().count(b"HTTP/1.1 200 OK") == 3000 - 6 and not channel.holding
        channel.connectionLost(None)

    def test_every_request_of_a_pipeline_is_answered_in_order_once_the_client_reads(self) -> None:
        channel = self.h.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        paths = [f"/api/cheese/{n % 4}" for n in range(200)]
        pipeline = b"".join(f"GET {p} HTTP/1.1\r\nHost: m\r\n\r\n".encode() for p in paths)
        answers: List[bytes] = []
        channel.pauseProducing()
        channel.dataReceived(pipeline)
        while True:
            answers.append(transport.value())
            transport.clear()
            if not channel.holding:
                break
            channel.resumeProducing()  # the client read one answer...
            channel.pauseProducing()  # ...and the buffer is full again
        channel.resumeProducing()
        answers.append(transport.value())
        data = b"".join(answers)
        heights = [
            json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["cheese"][
                "sequence_number"
            ]
            for part in data.split(b"HTTP/1.1 200 OK")[1:]
        ]
        assert heights == [n % 4 for n in range(200)]
        channel.connectionLost(None)

    def test_a_folded_header_is_refused_with_a_json_400(self) -> None:
        for headers in [
            "Transfer-Encoding:\r\n chunked\r\n",  # a folded Transfer-Encoding
            "X-Note: one\r\n\ttwo\r\n",
        ]:
            with case(headers=headers):
                h = Harness()
                response = h.raw(
                    f"POST /api/transactions HTTP/1.1\r\nHost: m\r\n{headers}"
                    "Content-Length: 2\r\n\r\n{}".encode()
                )
                assert response.status == 400 and response.headers["connection"] == "close"
                assert response.json()["error"] == "bad-request"
                assert "folded" in response.json()["message"]

    def test_framing_errors_get_the_json_error_body(self) -> None:
        for raw in [
            b"NOT A REQUEST LINE AT ALL\r\n\r\n",
            b"GET /api/status HTTP/1.1\r\nHost: m\r\nContent-Length: x\r\n\r\n",
            b"POST /api/transactions HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n"
            b"\r\nzz\r\n",
            b"GET /api/status HTTP/1.1\r\nBadHeaderWithoutColon\r\n\r\n",
        ]:
            with case(raw=raw):
                h = Harness()
                response = h.raw(raw)
                assert response.status == 400
                assert response.json() == {
                    "error": "bad-request",
                    "message": "the request is not well-formed HTTP/1.1",
                }
