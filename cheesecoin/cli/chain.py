"""``cheesecoin verify`` and ``cheesecoin network new``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from cheesecoin.core import rules
from cheesecoin.core.cheese import NetworkError, mine_blue_cheese, network_from_blue_cheese
from cheesecoin.core.errors import InvalidCheese
from cheesecoin.core.headers import checked_bodies
from cheesecoin.core.stack import CheeseStack
from cheesecoin.util.cores import usable_cores


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="check a stack file (a JSON array of cheeses, Blue Cheese first)",
        description="Check every rule on a JSON array of cheeses, Blue Cheese first, and print "
        '{"height", "tip", "work", "balances"} (exit 0). An invalid cheese: exit 1, the sequence '
        "number and rule on stderr. A file that is not such an array: exit 2.",
    )
    p.add_argument("stack", metavar="STACK.json", help="the stack file")
    p.add_argument(
        "--workers",
        type=_non_negative,
        default=0,
        help="processes that check signatures (default: every core; 1 checks in this process)",
    )
    p.set_defaults(handler=cmd_verify)

    r = sub.add_parser(
        "reindex",
        help="rebuild a stopped member's database from its stored cheeses",
        description="Re-validate every stored cheese of DATA_DIR that still parses (every rule, "
        "signatures included) into a fresh database and swap it in; the old one is kept as "
        "stack.sqlite3.bak. "
        "Stop the member first. Prints a summary; exit 1 with one line on stderr if the database "
        "cannot be read at all.",
    )
    r.add_argument("data_dir", metavar="DATA_DIR", help="the member's data directory")
    r.add_argument("--network", default=None, help="network file (default: the cheesecoin network)")
    r.set_defaults(handler=cmd_reindex)

    net = sub.add_parser("network", help="make networks", description="Make CheeseCoin networks.")
    net_sub = net.add_subparsers(dest="network_command", metavar="ACTION")
    net_sub.required = True
    new = net_sub.add_parser(
        "new",
        help="mine a new Blue Cheese (a network file) and print it",
        description="Mine a new Blue Cheese and print it on stdout as a network file.",
    )
    new.add_argument("--name", required=True, help="the network's name")
    new.add_argument(
        "--bits", type=int, required=True, help="starting and lowest difficulty, 1 to 160"
    )
    new.add_argument(
        "--target-spacing", type=int, default=10, help="seconds between cheeses (default 10)"
    )
    new.add_argument(
        "--retarget-interval",
        type=int,
        default=20,
        help="cheeses between retargets, 0 for none (default 20)",
    )
    new.add_argument(
        "--reward", type=int, default=50, help="coins per cheese for its miner (default 50)"
    )
    new.add_argument("--max-transactions", type=int, default=1000, help="per cheese (default 1000)")
    new.add_argument("--note", default="", help="a note in the Blue Cheese")
    new.add_argument("--timestamp", type=int, default=None, help="Unix time (default now)")
    new.set_defaults(handler=cmd_network_new)


def _non_negative(text: str) -> int:
    """An argparse type: a whole number, 0 or more (argparse reports the error in one line)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number of 0 or more")
    return int(text)


def _fail(message: str, code: int) -> int:
    print(f"cheesecoin verify: {message}", file=sys.stderr)
    return code


def _read_stack(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"{path} is not JSON")
    if not isinstance(value, list):
        raise ValueError(f"{path} is not a JSON array of cheeses")
    if not value:
        raise ValueError(f"{path} is an empty array: a stack starts with its Blue Cheese")
    if not all(isinstance(c, dict) for c in value):
        raise ValueError(f"{path} is not an array of cheeses (every item must be a JSON object)")
    return value


_INHERITED: List[dict] = []  # the file's cheeses, for workers made by fork (inherited, not sent)
Checked = Tuple[Set[int], Dict[int, Optional[str]]]  # core.headers.checked_bodies' answer


def _checked_inherited(bounds: Tuple[int, int]) -> Checked:
    start, end = bounds
    return checked_bodies(_INHERITED[start:end], start)


def _checked_part(job: Tuple[List[dict], int]) -> Checked:
    return checked_bodies(*job)


