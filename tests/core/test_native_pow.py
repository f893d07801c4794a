"""The native nonce search agrees with the pure-Python reference, and the
Python path still works where the extension is not built (docs/protocol.md
section 3: the smell of prefix + decimal nonce, and its leading zero bits)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cheesecoin.core import pow as pow_mod
from cheesecoin.core.pow import NONCE_LIMIT, backend, search_nonce, search_nonce_python

native = pow_mod._native
needs_native = pytest.mark.skipif(
    native is None, reason="the C extension is not built here (no compiler?)"
)
PREFIX_CHARS = "0123456789abcdef:"


def expected(prefix: str, bits: int, start: int, end: int):
    return search_nonce_python(prefix, bits, start, end)


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(PREFIX_CHARS, min_size=0, max_size=200),  # across the 64-byte block boundaries
    bits=st.integers(1, 12),
    digits=st.integers(1, 20),  # nonces of every digit count, up to 2^64 - 1
    offset=st.integers(0, 10**6),
    portable=st.booleans(),
)
def test_native_and_python_find_the_same_first_nonce(
    prefix, bits, digits, offset, portable
) -> None:
    start = min(10 ** (digits - 1) + offset, NONCE_LIMIT - 3000) if digits > 1 else offset % 10
    end = min(start + 3000, NONCE_LIMIT)
    want = expected(prefix, bits, start, end)
    got = native.search(prefix.encode("ascii"), bits, start, end - 1, portable)
    assert got == want[0]
    if got is not None:
        assert hashlib.sha1((prefix + str(got)).encode()).hexdigest() == want[1]


@needs_native
@pytest.mark.parametrize("portable", [False, True])
def test_across_a_change_of_digit_count_and_at_the_top_of_the_range(portable: bool) -> None:
    for start in (9_990, 999_999_990, 10**19 - 20, NONCE_LIMIT - 40):
        end = min(start + 60, NONCE_LIMIT)
        for bits in (1, 2, 3):
            assert (
                native.search(b"x" * 61 + b":", bits, start, end - 1, portable)
                == expected("x" * 61 + ":", bits, start, end)[0]
            )


@needs_native
@pytest.mark.parametrize("bits", range(1, 161, 7))
def test_every_bits_is_checked_exactly(bits: int) -> None:
    # An impossible target finds nothing; a hit always has the zero bits asked for.
    got = native.search(b"check:", bits, 0, 5000)
    want = expected("check:", bits, 0, 5001)
    assert got == want[0]


@needs_native
def test_search_nonce_uses_the_native_search_and_reproduces_the_vectors(vectors_dir) -> None:
    import json

    with open(os.path.join(vectors_dir, "chain-vectors.json")) as f:
        chain = json.load(f)
    assert backend() in ("sha-ni", "portable-c")
    for cheese, pre in zip(chain["cheeses"], chain["preimages"]):
        prefix = pre[: pre.rindex(":") + 1]
        nonce, smell = search_nonce(prefix, cheese["bits"], 0, cheese["nonce"] + 1)
        assert (nonce, smell) == search_nonce_python(prefix, cheese["bits"], 0, cheese["nonce"] + 1)
        assert nonce <= cheese["nonce"]


@needs_native
def test_native_search_stops_between_batches() -> None:
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    assert search_nonce("never:", 160, 0, NONCE_LIMIT, should_stop=stop) == (None, None)
    assert len(polls) == 3


def test_the_python_path_is_forced_and_still_finds_nonces() -> None:
    """As on a machine without the extension: CHEESECOIN_POW=python."""
    code = (
        "from cheesecoin.core import pow; import sys\n"
        "assert pow.backend() == 'python', pow.backend()\n"
        "print(pow.search_nonce('abc:', 12, 0, 2**64))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, CHEESECOIN_POW="python"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(search_nonce_python("abc:", 12, 0, 2**64))


def test_without_the_extension_module_the_search_is_python(monkeypatch) -> None:
    monkeypatch.setattr(pow_mod, "_native", None)
    assert backend() == "python"
    assert search_nonce("abc:", 10, 0, 2**64) == search_nonce_python("abc:", 10, 0, 2**64)
