"""Our own copy of the worked examples (tests/vectors/) is the team's original.

The repository carries its vectors so that a clone stands on its own; on
the team's machines the original set lies in a ``shared/vectors`` folder beside the
checkout, and this test checks that the two are byte for byte the same.
Anywhere else it is skipped, saying so.
"""

from __future__ import annotations

import os

import pytest
from procs import VECTORS

ORIGINAL = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "vectors")
)


def test_vectors_are_carried_by_the_repository():
    names = sorted(os.listdir(VECTORS))
    assert "compact-vectors.json" in names and "chain-vectors.json" in names
    assert all(name.endswith(".json") for name in names)


@pytest.mark.skipif(
    not os.path.isdir(ORIGINAL), reason=f"no original vectors at {ORIGINAL} (a clone on its own)"
)
def test_vectors_equal_the_original_set():
    ours = sorted(os.listdir(VECTORS))
    theirs = sorted(n for n in os.listdir(ORIGINAL) if not n.startswith("."))
    assert ours == theirs, "tests/vectors/ and the original set hold different files"
    for name in theirs:
        with (
            open(os.path.join(VECTORS, name), "rb") as a,
            open(os.path.join(ORIGINAL, name), "rb") as b,
        ):
            assert a.read() == b.read(), f"tests/vectors/{name} differs from the original"