class SignatureChecks:
    """Checks the signatures of a stack file's transactions, and computes each
    body's info_hash from the same canonical texts (``core.headers.checked_bodies``,
    the sync's worker check), in worker processes while the caller checks
    everything else (or lazily, range by range, in this process with one
    worker). With ``fork`` each worker reads its range of cheeses from the
    memory it inherited, so nothing but index ranges is sent."""

    def __init__(self, cheeses: List[dict], workers: int) -> None:
        ranges = _ranges(cheeses, max(256, _tx_count(cheeses) // (max(1, workers) * 8) + 1))
        self.ends = iter([end for _, end in ranges])
        self.checked = 0  # cheeses [0, checked) are checked
        self.signed: Set[int] = set()
        self.hashes: Dict[int, Optional[str]] = {}
        self.pool = None
        if workers <= 1 or len(ranges) <= 1:
            self.results: Iterator[Checked] = (checked_bodies(cheeses[a:b], a) for a, b in ranges)
            return
        # fork is quick and safe in a single-threaded process (the command);
        # with other threads running (inside a service) it can deadlock.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        if method not in multiprocessing.get_all_start_methods():
            method = "spawn"
        global _INHERITED
        if method == "fork":
            _INHERITED = cheeses
            try:
                self.pool = multiprocessing.get_context(method).Pool(workers)
            finally:
                _INHERITED = []  # the workers have their copy
            self.results = self.pool.imap(_checked_inherited, ranges)
        else:
            self.pool = multiprocessing.get_context(method).Pool(workers)
            self.results = self.pool.imap(_checked_part, [(cheeses[a:b], a) for a, b in ranges])

    def _wait_for(self, index: int) -> None:
        while self.checked <= index:
            end = next(self.ends, None)
            if end is None:
                return
            signed, hashes = next(self.results)
            self.signed |= signed
            self.hashes.update(hashes)
            self.checked = end

    def has_bad_signature(self, index: int) -> bool:
        """False if every transaction of cheese ``index`` is well formed and signed;
        True otherwise (the stack then checks them itself and names the fault)."""
        self._wait_for(index)
        return index not in self.signed

    def info_hash(self, index: int) -> Optional[str]:
        """The info_hash of cheese ``index``'s body (None: the stack finds why it has none)."""
        self._wait_for(index)
        return self.hashes.get(index)

    def close(self) -> None:
        if self.pool is not None:
            # let the workers finish and exit; terminate() can leave a queue lock held
            self.pool.close()
            self.pool.join()
            self.pool = None


def _tx_count(cheeses: List[dict]) -> int:
    return sum(_txs_in(cheese) for cheese in cheeses)


def _txs_in(cheese: dict) -> int:
    info = cheese.get("unit_of_information")
    txs = info.get("transactions") if isinstance(info, dict) else None
    return len(txs) if isinstance(txs, list) else 0


def _ranges(cheeses: List[dict], size: int) -> List[Tuple[int, int]]:
    """Consecutive (start, end) ranges of cheese indices, each of about ``size`` transactions."""
    ranges, start, count = [], 0, 0
    for i, cheese in enumerate(cheeses):
        count += _txs_in(cheese)
        if count >= size:
            ranges.append((start, i + 1))
            start, count = i + 1, 0
    if start < len(cheeses) or not ranges:
        ranges.append((start, len(cheeses)))
    return ranges


def verify_stack(cheeses: List[dict], workers: int = 1, clock=time.time) -> CheeseStack:
    """Check a stack; raises NetworkError for the Blue Cheese, InvalidCheese (with .index)."""
    network = network_from_blue_cheese(cheeses[0])
    stack = CheeseStack(network, clock=clock, index_txs=False, max_orphans=0)
    signatures = SignatureChecks(cheeses, workers)
    try:
        for i, cheese in enumerate(cheeses[1:], start=1):
            try:
                parent = cheese.get("parent_smell")
                unknown = not isinstance(parent, str) or parent not in stack
                if unknown and cheese.get("sequence_number") != 0:
                    rules.check_context_free(cheese, stack.network)
                    raise InvalidCheese(
                        "bad-parent",
                        f"the parent {str(cheese.get('parent_smell'))[:40]} "
                        "is not earlier in the file",
                    )
                stack.add_cheese(
                    cheese,
                    check_signatures=signatures.has_bad_signature(i),
                    ihash=signatures.info_hash(i),
                )
            except InvalidCheese as e:
                e.index = i  # type: ignore[attr-defined]
                raise
    finally:
        signatures.close()
    return stack


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        cheeses = _read_stack(args.stack)
    except ValueError as e:
        return _fail(str(e), 2)
    workers = args.workers if args.workers > 0 else usable_cores()
    try:
        stack = verify_stack(cheeses, workers)
    except NetworkError as e:
        return _fail(f"cheese 0 (sequence_number 0) is not a valid Blue Cheese: {e}", 1)
    except InvalidCheese as e:
        i = getattr(e, "index", "?")
        seq = cheeses[i].get("sequence_number") if isinstance(i, int) else "?"
        return _fail(
            f"cheese {i} (sequence_number {seq}) broke rule {e.rule_number} ({e.rule}): "
            f"{e.message}",
            1,
        )
    print(
        json.dumps(
            {
                "height": stack.height,
                "tip": stack.tip.smell,
                "work": str(stack.work),
                "balances": dict(sorted(stack.ledger.balances.items())),
            }
        )
    )
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from cheesecoin.core.cheese import load_network
    from cheesecoin.storage.reindex import reindex
    from cheesecoin.storage.sqlite import StorageError

    try:
        network = load_network(args.network)
        result = reindex(
            args.data_dir,
            network,
            log=lambda line: print(f"cheesecoin reindex: {line}", file=sys.stderr),
        )
    except (NetworkError, StorageError, OSError) as e:
        print(f"cheesecoin reindex: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def cmd_network_new(args: argparse.Namespace) -> int:
    problems = []
    if not 1 <= args.bits <= 160:
        problems.append("--bits must be 1 to 160")
    if args.bits > 40:
        problems.append("--bits above 40 would take this machine years to mine")
    for name in ("target_spacing", "retarget_interval", "reward", "max_transactions", "timestamp"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 2**63:
            problems.append(
                f"--{name.replace('_', '-')} must be a whole number from 0 to {2**63 - 1}"
            )
    if args.retarget_interval == 1:
        problems.append("--retarget-interval must be 0 (off) or at least 2")
    if args.retarget_interval and args.target_spacing < 1:
        problems.append("--target-spacing must be at least 1")
    if not args.name:
        problems.append("--name must not be empty")
    if problems:
        print(f"cheesecoin network new: {problems[0]}", file=sys.stderr)
        return 2
    cheese = mine_blue_cheese(
        args.name,
        args.bits,
        int(time.time()) if args.timestamp is None else args.timestamp,
        args.target_spacing,
        args.retarget_interval,
        args.reward,
        args.max_transactions,
        args.note,
    )
    network_from_blue_cheese(cheese)  # the file we print must load
    print(json.dumps(cheese, indent=2))
    return 0
