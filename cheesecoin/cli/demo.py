"""``make demo``: a live CheeseCoin network on this machine.

Starts a tracker and three members (Alice, Bob and Carol) on loopback, each
with its own data directory under ./demo-data, on a demo network with a low
difficulty that retargets to a few seconds per cheese. The members mine;
every few seconds one of them pays another, signed with the paying member's
own wallet and submitted through its HTTP API. One line is printed per
event. Ctrl-C (SIGINT) or SIGTERM stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from cheesecoin.core.cheese import mine_blue_cheese
from cheesecoin.storage.wallet import MEMBER_WALLET, load_wallet
from cheesecoin.util import localports

TWISTD = "from twisted.scripts.twistd import run; run()"  # twistd with this Python
NAMES = ["alice", "bob", "carol"]


def _free_port() -> int:
    return localports.free_port()  # pinned from $CHEESECOIN_BASE_PORT up, if set


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Children get SIGTERM if the demo itself dies (Linux prctl)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Demo:
    """The processes of the demo network and the loop that watches them."""

    def __init__(
        self, root: str, members: int = 3, bits: int = 12, spacing: int = 3, interval: int = 5
    ) -> None:
        self.root = os.path.abspath(root)
        self.names = NAMES[:members]
        self.bits, self.spacing, self.interval = bits, spacing, interval
        self.procs: List[subprocess.Popen] = []
        self.api: Dict[str, str] = {}
        self.address: Dict[str, str] = {}
        self.who: Dict[str, str] = {}
        self.seen_height = 0
        self.pending: Dict[str, str] = {}  # txid -> description
        self.stopping = False

    # -- processes ------------------------------------------------------------------

    def _spawn(self, name: str, args: List[str]) -> None:
        log = open(os.path.join(self.root, f"{name}.log"), "ab")
        cmd = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile=-"] + args
        self.procs.append(
            subprocess.Popen(
                cmd,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        )

    def start(self) -> None:
        if os.path.isdir(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root)
        blue = mine_blue_cheese(
            "demo",
            self.bits,
            int(time.time()) - 1,
            self.spacing,
            self.interval,
            50,
            1000,
            "make demo",
        )
        network = os.path.join(self.root, "network.json")
        with open(network, "w") as f:
            json.dump(blue, f, indent=2)
        tracker_port = _free_port()
        self._spawn(
            "tracker", ["cheesetracker", "--port", str(tracker_port), "--interface", "127.0.0.1"]
        )
        print(
            f"demo: network 'demo' (Blue Cheese {blue['smell'][:12]}, {self.bits} bits, "
            f"retarget every {self.interval} cheeses to {self.spacing} s)"
        )
        print(f"demo: tracker on 127.0.0.1:{tracker_port}; logs in {self.root}")
        for name in self.names:
            port, api, miner = _free_port(), _free_port(), _free_port()
            data = os.path.join(self.root, name)
            self._spawn(
                name,
                [
                    "cheesemember",
                    "--tracker",
                    f"127.0.0.1:{tracker_port}",
                    "--port",
                    str(port),
                    "--interface",
                    "127.0.0.1",
                    "--host",
                    "127.0.0.1",
                    "--data-dir",
                    data,
                    "--network",
                    network,
                    "--api-port",
                    str(api),
                    "--miner-port",
                    str(miner),
                    "--mine",
                    "--mining-workers",
                    "1",
                ],
            )
            self.api[name] = f"http://127.0.0.1:{api}"
            print(f"demo: {name:5} member on 127.0.0.1:{port}; explorer http://127.0.0.1:{api}/")
        for name in self.names:
            self._wait_ready(name)
            self.address[name] = load_wallet(os.path.join(self.root, name, MEMBER_WALLET)).address
            self.who[self.address[name]] = name
        print("demo: all members up; mining. Press Ctrl-C to stop.")

    def _wait_ready(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a demo process exited early; see the logs in {self.root}")
            try:
                self._get(name, "/api/status")
                if os.path.exists(os.path.join(self.root, name, MEMBER_WALLET)):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{name} did not start within {timeout:.0f} s; see {self.root}/{name}.log"
        )

    def stop(self) -> None:
        self.stopping = True
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- the HTTP API ---------------------------------------------------------------------

    def _get(self, name: str, path: str) -> Any:
        with urllib.request.urlopen(self.api[name] + path, timeout=5) as resp:
            return json.loads(resp.read())

    def _post(self, name: str, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            self.api[name] + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    # -- what happens ------------------------------------------------------------------------

    def _name(self, address: str) -> str:
        return self.who.get(address, address[:10])

    def watch_cheeses(self) -> None:
        status = self._get(self.names[0], "/api/status")
        if status["height"] <= self.seen_height:
            return
        start = self.seen_height + 1
        for cheese in self._get(self.names[0], f"/api/cheeses?from={start}&count=50")["cheeses"]:
            info = cheese["unit_of_information"]
            txs = info["transactions"]
            print(
                f"cheese {cheese['sequence_number']:4} {cheese['smell'][:16]}  "
                f"bits {cheese['bits']:3}  "
                f"mined by {self._name(info['miner']):5}  {len(txs)} tx"
            )
            self.seen_height = max(self.seen_height, cheese["sequence_number"])
        for tx_id in list(self.pending):
            try:
                found = self._get(self.names[0], f"/api/tx/{tx_id}")
            except urllib.error.HTTPError:
                continue
            if found["status"] == "confirmed":
                print(
                    f"  confirmed {tx_id[:12]} ({self.pending.pop(tx_id)}) "
                    f"in cheese {found['sequence_number']}"
                )
        balances = []
        for name in self.names:
            bal = self._get(self.names[0], f"/api/balance/{self.address[name]}")
            balances.append(f"{name} {bal['balance']}")
        print("  balances: " + ", ".join(balances))

    def pay_someone(self, rng: random.Random) -> None:
        payer = rng.choice(self.names)
        payee = rng.choice([n for n in self.names if n != payer])
        bal = self._get(payer, f"/api/balance/{self.address[payer]}")
        if bal["pending_balance"] < 3:
            return
        amount = rng.randint(1, max(1, min(20, bal["pending_balance"] - 2)))
        fee = rng.randint(0, 2)
        if amount + fee > bal["pending_balance"]:
            return
        wallet = load_wallet(os.path.join(self.root, payer, MEMBER_WALLET))
        tx = wallet.sign(
            self.address[payee], amount, fee, bal["pending_nonce"], f"demo: {payer} pays {payee}"
        )
        try:
            tx_id = self._post(payer, "/api/transactions", tx)["txid"]
        except urllib.error.HTTPError as e:
            print(f"  {payer} -> {payee}: refused ({e.read().decode(errors='replace')[:100]})")
            return
        self.pending[tx_id] = f"{payer} -> {payee} {amount}"
        print(f"  tx {tx_id[:12]}: {payer} pays {payee} {amount} (fee {fee})")

    def run(self, duration: Optional[float], pay_every: float = 4.0) -> None:
        rng = random.Random()
        end = None if duration is None else time.monotonic() + duration
        next_pay = time.monotonic() + pay_every
        while not self.stopping and (end is None or time.monotonic() < end):
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a demo process exited; see the logs in {self.root}")
            try:
                self.watch_cheeses()
                if time.monotonic() >= next_pay:
                    next_pay = time.monotonic() + pay_every
                    self.pay_someone(rng)
            except (OSError, ValueError, KeyError) as e:
                print(f"demo: a member did not answer ({e}); retrying")
            time.sleep(0.5)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cheesecoin-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", default="demo-data", help="where the demo keeps its data (wiped at start)"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--bits", type=int, default=12, help="the demo network's lowest difficulty")
    args = parser.parse_args(argv)
    demo = Demo(args.dir, bits=args.bits)

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    code = 0
    try:
        demo.start()
        demo.run(args.duration)
    except KeyboardInterrupt:
        print("\ndemo: stopping")
    except RuntimeError as e:
        print(f"demo: {e}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()
        print("demo: every process stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
