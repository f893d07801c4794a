"""A late joiner's initial sync in the simulator (issue 17's sync figure).

``sync_race`` builds a stack of C cheeses with T signed payments each, gives
it to ``sources`` members, lets them find each other through the tracker,
then starts one new member with a target of ``peers`` peers and measures the
simulated time from its start until it holds the whole stack. The members
are the real code (``SimMember``) on the simulator's clock and links, so the
figure is what the sync protocol makes of the latency and bandwidth: from
one peer it is that peer's link; headers first (section 5.1) it is every
peer's. Members' CPU time is not simulated.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from cheesecoin.core.pow import search_nonce
from cheesecoin.core.signature import SignatureCache, use_signature_cache
from cheesecoin.core.tx import sign_tx
from cheesecoin.mining.templates import job_for
from cheesecoin.sim.config import SimConfig
from cheesecoin.sim.world import PAYERS, START, Simulation

SETTLE = 30.0  # simulated seconds for the sources to connect before the joiner starts
GIVE_UP = 3600.0  # simulated seconds after which a sync that has not finished counts as failed


def build_stack(sim: Simulation, cheeses: int, txs: int) -> List[dict]:
    """``cheeses`` valid cheeses of ``sim``'s network, ``txs`` payments each (after
    the first PAYERS, which fund the payers), all at the Blue Cheese's timestamp."""
    network = sim.network
    blue = network.blue_cheese
    nonces = [0] * PAYERS
    out: List[dict] = []
    parent = blue
    for height in range(1, cheeses + 1):
        miner = sim.payer_addresses[height % PAYERS]
        payments: List[dict] = []
        if height > PAYERS:
            for k in range(txs):
                payer = (height + k) % PAYERS
                to = sim.payer_addresses[(payer + 1) % PAYERS]
                payments.append(
                    sign_tx(sim.payers[payer], to, 1, 1, nonces[payer], f"{height}/{k}")
                )
                nonces[payer] += 1
        info: Dict[str, Any] = {"miner": miner, "transactions": payments}
        cheese = {
            "parent_smell": parent["smell"],
            "sequence_number": height,
            "timestamp": blue["timestamp"],
            "bits": blue["bits"],
            "unit_of_information": info,
        }
        job = job_for(0, cheese)
        nonce, _ = search_nonce(job.prefix, job.bits, 0, 2**63)
        if nonce is None:  # 2**63 nonces at the low bits of a simulation: never
            raise RuntimeError("no nonce meets the simulated bits")
        parent = job.complete(nonce)
        out.append(parent)
    return out


def sync_race(
    cheeses: int = 2000,
    txs: int = 25,
    sources: int = 8,
    peers: int = 8,
    latency=(50.0, 100.0),
    bandwidth: float = 10.0,
    features: str = "all",
    seed: int = 1,
    stack: Optional[List[dict]] = None,
) -> dict:
    """Run one late joiner's sync; the figures as a dict (``sync_seconds`` simulated)."""
    config = SimConfig(
        members=sources + 1,
        peers=min(sources, 64),
        cheeses=1,
        latency=latency,
        bandwidth=bandwidth,
        txs_per_cheese=txs,
        seed=seed,
        features=features,
    )
    sim = Simulation(config)
    wall = time.perf_counter()
    if stack is None:
        stack = build_stack(sim, cheeses, txs)
    previous = use_signature_cache(SignatureCache())  # each run checks every signature once
    try:
        members = [sim.add_member() for _ in range(sources + 1)]
        *holders, joiner = members
        for member in holders:
            member.manager.target_peers = sources - 1  # each other: they never dial the joiner
            for cheese in stack:
                member.node.stack.add_cheese(cheese, check_signatures=False)
            member.start()
        sim.clock.advance(SETTLE)
        joiner.manager.target_peers = peers
        started = sim.clock.now
        done: Dict[str, float] = {}
        target = stack[-1]["smell"]

        def on_tip(result: Any, source: Any) -> None:
            if joiner.node.stack.tip.smell == target and "at" not in done:
                done["at"] = sim.clock.now

        joiner.node.tip_listeners.append(on_tip)
        joiner.start()
        while "at" not in done and sim.clock.now - started < GIVE_UP:
            sim.clock.advance(1.0)
        received = sum(p.bytes for m in holders for p in _pipes_to(joiner, m))
        return {
            "cheeses": len(stack),
            "txs_per_cheese": txs,
            "sources": sources,
            "peers": len(joiner.manager.peers),
            "features": features,
            "synced": "at" in done,
            "sync_seconds": round(done["at"] - started, 3) if "at" in done else None,
            "height": joiner.node.stack.height,
            "bytes_received": received,
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "simulated_start": round(started - START, 1),
        }
    finally:
        use_signature_cache(previous)


def _pipes_to(joiner: Any, member: Any) -> List[Any]:
    """The pipes from ``member`` towards ``joiner`` (what the joiner received from it)."""
    out = []
    for proto in member.manager.connections:
        transport = proto.transport
        if transport is not None and getattr(transport, "remote", None) is joiner:
            out.append(transport.out)
    return out
