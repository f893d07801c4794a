"""``cheesecoin mine --member HOST:PORT [--processes N]``: the external miner
(docs/protocol.md s.6).

It connects to a member's miner port, searches each ``WORK`` on N worker
processes (``cheesecoin.mining.ProcessSearcher``; one worker: a thread),
each on a disjoint nonce range, answers ``SUBMIT`` for every nonce found,
and restarts on each new ``WORK``. It reconnects with backoff (0.5 s up to
10 s) when the member is not up yet or goes away, and stops on Ctrl-C or
SIGTERM with its worker processes ended and reaped.

Output is for people: each found cheese and each answer on its own line,
and a live hashrate line, rewritten in place (``\\r``) only on a terminal.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from typing import IO, Any, List, Optional, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorThreads,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from cheesecoin.cli.errors import CliError
from cheesecoin.core.errors import BadMessage
from cheesecoin.core.pow import backend as pow_backend
from cheesecoin.mining.interfaces import Searcher
from cheesecoin.mining.searchers import HashMeter, make_searcher
from cheesecoin.mining.templates import Job, get_job_id, random_start
from cheesecoin.util.addresses import Address
from cheesecoin.util.cores import usable_cores
from cheesecoin.wire import codec as wire
from cheesecoin.wire.limits import MINER_PORT
from cheesecoin.wire.lineproto import JsonLineProtocol


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "mine",
        help="mine for a member through its miner port",
        description="Connect to a member's miner port and mine the cheeses it hands out, "
        "on every core (or --processes N). Stop with Ctrl-C.",
    )
    p.add_argument(
        "--member",
        required=True,
        metavar="HOST:PORT",
        help="the member's miner port, e.g. 127.0.0.1:24333 "
        "(a URL such as tcp://127.0.0.1:24333 works too)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="worker processes (default: every core)",
    )
    p.set_defaults(handler=cmd_mine)


def parse_member(text: str) -> Address:
    """HOST:PORT (or [IPv6]:PORT) -> (host, port); ValueError with a message for people.

    A URL form (``tcp://HOST:PORT``, or ``http://HOST:PORT`` as the other
    commands' ``--member`` takes) is accepted too: only its host and port count.
    """
    stripped = text.strip()
    scheme, has_scheme, rest = stripped.partition("://")
    if has_scheme and scheme.lower() in ("tcp", "http", "https") and rest:
        stripped = rest.rstrip("/")
    host, sep, port_text = stripped.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"--member {text!r}: {host!r} is not an IPv6 address")
    if (
        not sep
        or not host
        or (":" in host and not bracketed)
        or any(c.isspace() or c in "[]/" for c in host)
    ):
        raise ValueError(f"--member must be HOST:PORT, e.g. 127.0.0.1:{MINER_PORT}, not {text!r}")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"--member {text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def format_rate(per_second: float) -> str:
    for unit, scale in (("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.2f} {unit}"
    return f"{per_second:.0f} H/s"


class Console:
    """Lines for people; the status line is rewritten in place only on a terminal."""

    def __init__(self, out: IO[str], tty: Optional[bool] = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self._status_shown = False

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not stop mining
            pass

    def line(self, text: str) -> None:
        self._write(("\r\033[K" if self._status_shown else "") + text + "\n")
        self._status_shown = False

    def status(self, text: str) -> None:
        if self.tty:
            self._write("\r\033[K" + text)
            self._status_shown = True
        else:
            self.line(text)

    def close(self) -> None:
        """Clear the status line (and a ``^C`` echoed after it) on a terminal."""
        if self.tty:
            self._write("\r\033[K")
        self._status_shown = False


def parse_work(msg: dict) -> Job:
    """A WORK message as a Job; BadMessage if a field is missing or malformed."""
    job_id = get_job_id(msg)
    prefix = wire.get_str(msg, "prefix", 4096)
    if not prefix.endswith(":") or not prefix.isascii():
        raise BadMessage("field 'prefix' must be ASCII text ending in ':'")
    bits = wire.get_int(msg, "bits", 1, 160)
    return Job(job_id, wire.get_object(msg, "cheese"), prefix, bits)


class MinerClientProtocol(JsonLineProtocol):
    """The miner's side of the miner port: WORK in, SUBMIT out."""

    def __init__(self, miner: "ExternalMiner") -> None:
        super().__init__()
        self.miner = miner

    def connectionMade(self) -> None:
        self.miner.connected(self)

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.miner.disconnected(self)

    def msg_WORK(self, msg: dict) -> None:
        self.miner.new_work(parse_work(msg))

    def msg_SUBMIT_REPLY(self, msg: dict) -> None:
        self.miner.accepted(msg)

    def msg_ERROR(self, msg: dict) -> None:
        self.miner.refused(msg)


class MinerClientFactory(Factory):
    """Builds the miner's protocol for each connection the ClientService makes."""

    noisy = False

    def __init__(self, miner: "ExternalMiner") -> None:
        self.miner = miner

    def buildProtocol(self, addr: Optional[IAddress]) -> MinerClientProtocol:
        proto = MinerClientProtocol(self.miner)
        proto.factory = self
        return proto


@implementer(IStreamClientEndpoint)
class _RememberFailures:
    """An endpoint that notes why its last connection attempt failed (for the
    retry line: ClientService tells its retry policy only how many failed)."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint
        self.last_error = ""

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        def failed(failure: Failure) -> Failure:
            self.last_error = failure.getErrorMessage()
            return failure

        return self.endpoint.connect(factory).addErrback(failed)


class ExternalMiner:
    """Mines the member's WORK with ``processes`` workers and SUBMITs what it finds."""

    def __init__(
        self,
        host: str,
        port: int,
        processes: int,
        reactor: Any,
        console: Console,
        status_every: Optional[float] = None,
        searcher: Optional[Searcher] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.processes = processes if processes > 0 else usable_cores()
        # the global reactor (or a test's): a MiningReactor, IReactorTCP and the
        # clock of ClientService and LoopingCall at once
        self.reactor = reactor
        self.console = console
        self.meter = HashMeter()
        self.searcher: Searcher = searcher or make_searcher(
            self.processes, self._found, self.meter, reactor
        )
        self.factory = MinerClientFactory(self)
        # The same reconnect style as the member's tracker link: a ClientService,
        # 0.5 s doubling up to 10 s between attempts.
        self.endpoint = _RememberFailures(HostnameEndpoint(reactor, host, port, timeout=10))
        backoff = backoffPolicy(initialDelay=0.5, maxDelay=10.0, factor=2.0)

        def retry(failed_attempts: int) -> float:
            delay = backoff(failed_attempts)
            if not self._stopping:
                self.console.line(
                    f"Cannot reach the member at {self.address}: {self.endpoint.last_error}; "
                    f"retrying in {delay:.1f} s"
                )
            return delay

        self.service = ClientService(self.endpoint, self.factory, retryPolicy=retry, clock=reactor)
        self.proto: Optional[MinerClientProtocol] = None
        self.job: Optional[Job] = None
        self.found = 0
        self.accepted_count = 0
        self.status_every = (
            status_every if status_every is not None else (1.0 if console.tty else 10.0)
        )
        self._status = LoopingCall(self.show_status)
        self._status.clock = reactor
        self._stopping = False
        self.payee: Optional[str] = None  # the address the member's WORK pays

    def start(self) -> None:
        self.console.line(
            f"Mining for the member at {self.address} with {self.processes} worker(s), "
            f"{pow_backend()} nonce search; Ctrl-C stops"
        )
        self.service.startService()
        self._status.start(self.status_every, now=False)

    # -- the connection --------------------------------------------------------------

    def connected(self, proto: MinerClientProtocol) -> None:
        self.proto = proto
        self.console.line(f"Connected to the member at {self.address}")

    def disconnected(self, proto: MinerClientProtocol) -> None:
        if proto is not self.proto:
            return
        self.proto = None
        self.job = None
        self.searcher.pause()
        if not self._stopping:
            self.console.line(f"Lost the member at {self.address}; reconnecting")

    def new_work(self, job: Job) -> None:
        previous, self.job = self.job, job
        info = job.cheese.get("unit_of_information")
        payee = info.get("miner") if isinstance(info, dict) else None
        if isinstance(payee, str) and payee != self.payee:
            self.payee = payee
            self.console.line(f"Rewards go to {payee} (the member's miner address)")
        if previous is None or previous.parent_smell != job.parent_smell:
            self.console.line(
                f"Mining cheese {job.cheese.get('sequence_number', '?')} at {job.bits} bits "
                f"(job {job.job_id})"
            )
        self.searcher.search(job, random_start())

    def _found(self, job: Job, nonce: int, smell: str) -> None:
        if self.proto is None or self._stopping:
            return
        self.found += 1
        self.console.line(
            f"Found cheese {job.cheese.get('sequence_number', '?')} {smell} (nonce {nonce})"
        )
        self.proto.send({"type": "SUBMIT", "job": job.job_id, "nonce": nonce})
        if job is self.job:  # keep going until the member sends new work
            self.searcher.search(job, nonce + 1)

    def accepted(self, msg: dict) -> None:
        self.accepted_count += 1
        self.console.line(f"Accepted: cheese {msg.get('smell')}")

    def refused(self, msg: dict) -> None:
        self.console.line(f"Refused ({msg.get('code')}): {msg.get('message')}")

    # -- people and stopping ---------------------------------------------------------

    def status_text(self) -> str:
        job = self.job
        what = (
            f"cheese {job.cheese.get('sequence_number', '?')} at {job.bits} bits"
            if job
            else "waiting for work"
        )
        found = f"found {self.found}, accepted {self.accepted_count}"
        return f"{format_rate(self.meter.rate())} | {what} | {found}"

    def show_status(self) -> None:
        self.console.status(self.status_text())

    def stop(self) -> defer.Deferred:
        """Disconnect, end the workers; fires when they are gone."""
        self._stopping = True
        stopped = self.service.stopService() if self.service.running else defer.succeed(None)
        if self._status.running:
            self._status.stop()
        d = defer.gatherResults([stopped, self.searcher.shutdown()], consumeErrors=True)

        def done(_: Any) -> None:
            self.console.close()
            self.console.line(f"Stopped: found {self.found}, accepted {self.accepted_count}")

        return d.addCallback(done)


def cmd_mine(args: argparse.Namespace) -> int:
    try:
        host, port = parse_member(args.member)
    except ValueError as e:
        raise CliError(str(e), 2)
    if args.processes < 0:
        raise CliError("--processes must be 0 (every core) or more", 2)
    from twisted.internet import reactor

    miner = ExternalMiner(host, port, args.processes, reactor, Console(sys.stdout))
    stopping: List[int] = []
    threads = cast(IReactorThreads, reactor)  # the global reactor runs threads

    def stop_once(signum: int, frame: Any) -> None:
        # A second Ctrl-C, or SIGINT sent to the whole process group twice, is not an error.
        if not stopping:
            stopping.append(signum)
            threads.callFromThread(reactor.stop)

    def start() -> None:
        # After the reactor's own handlers (it keeps SIGCHLD, which reaps the workers).
        signal.signal(signal.SIGINT, stop_once)
        signal.signal(signal.SIGTERM, stop_once)
        miner.start()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", miner.stop)
    reactor.run()
    return 0
