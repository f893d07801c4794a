"""The fuzz gate (issue 26): one member, on protocol fakes and one clock,
through long seeded storms of valid, malformed and adversarial messages of
every type it handles (taken from the ``msg_`` handlers of
``cheesecoin.p2p.states``, so a new type is covered without editing this
file), from several peers at once (inbound and outbound, features on and
off, claiming more work than they have, some never answering), while an
honest member holds a longer stack. The harness is ``fuzzgate.py``, the
shapes (issue 26's findings among them) ``fuzzshapes.py``, the checks
``fuzzchecks.py``.

After each run: nothing escaped into the caller and nothing was logged as a
failure, critical or unhandled error in a Deferred; the member reached the
honest stack with the liars still connected; once the attackers left every
download, rebuild and request ended; no per-peer or global structure passed
its bound at any step; the CPU per byte stayed under ``CPU_FACTOR`` times a
``json.loads`` calibration of the same run.

The seed of each run is printed, and in the failure; ``CHEESECOIN_FUZZ_SEED``
replays one (its first run uses it; the others follow from it).
``CHEESECOIN_STORM_SCALE=N`` runs N times as many storms (seeds).
"""

from __future__ import annotations

import os
import random

import fuzzshapes
import fuzztls
import pytest
from fuzzgate import handled_types, reply_types, run_gate
from hostile import storm_scale

from cheesecoin.p2p.manager import FEATURES

RUNS = 4  # member features on for an even seed, off for an odd one; tls too for a third
# Storm steps per run at scale 1 (each: a message, a flood, a peer's coming or going, or time).
STEPS = 8000


def first_seed() -> int:
    value = os.environ.get("CHEESECOIN_FUZZ_SEED")
    if value:
        try:
            return int(value)
        except ValueError:
            pytest.fail(
                f"CHEESECOIN_FUZZ_SEED must be a whole number, not {value!r}", pytrace=False
            )
    return random.SystemRandom().randrange(2**32)


def test_every_handled_type_has_a_generator() -> None:
    handled = handled_types()
    assert {"HELLO", "GET_TXS", "ANNOUNCE_COMPACT", "HEADERS", "ERROR"} <= handled  # the scan works
    missing = handled - set(fuzzshapes.GENERATORS)
    assert not missing, (
        f"message types the member handles with no generator in fuzzshapes.py: {missing}"
    )


def test_reply_types_are_found_from_the_handlers() -> None:
    replies = reply_types()
    assert {
        "STATS_REPLY",
        "CHEESE",
        "CHEESES",
        "HEADERS",
        "PONG",
        "MEMPOOL",
        "TXS",
        "PEERS",
        "ERROR",
    } <= replies
    assert not replies & {"GET_TXS", "ANNOUNCE", "TX", "HELLO", "STATS"}


@pytest.mark.storm
def test_fuzz_gate() -> None:
    seed = first_seed()
    steps = STEPS
    runs = RUNS * storm_scale()  # CHEESECOIN_STORM_SCALE=N: N times as many runs (seeds)
    report = []
    for i in range(runs):
        run_seed = seed + i
        tls = fuzztls.tls_run(run_seed)  # a member that lists tls, its TlsPolicy (section 5.3)
        # so that the seed alone replays a run:
        features = fuzztls.TLS_FEATURES if tls else FEATURES if run_seed % 2 == 0 else ()
        print(
            f"fuzz gate: run {i + 1} of {runs}, seed {run_seed} "
            f"(CHEESECOIN_FUZZ_SEED={run_seed} replays it), "
            f"member features {list(features)}{' with a TlsPolicy' if tls else ''}, {steps} steps"
        )
        failures, _run, table = run_gate(run_seed, features, steps)
        print(table)
        if failures:
            report.append(
                f"seed {run_seed} (replay: CHEESECOIN_FUZZ_SEED={run_seed}), member features "
                f"{list(features)}:\n" + "\n".join(failures) + "\nCPU per type:\n" + table
            )
    if report:
        pytest.fail("the fuzz gate failed:\n\n" + "\n\n".join(report), pytrace=False)


def test_the_checks_can_fail() -> None:
    """The gate's own checks see what they look for: an unhandled error in a
    Deferred, a peer with too many requests pending, a write that costs too much."""
    import gc

    from fuzzchecks import MAX_PENDING_PER_PEER, bounds_broken, write_over
    from fuzzgate import Run
    from fuzzpeers import LogCatcher
    from twisted.internet.defer import Deferred, fail

    with LogCatcher() as logged:
        d: Deferred = fail(ValueError("nobody handles this"))
        del d
        gc.collect()
    assert any("Unhandled error in Deferred" in e for e in logged.events), logged.events
    run = Run(1, FEATURES, 1)
    peer = run.new_adversary(inbound=True, claim="less", liar=True)
    assert not bounds_broken(run.member)
    for _ in range(MAX_PENDING_PER_PEER + 1):
        peer.proto.request({"type": "PING"})
    assert any("requests pending" in what for what in bounds_broken(run.member))
    assert write_over(1.0, "PING", b'{"type":"PING"}', b"", 0, 1)  # a second for a PING
    assert not write_over(1e-6, "PING", b'{"type":"PING"}', b"", 0, 1)


