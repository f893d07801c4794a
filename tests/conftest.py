"""Shared fixtures: the vectors, and cleanup of real processes started by tests."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from procs import VECTORS, Proc  # noqa: E402


@pytest.fixture
def procs(tmp_path):
    """A list to append started Procs to; every one is stopped after the test."""
    started: list = []
    yield started
    for proc in started:
        if isinstance(proc, Proc):
            proc.stop()


@pytest.fixture(scope="session")
def vectors_dir() -> str:
    assert os.path.isdir(VECTORS), f"the vectors are missing from {VECTORS}"
    return VECTORS
