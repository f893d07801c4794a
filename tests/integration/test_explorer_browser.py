"""The explorer page in a real browser against a real member (issue 7).

A member (``twistd cheesemember``) starts on a private network whose data
directory already holds a stack of 30 cheeses with payments (written with
``open_stack`` before the start, so the member loads and re-validates them
like any stored stack); a second member with a copy of that stack connects to
it, and a few transactions wait in the mempool. Headless Chromium (Debian's ``chromium``,
installed by ``scripts/install-chromium.sh`` in ``make test``, driven over
the DevTools pipe of ``devtools.py``) then loads ``http://127.0.0.1:API/``:
the rendered DOM must show the height and the tip's smell that
``/api/status`` gives, and a screenshot must be written.

Without /usr/bin/chromium (or ``$CHEESECOIN_CHROMIUM``) the tests are skipped
with the reason. ``CHEESECOIN_EXPLORER_SCREENSHOT=PATH`` keeps a copy of the
screenshot (that is how docs/explorer.png is made).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import time
from html import unescape

import pytest
from devtools import CHROMIUM, DevTools
from procs import Proc, free_port, http_json, wait_until

from cheesecoin.core.tx import address_of, sign_tx
from cheesecoin.storage.sqlite import open_stack
from cheesecoin.testing.chain import key_from_seed, make_network, mine_child

CHEESES = 30
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]
NOTES = {7: "mined on a laptop", 16: "fondue night", 23: "brie-lliant ✓"}
MEMOS = [
    "",
    "",
    "for the fondue",
    "rent",
    "thanks for the gouda",
    "Käse für alle",
    "lunch & <b>drinks</b>",
]

pytestmark = pytest.mark.slow


def _skip_without_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"chromium not installed: {CHROMIUM} is missing (make test installs Debian's chromium "
            "with scripts/install-chromium.sh when it runs as root with apt-get)"
        )


def build_stack(data_dir: str, network_file: str) -> dict:
    """Write a network file and a stack of CHEESES cheeses with payments into data_dir.

    The network starts at 1 bit and retargets every 6 cheeses, and the spacing
    varies (fast, then slow, then on target), so the explorer's charts have
    something to show;
    the last cheese is a few seconds old. Returns the keys by name.
    """
    rng = random.Random(7)
    spacings = [
        rng.choice([2, 3, 4, 5])
        if h < 13
        else rng.choice([15, 21, 30, 42])
        if h < 25
        else rng.choice([6, 9, 12, 15])
        for h in range(1, CHEESES + 1)
    ]
    start = int(time.time()) - sum(spacings) - 5
    network = make_network(
        name="explorer-test", bits=1, retarget_interval=6, target_spacing=10, timestamp=start
    )
    with open(network_file, "w", encoding="utf-8") as f:
        json.dump(network.blue_cheese, f)
    keys = {name: key_from_seed(f"explorer-{name}") for name in NAMES}
    addresses = {name: address_of(key) for name, key in keys.items()}
    stack = open_stack(data_dir, network)
    try:
        parent = network.blue_cheese
        for height in range(1, CHEESES + 1):
            miner = NAMES[height % len(NAMES)]
            txs = []
            if height > len(NAMES):
                for sender in rng.sample(NAMES, rng.randint(0, 3)):
                    balance = stack.ledger.balance(addresses[sender])
                    if balance < 3:
                        continue
                    to = rng.choice([n for n in NAMES if n != sender])
                    amount = rng.randint(1, min(balance - 2, 20))
                    nonce = stack.ledger.next_nonce(addresses[sender])
                    txs.append(
                        sign_tx(
                            keys[sender],
                            addresses[to],
                            amount,
                            rng.randint(0, 2),
                            nonce,
                            rng.choice(MEMOS),
                        )
                    )
            cheese = mine_child(
                parent,
                stack.next_bits(stack.tip),
                addresses[miner],
                txs,
                timestamp=parent["timestamp"] + spacings[height - 1],
                note=NOTES.get(height),
            )
            result = stack.add_cheese(cheese)
            assert result.status == "added" and stack.tip.smell == cheese["smell"], result
            parent = cheese
    finally:
        stack.close()
    return keys


def member_options(
    tmp_path, name: str, network_file: str, api_port: int, port: int, extra=()
) -> list:
    return [
        "--network", network_file, "--data-dir", str(tmp_path / name / "data"),
        "--port", str(port), "--interface", "127.0.0.1", "--api-port", str(api_port),
        "--miner-port", str(free_port()), "--no-mine",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def explorer_member(tmp_path_factory):
    """A member with a 30-cheese stack, one peer and a few pending transactions: (url, status)."""
    _skip_without_chromium()
    tmp_path = tmp_path_factory.mktemp("explorer")
    network_file = str(tmp_path / "network.json")
    keys = build_stack(str(tmp_path / "main" / "data"), network_file)
    # The peer starts with a copy of the stack (made while no member has it
    # open), so that the height it tells in its HELLO, which the explorer's
    # peer list shows, is the real one.
    shutil.copytree(str(tmp_path / "main" / "data"), str(tmp_path / "peer" / "data"))
    started = []
    try:
        api_port, port = free_port(), free_port()
        main = Proc.twistd(
            "cheesemember",
            member_options(tmp_path, "main", network_file, api_port, port),
            str(tmp_path / "main"),
        )
        started.append(main)
        main.wait_for("HTTP API on", timeout=60)
        url = f"http://127.0.0.1:{api_port}"
        height = http_json(f"{url}/api/status")["height"]
        assert height == CHEESES, "the member did not load the stored stack"

        peer_api = free_port()
        peer = Proc.twistd(
            "cheesemember",
            member_options(
                tmp_path,
                "peer",
                network_file,
                peer_api,
                free_port(),
                ["--connect", f"127.0.0.1:{port}"],
            ),
            str(tmp_path / "peer"),
        )
        started.append(peer)
        wait_until(
            lambda: http_json(f"http://127.0.0.1:{peer_api}/api/status")["height"] == CHEESES,
            timeout=60,
            what="the peer",
        )
        wait_until(
            lambda: http_json(f"{url}/api/status")["peers"], timeout=30, what="a peer on the member"
        )

        for i, (sender, to, amount, memo) in enumerate(
            [("alice", "bob", 5, "coffee"), ("carol", "erin", 2, ""), ("dave", "alice", 7, "rent")]
        ):
            pending = http_json(f"{url}/api/balance/{address_of(keys[sender])}")
            tx = sign_tx(
                keys[sender],
                address_of(keys[to]),
                amount,
                1 + i % 2,
                pending["pending_nonce"],
                memo,
            )
            http_json(f"{url}/api/transactions", tx)
        status = wait_until(
            lambda: (lambda s: s if s["mempool"] == 3 else None)(http_json(f"{url}/api/status")),
            what="3 pending transactions",
        )
        yield url, status, tmp_path
        assert http_json(f"{url}/api/status")["tip"] == status["tip"], (
            "the tip moved during the test"
        )
    finally:
        for proc in reversed(started):
            proc.stop()


def rendered(tmp_path, name: str, url: str, status: dict) -> DevTools:
    """Chromium with the page loaded and filled in (its height card shows the member's)."""
    browser = DevTools(tmp_path / f"profile-{name}")
    try:
        browser.open(url)
        browser.until(
            lambda: (
                browser.text("height") == str(status["height"])
                and "Loading cheeses" not in browser.dom()
            ),
            60,
            "the page filled in",
        )
        browser.until(
            lambda: browser.text("mempool").startswith(str(status["mempool"])),
            30,
            "the mempool card",
        )
    except BaseException:
        browser.close()
        raise
    return browser


def element_text(dom: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (tags inside it removed)."""
    match = re.search(
        r'<(\w+)[^>]*\bid="%s"[^>]*>(.*?)</\1>' % re.escape(element_id), dom, flags=re.S
    )
    assert match, f"no element #{element_id} in the rendered page"
    return unescape(re.sub(r"<[^>]+>", "", match.group(2))).strip()


def test_rendered_page_shows_the_height_and_the_tip(explorer_member):
    url, status, tmp_path = explorer_member
    browser = rendered(tmp_path, "dom", url + "/", status)
    try:
        dom = browser.dom()
    finally:
        browser.close()
    assert "<html" in dom and "CheeseCoin" in dom, dom[:2000]
    assert element_text(dom, "height") == str(status["height"]), (
        "the height card is not the member's height"
    )
    assert status["tip"] in dom, "the tip's smell is not on the rendered page"
    assert element_text(dom, "tip") == status["tip"]
    assert element_text(dom, "network") == status["network"] == "explorer-test"
    for element_id, value in (("mempool", 3), ("peers", 1), ("bits", status["bits"])):
        text = element_text(dom, element_id)
        assert re.match(r"\D*%d\b" % value, text), (
            f"#{element_id} shows {text!r}, the member says {value}"
        )
    rows = re.findall(r"<tr\b[^>]*>", element_text_raw(dom, "cheeses"))
    assert len(rows) >= 20, "the latest cheeses table is not filled in"
    assert "Loading cheeses" not in dom
    assert re.search(r'id="error"[^>]*\bhidden\b', dom), "the page shows an error banner"


def element_text_raw(dom: str, element_id: str) -> str:
    match = re.search(
        r'<(\w+)[^>]*\bid="%s"[^>]*>(.*?)</\1>' % re.escape(element_id), dom, flags=re.S
    )
    assert match, f"no element #{element_id} in the rendered page"
    return match.group(2)


def test_screenshot_is_written(explorer_member):
    url, status, tmp_path = explorer_member
    shot = tmp_path / "explorer.png"
    browser = rendered(tmp_path, "shot", url + "/", status)
    try:
        shot.write_bytes(browser.screenshot(1280, 900))
    finally:
        browser.close()
    assert shot.is_file(), "chromium wrote no screenshot"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000, f"the screenshot is only {len(data)} bytes: a blank page?"
    keep = os.environ.get("CHEESECOIN_EXPLORER_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
