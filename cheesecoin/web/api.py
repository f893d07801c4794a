"""The member's HTTP API and explorer page (docs/protocol.md section 7).

``make_site(node)`` returns a ``twisted.web.server.Site`` over a
``MemberNode``. Every answer under ``/api/`` is JSON (``application/json``,
``Cache-Control: no-store``); errors are ``{"error": CODE, "message": TEXT}``
with a 4xx status, never a traceback page. Nothing here can spend coins:
the only write is ``POST /api/transactions``, which takes a transaction
already signed by its sender and hands it to ``node.submit_tx`` (whose
listeners relay it).
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import Resource

from cheesecoin.core.errors import InvalidTx, ProtocolError
from cheesecoin.core.formats import MAX_COUNT
from cheesecoin.core.tx import txid
from cheesecoin.web.channel import IDLE_TIMEOUT, ApiChannel
from cheesecoin.web.events import EventLog, EventsPage
from cheesecoin.web.interfaces import ApiNode, MetricsSource
from cheesecoin.wire.codec import ADDRESS_RE, SMELL_RE, encode, loads

MAX_BODY = 64 * 1024  # bytes of a POST body
DEFAULT_COUNT = 20  # cheeses in /api/cheeses without count
DEFAULT_ADDRESS_COUNT = 50  # transactions in /api/address/A without count
_MAX_HEIGHT_DIGITS = 19
_DIGITS = re.compile(r"[0-9]{1,%d}\Z" % _MAX_HEIGHT_DIGITS)
EXPLORER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explorer")
_CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
}
_COMMON_HEADERS = {
    b"Cache-Control": b"no-store",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
}
_PAGE_POLICY = (
    b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'"
)

_log = Logger()


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": code, "message": message}``."""

    def __init__(
        self, status: int, code: str, message: str, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


def _set_headers(request: server.Request, content_type: bytes) -> None:
    request.setHeader(b"Content-Type", content_type)
    for name, value in _COMMON_HEADERS.items():
        request.setHeader(name, value)


def _body_for(request: server.Request, body: bytes) -> bytes:
    """``body``, or for HEAD nothing but its Content-Length."""
    if request.method == b"HEAD":
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return b""
    return body


def _answer(request: server.Request, status: int, body: bytes) -> bytes:
    request.setResponseCode(status)
    _set_headers(request, b"application/json")
    return _body_for(request, body)


def _error_body(error: ApiError) -> bytes:
    return encode(dict(error.extra, error=error.code, message=error.message))


class ApiRequest(server.Request):
    """A request that keeps at most MAX_BODY bytes of its body, in memory.

    A longer body is read and dropped; ``body_too_large`` tells the resource
    to answer 413.
    """

    body_too_large = False
    _body_size = 0

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # Bodies are JSON: never let Twisted parse one as a form (a malformed
        # multipart body would get its bare, non-JSON 400).
        self.requestHeaders.removeHeader(b"Content-Type")
        super().requestReceived(command, path, version)

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > MAX_BODY:
            self.body_too_large = True
        super().gotLength(0)  # 0: an in-memory buffer, whatever the length

    def handleContentChunk(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > MAX_BODY:
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)


class JsonResource(Resource):
    """An API endpoint: answers ``answer_<method>(request, segments)`` as JSON.

    ``segments`` are the decoded path segments after the endpoint's name; an
    ``answer_*`` method returns (status, value or pre-encoded bytes) or
    raises ApiError. HEAD is answered as GET without a body.
    """

    isLeaf = True
    segment_count = 0  # path segments the endpoint takes after its name

    def allowed_methods(self) -> List[str]:
        return [m[len("answer_") :].upper() for m in dir(self) if m.startswith("answer_")]

    def render(self, request: server.Request) -> bytes:
        try:
            method = request.method.decode("ascii", "replace").upper()
            if method == "HEAD":
                method = "GET"
            segments = _segments(request.postpath or ())
            if len(segments) != self.segment_count:
                raise ApiError(404, "not-found", f"no such API path: {_shown_path(request)}")
            handler = getattr(self, "answer_" + method.lower(), None)
            if handler is None or not method.isalpha():
                allowed = self.allowed_methods()
                if "GET" in allowed:
                    allowed.append("HEAD")
                request.setHeader(b"Allow", ", ".join(sorted(allowed)).encode("ascii"))
                raise ApiError(
                    405, "method-not-allowed", f"{_shown_path(request)} does not take {method[:16]}"
                )
            status, value = handler(request, segments)
            body = value if isinstance(value, bytes) else encode(value)
            return _answer(request, status, body)
        except ApiError as e:
            return _answer(request, e.status, _error_body(e))
        except Exception:
            _log.failure("HTTP API request {path} failed", path=_shown_path(request))
            return _answer(
                request, 500, _error_body(ApiError(500, "internal", "the member failed to answer"))
            )


def _segments(postpath: Sequence[bytes]) -> List[str]:
    """Decoded path segments (bad UTF-8 replaced), a trailing slash dropped."""
    parts = [p.decode("utf-8", "replace") for p in postpath]
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def _shown_path(request: server.Request) -> str:
    return request.path.decode("utf-8", "replace")[:200]


class NotFound(Resource):
    """Any path that is not an endpoint: 404 JSON, whatever the method."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        error = ApiError(404, "not-found", f"no such path: {_shown_path(request)}")
        return _answer(request, 404, _error_body(error))


class NodeResource(JsonResource):
    """An endpoint over a MemberNode."""

    def __init__(self, node: ApiNode) -> None:
        super().__init__()
        self.node = node


def _query_int(
    request: server.Request, name: str, lo: int, hi: int, default: Optional[int]
) -> Optional[int]:
    args: Dict[bytes, List[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return default
    text = values[0].decode("ascii", "replace")
    if not _DIGITS.match(text) or not lo <= int(text) <= hi:
        raise ApiError(400, "bad-request", f"'{name}' must be an integer from {lo} to {hi}")
    return int(text)


def _path_key(segments: List[str], pattern: "re.Pattern[str]", code: str, message: str) -> str:
    """The endpoint's one path segment if it matches ``pattern``, else a 400."""
    if not pattern.match(segments[0]):
        raise ApiError(400, code, message)
    return segments[0]


class Status(NodeResource):
    """GET /api/status."""

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        return 200, self.node.status()


class Cheeses(NodeResource):
    """GET /api/cheeses?from=N&count=K: best-stack cheeses, oldest first.

    Without ``from``, the newest ``count``. Like a CHEESES reply, the list
    stops early rather than pass 4 MiB.
    """

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        count = _query_int(request, "count", 1, MAX_COUNT, DEFAULT_COUNT)
        assert count is not None
        start = _query_int(request, "from", 0, 2**63 - 1, None)
        if start is None:
            start = max(0, self.node.stack.height - count + 1)
        texts = self.node.stack.serving.range_texts(start, count)
        return 200, b'{"cheeses":[' + ",".join(texts).encode("utf-8") + b"]}"


class OneCheese(NodeResource):
    """GET /api/cheese/{sequence_number or smell}: the cheese, whether it is on
    the best stack, its txids."""

    segment_count = 1

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        key = segments[0]
        stack = self.node.stack
        if _DIGITS.match(key):
            cheese = stack.get_by_height(int(key))
            best = True
        elif SMELL_RE.match(key):
            cheese = stack.get_cheese(key)
            best = cheese is not None and stack.is_best(key)
        else:
            raise ApiError(
                400,
                "bad-request",
                "give a sequence number or a smell (40 lowercase hex characters)",
            )
        if cheese is None:
            raise ApiError(404, "not-found", f"no cheese {key[:64]} on this member")
        txs = cheese["unit_of_information"].get("transactions", [])
        return 200, {"cheese": cheese, "best": best, "txids": [txid(tx) for tx in txs]}


class Balance(NodeResource):
    """GET /api/balance/{address}: on the best stack and counting the mempool."""

    segment_count = 1

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        address = _path_key(
            segments, ADDRESS_RE, "bad-address", "an address is 64 lowercase hex characters"
        )
        return 200, self.node.balance(address)


class AddressPage(NodeResource):
    """GET /api/address/{address}?count=K&before=N: balance and transactions, newest first."""

    segment_count = 1

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        address = _path_key(
            segments, ADDRESS_RE, "bad-address", "an address is 64 lowercase hex characters"
        )
        count = _query_int(request, "count", 1, MAX_COUNT, DEFAULT_ADDRESS_COUNT)
        before = _query_int(request, "before", 0, 2**63 - 1, None)
        assert count is not None
        return 200, self.node.address_info(address, count, before)


class MempoolList(NodeResource):
    """GET /api/mempool: the pending transactions with their txids."""

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        return 200, {"transactions": [{"txid": t, "tx": tx} for t, tx in self.node.mempool.items()]}


class Transactions(NodeResource):
    """POST /api/transactions: a signed transaction for the mempool (202 {"txid"})."""

    def answer_post(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        if getattr(request, "body_too_large", False):
            raise ApiError(413, "too-long", f"the body is longer than {MAX_BODY} bytes")
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            raise ApiError(413, "too-long", f"the body is longer than {MAX_BODY} bytes")
        try:
            tx = loads(body)
        except ProtocolError as e:
            if e.code == "bad-json":
                raise ApiError(400, "bad-json", e.message.replace("the line", "the body"))
            raise ApiError(400, "invalid-tx", e.message, {"rule": "tx-fields"})
        if not isinstance(tx, dict):
            raise ApiError(
                400,
                "invalid-tx",
                "the body must be a transaction (a JSON object)",
                {"rule": "tx-fields"},
            )
        try:
            tx_id, _new = self.node.submit_tx(tx, "api")
        except InvalidTx as e:
            raise ApiError(400, "invalid-tx", e.message, {"rule": e.rule})
        return 202, {"txid": tx_id}


class Health(NodeResource):
    """GET /api/health: 200 when ready, 503 with the reason otherwise (load balancers, systemd)."""

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        answer = self.node.health()
        return (200 if answer["ready"] else 503), answer


class MetricsPage(Resource):
    """GET /metrics: the Prometheus text exposition (cheesecoin.web.metrics)."""

    isLeaf = True

    def __init__(self, metrics: MetricsSource) -> None:
        super().__init__()
        self.metrics = metrics

    def render(self, request: server.Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return _answer(
                request, 405, _error_body(ApiError(405, "method-not-allowed", "/metrics takes GET"))
            )
        body = self.metrics.exposition()
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return _body_for(request, body)


class OneTx(NodeResource):
    """GET /api/tx/{txid}: a mempool or confirmed transaction."""

    segment_count = 1

    def answer_get(self, request: server.Request, segments: List[str]) -> Tuple[int, Any]:
        tx_id = _path_key(
            segments, SMELL_RE, "bad-request", "a txid is 40 lowercase hex characters"
        )
        found = self.node.tx_status(tx_id)
        if found is None:
            raise ApiError(404, "not-found", f"no transaction {tx_id} in the stack or the mempool")
        return 200, found


class ApiRoot(Resource):
    """/api/...: the endpoints by name; anything else is a JSON 404."""

    def __init__(self, node: ApiNode, events: Optional[EventLog] = None) -> None:
        super().__init__()
        endpoints = {
            b"status": Status,
            b"cheeses": Cheeses,
            b"cheese": OneCheese,
            b"balance": Balance,
            b"mempool": MempoolList,
            b"transactions": Transactions,
            b"tx": OneTx,
            b"health": Health,
            b"address": AddressPage,
        }
        for name, cls in endpoints.items():
            self.putChild(name, cls(node))
        if events is not None:
            self.putChild(b"events", EventsPage(events))

    def getChild(self, path: bytes, request: server.Request) -> Resource:
        return NotFound()

    def render(self, request: server.Request) -> bytes:
        return NotFound().render(request)


class StaticFile(Resource):
    """One file of the explorer directory, read when asked; GET and HEAD only."""

    isLeaf = True

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.content_type = _CONTENT_TYPES.get(
            os.path.splitext(path)[1], b"application/octet-stream"
        )

    def render(self, request: server.Request) -> bytes:
        if _segments(request.postpath or ()):
            return NotFound().render(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            error = ApiError(405, "method-not-allowed", f"{_shown_path(request)} takes only GET")
            return _answer(request, 405, _error_body(error))
        try:
            with open(self.path, "rb") as f:
                body = f.read()
        except OSError:
            return NotFound().render(request)
        _set_headers(request, self.content_type)
        if self.content_type.startswith(b"text/html"):
            request.setHeader(b"Content-Security-Policy", _PAGE_POLICY)
        return _body_for(request, body)


class Root(Resource):
    """``/``: the explorer page, its files, and ``/api``."""

    def __init__(
        self, node: ApiNode, explorer_dir: str = EXPLORER_DIR, events: Optional[EventLog] = None
    ) -> None:
        super().__init__()
        self.putChild(b"api", ApiRoot(node, events))
        index = os.path.join(explorer_dir, "index.html")
        self.putChild(b"", StaticFile(index))
        try:
            names = sorted(os.listdir(explorer_dir))
        except OSError:
            names = []
        for name in names:
            path = os.path.join(explorer_dir, name)
            if os.path.isfile(path) and not name.startswith("."):
                self.putChild(name.encode("utf-8"), StaticFile(path))

    def getChild(self, path: bytes, request: server.Request) -> Resource:
        return NotFound()


class ApiSite(server.Site):
    """The member's HTTP site: JSON errors, no traceback pages, bounded bodies.

    No access log: the explorer polls several times a minute and would bury
    the member's own log lines (failures inside are still logged).
    """

    displayTracebacks = False
    noisy = False
    # pipelining with back-pressure, folded headers refused, JSON framing errors;
    # HTTP/1.1 only (Site's default picks HTTP/2 when TLS negotiates it, we have no TLS)
    protocol = ApiChannel  # type: ignore[assignment]

    def log(self, request: http.Request) -> None:
        pass


def make_site(
    node: ApiNode, metrics: Optional[MetricsSource] = None, events: Optional[EventLog] = None
) -> server.Site:
    """The HTTP API and explorer over ``node`` (a MemberNode); ``/metrics`` when
    ``metrics`` is given, ``/api/events`` when ``events`` (a web.events.EventLog) is."""
    root = Root(node, events=events)
    if metrics is not None:
        root.putChild(b"metrics", MetricsPage(metrics))
    return ApiSite(root, requestFactory=ApiRequest, timeout=IDLE_TIMEOUT)
