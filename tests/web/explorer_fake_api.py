"""A tiny fake of the member's JSON API (docs/protocol.md section 7) for the explorer page.

It serves the explorer directory (``cheesecoin/explorer``) at ``/`` (index.html),
``/style.css``, ``/app.js`` (also under ``/explorer/...``), and these endpoints,
answered from an in-memory stack of cheeses:

    GET /api/status
    GET /api/cheeses?from=N&count=K
    GET /api/cheese/{sequence_number or smell}   (with the extra "txids" list)
    GET /api/tx/{txid}
    GET /api/mempool

The stack is made up but well formed: smells are real SHA1 smells meeting their
proof of work, difficulty follows ``next_bits``, txids are SHA1 of canonical
JSON, and transactions are signed with Ed25519 when ``cryptography`` is there.
Some memos and notes are hostile HTML, to show that the page escapes them.

Run it by hand:

    .venv/bin/python tests/web/explorer_fake_api.py --port 8080 --grow 5

``--grow S`` adds a cheese every S seconds (to watch live updates);
``--down`` answers every /api request with 503 (to see the error banner).
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time

from twisted.internet import reactor, task
from twisted.web import resource, server

EXPLORER_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "cheesecoin", "web", "explorer"
)

# The default network's Blue Cheese (tests/vectors/blue-cheese-cheesecoin.json).
BLUE_CHEESE = {
    "parent_smell": "0" * 40,
    "sequence_number": 0,
    "timestamp": 1795219200,
    "bits": 8,
    "unit_of_information": {
        "network": "cheesecoin",
        "note": "The Blue Cheese: CheeseCoin begins, 2026-11-21",
        "params": {
            "target_spacing": 10,
            "retarget_interval": 20,
            "reward": 50,
            "max_transactions": 1000,
        },
    },
    "nonce": 46,
    "smell": "009753a9a9dbdcb8bba8d28710ac2c85abb0e06c",
}

MEMOS = [
    "",
    "",
    "",
    "for the fondue",
    "rent",
    "thanks for the gouda",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<script>alert('memo')</script>",
    "Käse für alle",
    "lunch & <b>drinks</b>",
]
NOTES = [
    None,
    None,
    None,
    None,
    "mined on a laptop",
    "<i>hello</i> from the cave",
    "brie-lliant, “quoted” & unicode ✓",
]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


def canonical(x):
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha1hex(data):
    return hashlib.sha1(data).hexdigest()


def txid_of(tx):
    return sha1hex(canonical(tx))


def mine(cheese):
    """Fill in nonce and smell so the cheese meets its proof of work."""
    info_hash = sha1hex(canonical(cheese["unit_of_information"]))
    prefix = "{}:{}:{}:{}:{}:".format(
        cheese["parent_smell"],
        cheese["sequence_number"],
        cheese["timestamp"],
        cheese["bits"],
        info_hash,
    )
    limit = 1 << (160 - cheese["bits"])
    nonce = 0
    while True:
        smell = sha1hex((prefix + str(nonce)).encode("ascii"))
        if int(smell, 16) < limit:
            cheese["nonce"] = nonce
            cheese["smell"] = smell
            return cheese
        nonce += 1


class Key:
    """A wallet key: the private key is SHA-256 of a seed, as in the vectors."""

    def __init__(self, seed):
        raw = hashlib.sha256(seed.encode("utf-8")).digest()
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        except ImportError:  # a fake key is enough for a fake API
            self._key = None
            self.address = hashlib.sha256(b"pub:" + raw).hexdigest()
            self._raw = raw
        else:
            self._key = Ed25519PrivateKey.from_private_bytes(raw)
            self.address = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, message):
        if self._key is None:
            return hashlib.sha512(self._raw + message).hexdigest()
        return self._key.sign(message).hex()


class FakeChain:
    """An in-memory best stack, a mempool and one stale side cheese."""

    def __init__(self, height=150, seed=7, now=None):
        self.rng = random.Random(seed)
        self.side_smell = None
        self.keys = [Key(s) for s in ("alice", "bob", "carol", "dave")]
        self.params = BLUE_CHEESE["unit_of_information"]["params"]
        self.balances = {k.address: 0 for k in self.keys}
        self.nonces = {k.address: 0 for k in self.keys}
        self.cheeses = [dict(BLUE_CHEESE)]
        self.mempool = []  # signed txs, in arrival order
        self.by_smell = {BLUE_CHEESE["smell"]: (BLUE_CHEESE, True)}
        self.tx_index = {}  # txid -> (tx, sequence_number)
        self.hashrate = 2 ** BLUE_CHEESE["bits"] / 4.0  # about 4 s a cheese at 8 bits
        now = time.time() if now is None else now
        # Lay out timestamps so the tip is about now.
        self.clock = max(BLUE_CHEESE["timestamp"], int(now) - int(height * 9.5))
        for _ in range(height):
            self.add_cheese()
        self.add_side_cheese()
        for _ in range(3):
            self.add_mempool_tx()

    # -- ledger ---------------------------------------------------------------

    def key_with_coins(self, minimum):
        rich = [
            k
            for k in self.keys
            if self.balances[k.address] - self.pending_spend(k.address) >= minimum
        ]
        return self.rng.choice(rich) if rich else None

    def pending_spend(self, address):
        return sum(t["amount"] + t["fee"] for t in self.mempool if t["from"] == address)

    def make_tx(self):
        sender = self.key_with_coins(5)
        if sender is None:
            return None
        to = self.rng.choice([k for k in self.keys if k is not sender])
        room = self.balances[sender.address] - self.pending_spend(sender.address)
        fee = self.rng.choice([0, 1, 1, 2])
        amount = self.rng.randint(1, max(1, min(room - fee, 40)))
        nonce = self.nonces[sender.address] + sum(
            1 for t in self.mempool if t["from"] == sender.address
        )
        tx = {
            "from": sender.address,
            "to": to.address,
            "amount": amount,
            "fee": fee,
            "nonce": nonce,
            "memo": self.rng.choice(MEMOS),
        }
        tx["signature"] = sender.sign(canonical(tx))
        return tx

    def add_mempool_tx(self):
        tx = self.make_tx()
        if tx is not None:
            self.mempool.append(tx)
        return tx

    def next_bits(self, parent):
        n = parent["sequence_number"] + 1
        r, s = self.params["retarget_interval"], self.params["target_spacing"]
        if r == 0 or n % r != 0:
            return parent["bits"]

        def ts(k: int) -> int:
            return self.cheeses[k]["timestamp"]

        actual = max(1, ts(n - 1) - ts(n - r))
        expected = s * (r - 1)
        up = max([k for k in range(5) if actual * 2**k <= expected] or [0])
        down = max([k for k in range(5) if actual >= expected * 2**k] or [0])
        return min(160, max(BLUE_CHEESE["bits"], parent["bits"] + up - down))

    def add_cheese(self, timestamp=None):
        parent = self.cheeses[-1]
        bits = self.next_bits(parent)
        if timestamp is None:
            # Miners come and go, so the difficulty has something to follow.
            n = parent["sequence_number"] + 1
            self.hashrate = 2 ** BLUE_CHEESE["bits"] / (4.0 if n < 50 else 1.2 if n < 100 else 3.0)
            mean = 2**bits / self.hashrate
            self.clock += max(1, int(round(self.rng.expovariate(1.0 / mean))))
            timestamp = max(parent["timestamp"], self.clock)
        miner = self.rng.choice(self.keys)
        # Confirm the mempool, then maybe make up a few more transactions.
        txs, self.mempool = self.mempool, []
        for tx in txs:
            self.apply(tx)
        for _ in range(self.rng.choice([0, 0, 0, 1, 1, 2, 3])):
            tx = self.make_tx()
            if tx is None:
                break
            self.apply(tx)
            txs.append(tx)
        uoi = {"miner": miner.address, "transactions": txs}
        note = self.rng.choice(NOTES)
        if note is not None:
            uoi["note"] = note
        cheese = mine(
            {
                "parent_smell": parent["smell"],
                "sequence_number": parent["sequence_number"] + 1,
                "timestamp": timestamp,
                "bits": bits,
                "unit_of_information": uoi,
            }
        )
        self.cheeses.append(cheese)
        self.by_smell[cheese["smell"]] = (cheese, True)
        for tx in txs:
            self.tx_index[txid_of(tx)] = (tx, cheese["sequence_number"])
        self.balances[miner.address] += self.params["reward"] + sum(tx["fee"] for tx in txs)
        return cheese

    def apply(self, tx):
        self.balances[tx["from"]] -= tx["amount"] + tx["fee"]
        self.balances[tx["to"]] += tx["amount"]
        self.nonces[tx["from"]] += 1

    def add_side_cheese(self):
        """A stale cheese (best: false) beside the best stack, a few below the tip."""
        if len(self.cheeses) < 6:
            return
        parent = self.cheeses[-5]
        side = mine(
            {
                "parent_smell": parent["smell"],
                "sequence_number": parent["sequence_number"] + 1,
                "timestamp": self.cheeses[-4]["timestamp"] + 1,
                "bits": self.cheeses[-4]["bits"],
                "unit_of_information": {
                    "miner": self.keys[0].address,
                    "transactions": [],
                    "note": "a stale cheese that lost the race",
                },
            }
        )
        self.by_smell[side["smell"]] = (side, False)
        self.side_smell = side["smell"]

    def grow(self):
        self.clock = max(self.clock, int(time.time()) - 1)
        self.add_cheese(timestamp=max(self.cheeses[-1]["timestamp"], int(time.time())))
        for _ in range(self.rng.choice([0, 1, 2])):
            self.add_mempool_tx()

    # -- API answers ------------------------------------------------------------

    def work(self):
        return sum(2 ** c["bits"] for c in self.cheeses)

    def status(self):
        tip = self.cheeses[-1]
        return {
            "network": BLUE_CHEESE["unit_of_information"]["network"],
            "blue_cheese": BLUE_CHEESE["smell"],
            "height": tip["sequence_number"],
            "tip": tip["smell"],
            "work": str(self.work()),
            "bits": self.next_bits(tip),
            "peers": [
                {
                    "host": "127.0.0.1",
                    "port": 24341,
                    "node_id": sha1hex(b"peer-a") + "0" * 24,
                    "height": tip["sequence_number"],
                    "inbound": False,
                    "encrypted": True,
                },
                {
                    "host": "10.0.0.7",
                    "port": 24331,
                    "node_id": sha1hex(b"peer-b") + "1" * 24,
                    "height": tip["sequence_number"] - 1,
                    "inbound": True,
                    "encrypted": False,
                },
                {
                    "host": "<b>evil.example</b>",
                    "port": 24331,
                    "node_id": sha1hex(b"peer-c") + "2" * 24,
                    "height": tip["sequence_number"],
                    "inbound": True,
                },
            ],
            "mempool": len(self.mempool),
            "mining": True,
            "hashrate": round(self.hashrate * (0.9 + 0.2 * self.rng.random()), 1),
        }

    def cheese_range(self, start, count):
        return self.cheeses[start : start + count]

    def find_cheese(self, key):
        if key.isdigit():
            n = int(key)
            return (self.cheeses[n], True) if n < len(self.cheeses) else None
        return self.by_smell.get(key.lower())

    def find_tx(self, txid):
        txid = txid.lower()
        for tx in self.mempool:
            if txid_of(tx) == txid:
                return {"tx": tx, "status": "mempool", "sequence_number": None}
        if txid in self.tx_index:
            tx, n = self.tx_index[txid]
            return {"tx": tx, "status": "confirmed", "sequence_number": n}
        return None


class FakeApi(resource.Resource):
    isLeaf = True

    def __init__(self, chain, explorer_dir=EXPLORER_DIR, down=False):
        resource.Resource.__init__(self)
        self.chain = chain
        self.explorer_dir = os.path.abspath(explorer_dir)
        self.down = down

    def render_GET(self, request):
        path = request.path.decode("utf-8", "replace")
        if path.startswith("/api/"):
            if self.down:
                return self.error(request, 503, "busy", "the fake member is down (--down)")
            return self.api(request, path[len("/api/") :])
        return self.static(request, path)

    # -- static files ---------------------------------------------------------

    def static(self, request, path):
        name = path.lstrip("/")
        if name.startswith("explorer/"):
            name = name[len("explorer/") :]
        if name in ("", "index.html", "explorer"):
            name = "index.html"
        if "/" in name or name.startswith(".") or name not in os.listdir(self.explorer_dir):
            return self.error(request, 404, "not-found", "no such file")
        ext = os.path.splitext(name)[1]
        request.setHeader(
            b"content-type", CONTENT_TYPES.get(ext, "application/octet-stream").encode()
        )
        request.setHeader(b"cache-control", b"no-cache")
        with open(os.path.join(self.explorer_dir, name), "rb") as f:
            return f.read()

    # -- JSON API ---------------------------------------------------------------

    def json(self, request, obj, code=200):
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

    def error(self, request, code, err, message):
        return self.json(request, {"error": err, "message": message}, code)

    def int_arg(self, request, name, default):
        values = request.args.get(name.encode())
        if not values:
            return default
        text = values[0].decode("ascii", "replace")
        if not text.isdigit():
            raise ValueError("{} must be a non-negative integer".format(name))
        return int(text)

    def api(self, request, rest):
        chain = self.chain
        parts = rest.split("/")
        if parts == ["status"]:
            return self.json(request, chain.status())
        if parts == ["cheeses"]:
            try:
                count = self.int_arg(request, "count", 20)
                start = self.int_arg(request, "from", None)
            except ValueError as e:
                return self.error(request, 400, "bad-request", str(e))
            if not 1 <= count <= 500:
                return self.error(request, 400, "bad-request", "count must be 1 to 500")
            if start is None:
                start = max(0, len(chain.cheeses) - count)
            return self.json(request, {"cheeses": chain.cheese_range(start, count)})
        if len(parts) == 2 and parts[0] == "cheese" and parts[1]:
            found = chain.find_cheese(parts[1])
            if found is None:
                return self.error(request, 404, "not-found", "no such cheese")
            cheese, best = found
            txids = [txid_of(tx) for tx in cheese["unit_of_information"].get("transactions", [])]
            return self.json(request, {"cheese": cheese, "best": best, "txids": txids})
        if len(parts) == 2 and parts[0] == "tx" and parts[1]:
            found = chain.find_tx(parts[1])
            if found is None:
                return self.error(request, 404, "not-found", "no such transaction")
            return self.json(request, found)
        if parts == ["mempool"]:
            return self.json(
                request, {"transactions": [{"txid": txid_of(tx), "tx": tx} for tx in chain.mempool]}
            )
        return self.error(request, 404, "not-found", "no such endpoint")


def make_site(chain=None, explorer_dir=EXPLORER_DIR, down=False):
    return server.Site(FakeApi(chain if chain is not None else FakeChain(), explorer_dir, down))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--height", type=int, default=150, help="height of the made-up stack")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--grow", type=float, default=0, help="add a cheese every GROW seconds")
    p.add_argument("--down", action="store_true", help="answer /api requests with 503")
    args = p.parse_args(argv)

    chain = FakeChain(height=args.height, seed=args.seed)
    port = reactor.listenTCP(args.port, make_site(chain, down=args.down), interface=args.host)
    if args.grow > 0:
        task.LoopingCall(chain.grow).start(args.grow, now=False)
    print("fake member API on http://{}:{}/".format(args.host, port.getHost().port), flush=True)
    print("a stale cheese (best: false): {}".format(chain.side_smell), flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