def test_a_new_message_type_is_covered_without_editing_the_gate(monkeypatch) -> None:
    """A handler added to the ready state is a type the storm sends (generically,
    from its name) and one the generator test asks a generator for."""
    import json

    import fuzzworld

    from cheesecoin.p2p import states

    monkeypatch.setattr(
        states.ReadyState, "msg_FUZZ_NEWTYPE", lambda self, msg: None, raising=False
    )
    assert "FUZZ_NEWTYPE" in handled_types()
    assert "FUZZ_NEWTYPE" not in fuzzshapes.GENERATORS  # so the generator test would fail
    ctx = fuzzworld.Ctx(fuzzworld.world(), random.Random(1), None)
    kinds = set()
    for _ in range(20):  # (a line may be damaged or mutated: most are not)
        try:
            kinds.add(json.loads(fuzzshapes.make("FUZZ_NEWTYPE", ctx)).get("type"))
        except ValueError:
            pass
    assert "FUZZ_NEWTYPE" in kinds


def test_the_tls_checks_can_fail(monkeypatch) -> None:
    """In a tls run each way through the STARTTLS exchange ends as the gate expects
    (inbound and outbound), and its checks see a member that takes a wrong
    certificate, makes a peer without TLS, or keeps a closed connection."""
    from fuzzgate import Run

    from cheesecoin.p2p import tls

    assert fuzztls.tls_run(3) and not fuzztls.tls_run(4)
    run = Run(3, fuzztls.TLS_FEATURES, 1)
    assert isinstance(run.member.tls, tls.TlsPolicy)
    assert run.member.node.node_id == tls.node_id_of(fuzztls.member_key(3))

    def attempt(mode: str, inbound: bool = True) -> fuzztls.TlsAdversary:
        run.seq += 1
        peer = fuzztls.TlsAdversary(run, run.seq, inbound, list(fuzztls.TLS_FEATURES), "less", True)
        peer.mode = mode
        run.adversaries.append(peer)
        peer.connect()
        run.check_bounds()
        return peer

    for inbound in (True, False):
        for mode in sorted(set(fuzztls.MODES)):
            peer = attempt(mode, inbound)
            assert run.bounds == {}, (mode, inbound, run.bounds)
            if mode == "honest":
                assert peer.proto.encrypted and peer.proto in run.member.peers.values()
                assert run.member.tls.pins.get(peer.proto.dial_address) == (
                    None if inbound else peer.node_id
                )
            else:
                assert peer.lost and peer.proto not in run.member.connections, (mode, inbound)
    assert run.member.tls.failed == 6  # wrong, none, lost: both ways

    def believed(transport: object) -> str:  # a member that believes any certificate
        return next(p.proto.peer_node_id for p in run.adversaries if p.transport is transport)

    monkeypatch.setattr(tls, "peer_identity", believed)
    attempt("wrong")
    assert "tls: a tls peer that sent a certificate with wrong key was not closed" in run.bounds
    assert any("before the key check passed" in what for what in run.bounds), run.bounds
    monkeypatch.undo()

    run.bounds.clear()  # a member that makes a tls peer without TLS
    monkeypatch.setattr(tls.TlsPolicy, "intercept", lambda self, p: False)
    attempt("honest")
    assert "tls: a peer listing tls accepted unencrypted" in run.bounds
    assert "tls: a peer before its key check passed" in run.bounds
    monkeypatch.undo()

    run.bounds.clear()  # a member that keeps a closed connection
    monkeypatch.setattr(run.member, "connection_lost", lambda proto: None)
    attempt("lost", inbound=False)
    assert "a closed connection still in manager.connections" in run.bounds

    run = Run(6, fuzztls.TLS_FEATURES, 1)  # (fresh: the mutants above left links open)
    # A link that stalls in the exchange: dropped by the handshake timeout...
    monkeypatch.setattr(fuzztls.TlsAdversary, "exchange", lambda self: None)
    stalled = attempt("honest")
    run.advance(fuzztls.HANDSHAKE_TIMEOUT + fuzztls.REFILL_INTERVAL + 1)
    run.check_bounds()
    assert stalled.lost and run.bounds == {}, run.bounds
    monkeypatch.setattr(run.member, "drop_silent", lambda: None)  # ...unless the member keeps it
    attempt("honest")
    run.advance(fuzztls.HANDSHAKE_TIMEOUT + fuzztls.REFILL_INTERVAL + 1)
    run.check_bounds()
    assert "tls: a link held past the handshake timeout unproved" in run.bounds
