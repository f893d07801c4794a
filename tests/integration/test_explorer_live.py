"""The explorer updates from the member's event stream, in headless Chromium (issue 18).

A real member (``twistd cheesemember``) with a stored 30-cheese stack; Chromium
is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ended by NUL on file descriptors 3 and 4, no extra library).
Once the page says its stream is live, a cheese is mined through the
member's miner port: the height on the page must change within a second
(the page polls every 15 s while the stream is up, so only the stream can
do that), and a payment must show in the mempool card the same way. The
address page, reached through the search box, lists the address's
transactions.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from devtools import DevTools
from procs import Proc, free_port, http_json
from test_explorer_browser import _skip_without_chromium, build_stack, member_options

from cheesecoin.core.pow import search_nonce_python
from cheesecoin.core.tx import address_of, sign_tx

pytestmark = pytest.mark.slow


def mine_one(miner_port: int) -> str:
    """Take the member's job on its miner port, find the nonce, submit: the new smell."""
    with socket.create_connection(("127.0.0.1", miner_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        work = json.loads(reader.readline())
        assert work["type"] == "WORK", work
        nonce, _ = search_nonce_python(work["prefix"], work["bits"], 0, 2**40)
        sock.sendall(
            json.dumps({"type": "SUBMIT", "job": work["job"], "nonce": nonce, "id": 1}).encode()
            + b"\n"
        )
        while True:
            reply = json.loads(reader.readline())
            if reply.get("id") == 1:
                assert reply["type"] == "SUBMIT_REPLY" and reply["accepted"], reply
                return reply["smell"]


def test_the_explorer_follows_the_event_stream(tmp_path) -> None:
    _skip_without_chromium()
    network_file = str(tmp_path / "network.json")
    keys = build_stack(str(tmp_path / "main" / "data"), network_file)
    api_port, miner_port = free_port(), free_port()
    options = member_options(tmp_path, "main", network_file, api_port, free_port())
    options[options.index("--miner-port") + 1] = str(miner_port)
    member = Proc.twistd("cheesemember", options, str(tmp_path / "main"))
    browser = None
    try:
        member.wait_for("HTTP API on", timeout=60)
        url = f"http://127.0.0.1:{api_port}"
        height = http_json(f"{url}/api/status")["height"]
        browser = DevTools(tmp_path / "profile-live")
        browser.open(url + "/")
        browser.until(lambda: browser.text("height") == str(height), 30, "height on the page")
        browser.until(
            lambda: (
                browser.js("document.getElementById('live-dot').getAttribute('data-stream')")
                == "live"
            ),
            30,
            "live event stream",
        )
        assert browser.js("document.getElementById('error').hidden") is True

        lags = []
        for _ in range(3):  # a new cheese, three times: each within a second
            before = time.monotonic()
            smell = mine_one(miner_port)
            height += 1
            browser.until(
                lambda: browser.text("height") == str(height), 10, f"height {height} on the page"
            )
            lags.append(time.monotonic() - before)
            browser.until(lambda: browser.text("tip") == smell, 5, "the new tip's smell")
        assert max(lags) < 1.0, (
            f"the page took {max(lags):.2f} s to show a new cheese (the stream is not used?)"
        )

        alice, bob = keys["alice"], keys["bob"]
        pending = http_json(f"{url}/api/balance/{address_of(alice)}")
        start = time.monotonic()
        http_json(
            f"{url}/api/transactions",
            sign_tx(alice, address_of(bob), 3, 1, pending["pending_nonce"], "live!"),
        )
        browser.until(
            lambda: browser.text("mempool").startswith("1"), 10, "the payment in the mempool card"
        )
        assert time.monotonic() - start < 1.0, "the mempool card did not follow the tx event"

        # the search box takes an address; the address page lists its payments,
        # the pending one first
        browser.js(
            f"document.getElementById('search-input').value = {address_of(bob)!r};"
            "document.getElementById('search').requestSubmit()"
        )
        browser.until(lambda: "live!" in browser.text("address-txs"), 10, "the address page")
        assert browser.js("location.hash") == f"#/address/{address_of(bob)}"
        rows = browser.js("document.querySelectorAll('#address-txs tbody tr').length")
        history = http_json(f"{url}/api/address/{address_of(bob)}")
        assert rows == len(history["transactions"]) > 1
    finally:
        if browser is not None:
            browser.close()
        member.stop()
