"""What a simulation runs: its options (docs/protocol.md section 9) and their checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

from cheesecoin.p2p.features import FeaturesError, parse_features

# Simulated CPU time of a member validating a cheese (measured on this project's
# machine, 2026-12-04, the other core nearly idle): libsodium's Ed25519 verification
# through PyNaCl (``crypto_sign_open``, which runs ``crypto_sign_verify_detached``)
# took a median 55.5 us a signature, ``cheesecoin.core.signature.verify`` 56 us; a
# cheese without payments took 26 us to decode and validate
# (``MemberNode.submit_cheese``). With both cores busy the same took 118, 126 and
# 60 us: a CPU figure is measured on a free core.
VERIFY_US = 56.0  # per payment of a cheese (--verify-us)
CHEESE_US = 26.0  # per cheese, whatever its payments (charged only when --verify-us > 0)


class ConfigError(ValueError):
    """An option of the simulation that cannot be used (one line for the user)."""


@dataclass
class SimConfig:
    """The options of ``cheesecoin simulate``."""

    members: int = 100
    peers: int = 8  # each member's target number of peers (its outbound dialling)
    cheeses: int = 100  # stop mining once this many are found
    spacing: float = 10.0  # mean seconds between cheeses, over the whole network
    latency: Tuple[float, float] = (20.0, 150.0)  # one-way milliseconds, drawn per pair of members
    bandwidth: float = 10.0  # Mbit/s of each direction of a link (0: no limit)
    txs_per_cheese: int = 0  # payments entered per mean spacing
    seed: int = 1
    miners: Optional[int] = None  # how many members mine, with equal shares (None: all of them)
    partition: Optional[Tuple[float, float, float]] = (
        None  # (share of group A, from, until) in seconds
    )
    churn: float = (
        0.0  # share of the members that leave (and as many new ones join) per simulated hour
    )
    late_joiners: int = 0  # members that start halfway through and sync
    features: str = "all"  # all, rev2, none, or names (docs/protocol.md sections 8 and 10)
    feature_mix: Optional[Tuple[str, ...]] = (
        None  # one --features value per member, in turn (tests)
    )
    bits: int = 8  # the network's (fixed) difficulty: real proof of work, cheap
    quiet_limit: float = 300.0  # seconds after the last cheese to wait for agreement
    verify_us: float = (
        VERIFY_US  # simulated microseconds per payment to validate a cheese (0: no CPU time)
    )
    selfish: Optional[float] = None  # the selfish pool's share of the hash power (None: no pool)
    selfish_peers: int = 8  # how many members the pool connects to (it takes no inbound connection)
    workers: int = 1  # processes the members are spread over (cheesecoin.sim.parallel)

    def check(self) -> "SimConfig":
        if not 2 <= self.members <= 100_000:
            raise ConfigError("--members must be from 2 to 100000")
        if not 1 <= self.peers <= 64:
            raise ConfigError("--peers must be from 1 to 64")
        if not 1 <= self.cheeses <= 1_000_000:
            raise ConfigError("--cheeses must be from 1 to 1000000")
        if not 0.01 <= self.spacing <= 86_400:
            raise ConfigError("--spacing must be from 0.01 to 86400 seconds")
        low, high = self.latency
        if not 0 <= low <= high <= 10_000:
            raise ConfigError(
                "--latency must be MIN-MAX milliseconds with 0 <= MIN <= MAX <= 10000"
            )
        if not 0 <= self.bandwidth <= 100_000:
            raise ConfigError("--bandwidth must be from 0 (no limit) to 100000 Mbit/s")
        if not 0 <= self.txs_per_cheese <= 10_000:
            raise ConfigError("--txs-per-cheese must be from 0 to 10000")
        if self.miners is not None and not 1 <= self.miners <= self.members:
            raise ConfigError("--miners must be from 1 to --members")
        if not 0 <= self.churn <= 10:
            raise ConfigError("--churn must be from 0 to 10 (members replaced per member per hour)")
        if not 0 <= self.late_joiners < self.members:
            raise ConfigError("--late-joiners must be from 0 to --members - 1")
        for value in (self.features,) + tuple(self.feature_mix or ()):
            try:
                parse_features(value)
            except FeaturesError as e:
                raise ConfigError(str(e))
        if not 0 <= self.verify_us <= 1_000_000:
            raise ConfigError("--verify-us must be from 0 to 1000000 microseconds")
        if self.selfish is not None and not 0 < self.selfish < 0.5:
            raise ConfigError("--selfish must be a share of the hash power above 0 and below 0.5")
        if self.selfish is not None and not 1 <= self.selfish_peers <= min(64, self.members - 1):
            raise ConfigError("--selfish-peers must be from 1 to 64 and below --members")
        self._check_workers()
        if not 1 <= self.bits <= 24:
            raise ConfigError("the simulated network's bits must be from 1 to 24")
        return self

    def _check_workers(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ConfigError("--workers must be from 1 to 64")
        if self.workers == 1:
            return
        if self.workers > self.members:
            raise ConfigError("--workers must not be above --members")
        if self.latency[0] <= 0:
            raise ConfigError(
                "--workers above 1 needs a shortest --latency above 0 ms (the workers run "
                "windows of that length apart)"
            )
        for option, used in (
            ("--txs-per-cheese", self.txs_per_cheese),
            ("--selfish", self.selfish is not None),
            ("--partition", self.partition is not None),
        ):
            if used:
                raise ConfigError(
                    f"{option} needs the whole network in one process: give --workers 1"
                )


_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def parse_latency(text: str) -> Tuple[float, float]:
    """ "20-150" -> (20.0, 150.0); a single number is a fixed latency."""
    match = re.fullmatch(_NUMBER + r"(?:-" + _NUMBER + r")?", text.strip())
    if not match:
        raise ConfigError(f"bad --latency {text[:40]!r}: give MIN-MAX milliseconds, such as 20-150")
    low = float(match.group(1))
    high = float(match.group(2)) if match.group(2) is not None else low
    if high < low:
        raise ConfigError(f"bad --latency {text[:40]!r}: MIN is above MAX")
    return low, high


def parse_partition(text: str) -> Tuple[float, float, float]:
    """ "50/50@600-1200" -> (0.5, 600.0, 1200.0): two groups, in those shares, cut off
    between the times."""
    match = re.fullmatch(_NUMBER + "/" + _NUMBER + "@" + _NUMBER + "-" + _NUMBER, text.strip())
    if not match:
        raise ConfigError(
            f"bad --partition {text[:40]!r}: give A/B@T1-T2, such as 50/50@600-1200 "
            "(group sizes, then simulated seconds)"
        )
    a, b, start, end = (float(g) for g in match.groups())
    if a <= 0 or b <= 0:
        raise ConfigError("bad --partition: both groups need members")
    if end <= start:
        raise ConfigError("bad --partition: T2 must be after T1")
    return a / (a + b), start, end
