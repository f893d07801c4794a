"""Section 5.2 in the simulator (issue 29): members listing all, rev2 and none
of the features in one network agree and every payment reaches every member;
``tx_propagation_ms`` beside its shortest-path limit; the three settings
against each other (relay by inventory sends fewer bytes per payment)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from cheesecoin.sim.config import ConfigError, SimConfig
from cheesecoin.sim.world import Simulation


def run(**kw) -> dict:
    return Simulation(SimConfig(**kw).check()).run()


class RelaySettingsTests(SynchronousTestCase):
    """--features all, rev2 and none, and a network mixing them."""

    def test_members_of_all_three_settings_agree_and_hold_every_payment(self) -> None:
        figures = run(
            members=18, cheeses=6, txs_per_cheese=30, seed=3, feature_mix=("all", "rev2", "none")
        )
        assert figures["agreement"] is True and figures["cheeses_on_best"] >= 5
        assert figures["transactions"] > 0
        by_type = figures["bytes_per_member_by_type"]
        for kind in ("INV", "TX", "ANNOUNCE_HEADER", "ANNOUNCE_COMPACT", "ANNOUNCE"):
            assert by_type.get(kind, 0) > 0, f"no {kind} in a mixed network"
        tx = figures["tx_propagation_ms"]
        limit = figures["tx_propagation_limit_ms"]
        assert tx["p50"] is not None and tx["p50"] >= limit["p50"] * 0.999
        assert tx["max"] >= tx["p90"] >= tx["p50"]

    def test_every_payment_reaches_every_member_once(self) -> None:
        sim = Simulation(SimConfig(members=12, cheeses=4, txs_per_cheese=20, seed=5).check())
        figures = sim.run()
        # One sample per payment and member but its home: nothing missed, nothing twice.
        assert len(sim.tx_figures.delays) == figures["transactions"] * 11
        assert not sim.tx_figures.followed

    def test_inventory_relay_sends_fewer_bytes_per_payment_than_pushing_them(self) -> None:
        per_payment = {}
        for features in ("all", "rev2", "none"):
            figures = run(members=30, cheeses=5, txs_per_cheese=60, seed=2, features=features)
            assert figures["agreement"] is True
            per_payment[features] = figures["bytes_per_member"] / figures["transactions"]
        assert per_payment["all"] < 0.5 * per_payment["rev2"] < per_payment["none"]

    def test_a_features_value_is_checked(self) -> None:
        for bad in ("some", "compact,teleport", ""):
            with self.assertRaises(ConfigError):
                SimConfig(features=bad).check()
        SimConfig(features="rev2").check()
        SimConfig(features="headers,inv").check()
