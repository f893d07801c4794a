"""The HTTP connection of the member's API: twisted.web's ``HTTPChannel``
with the back-pressure and framing rules an open port needs.

- Pipelining with back-pressure: twisted.web answers every request it has
  already read as soon as the one before it finishes, even while the client
  reads none of the answers; a client that pipelines thousands of requests
  and never reads would make us hold every answer. Here the rest of the
  pipeline waits, unparsed, until the client has read what we wrote (the
  transport resumes us); the transport reads nothing meanwhile.
- A header folded over several lines (obsolete line folding, RFC 9112 5.2)
  is refused: it is how ``Transfer-Encoding`` is smuggled past proxies.
- Framing errors (a malformed request line or header, a folded header, a
  bad chunk) get a JSON error body like every other answer of the API, and
  the connection is closed.
"""

from __future__ import annotations

from twisted.web.http import HTTPChannel

from cheesecoin.wire.codec import encode

IDLE_TIMEOUT = (
    60  # seconds a connection may send nothing (a client stuck not reading is dropped too)
)


def bad_request_answer(message: str) -> bytes:
    """A whole HTTP/1.1 400 answer with a JSON body, closing the connection."""
    body = encode({"error": "bad-request", "message": message})
    return (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: application/json\r\n"
        b"Cache-Control: no-store\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


class ApiChannel(HTTPChannel):
    """One HTTP connection to the API (see the module docstring)."""

    _holding = False  # we stopped parsing the pipeline until the client reads

    def setLineMode(self, extra: bytes = b"") -> None:
        # requestDone calls this when an answer is complete, to go on with
        # the pipelined requests read so far. While the client is not reading
        # our answers, leave them unparsed in LineReceiver's buffer: its
        # parsing loop stops while ``paused`` is set.
        if self._waitingForTransport:
            self._holding = self.paused = True
            # twisted.web pauses the transport only when the buffer fills
            # between requests; filled during one, it would go on reading.
            self._networkProducer.pauseProducing()
        super().setLineMode(extra)

    def resumeProducing(self) -> None:
        super().resumeProducing()
        if self._holding and not self._waitingForTransport and not self._handlingRequest:
            self._holding = self.paused = False
            self.dataReceived(b"")  # the next pipelined requests

    @property
    def holding(self) -> bool:
        """Whether pipelined requests wait for the client to read (for tests and tools)."""
        return self._holding

    def lineReceived(self, line: bytes) -> None:
        if line[:1] in (b" ", b"\t"):
            self._refuse(
                "a header is folded over several lines (obsolete line folding is not accepted)"
            )
            return
        super().lineReceived(line)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's own answer to a framing error is a bare 400.
        self._refuse("the request is not well-formed HTTP/1.1")

    def _refuse(self, message: str) -> None:
        if self.transport is not None:
            self.transport.write(bad_request_answer(message))
        self.loseConnection()
