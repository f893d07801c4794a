"""Ports for the demo, tests and benchmarks: random below the ephemeral range,
or pinned upwards from $CHEESECOIN_BASE_PORT on a shared machine."""

from __future__ import annotations

import socket

import pytest

from cheesecoin.util.localports import PortError, PortPicker, _ephemeral_range


def test_ports_are_pinned_from_the_base_port_skipping_busy_ones(monkeypatch) -> None:
    picker = PortPicker()
    with socket.socket() as probe:  # find a base whose next port we can hold busy
        probe.bind(("127.0.0.1", 0))
        base = 30000 + probe.getsockname()[1] % 20000
    busy = socket.socket()
    try:
        try:
            busy.bind(("127.0.0.1", base + 1))
        except OSError:
            pytest.skip("the port after the base is taken already")
        busy.listen(1)
        monkeypatch.setenv("CHEESECOIN_BASE_PORT", str(base))
        first, second, third = picker.pick(), picker.pick(), picker.pick()
    finally:
        busy.close()
    assert first == base and second > base + 1 and third > second
    assert second - base <= 10 and third - second <= 10


def test_without_a_base_ports_are_below_the_ephemeral_range_and_never_repeat(monkeypatch) -> None:
    monkeypatch.delenv("CHEESECOIN_BASE_PORT", raising=False)
    picker = PortPicker()
    lo, hi = _ephemeral_range()
    ports = [picker.pick() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(not lo <= p <= hi for p in ports)


@pytest.mark.parametrize("value", ["x", "80", "70000", "-1"])
def test_a_base_port_that_is_not_a_port_is_a_clear_error(monkeypatch, value: str) -> None:
    monkeypatch.setenv("CHEESECOIN_BASE_PORT", value)
    with pytest.raises(
        PortError, match="CHEESECOIN_BASE_PORT must be a port number from 1024 to 65000"
    ):
        PortPicker().pick()
