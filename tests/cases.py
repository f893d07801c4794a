"""Helpers for the trial TestCases that pytest also runs.

``temp_path`` stands in for pytest's ``tmp_path``: ``TestCase.mktemp`` makes
its folders below the current directory, which under pytest is the checkout.
``clock_at`` is the ``task.Clock`` most protocol tests start from; ``case``
stands in for ``pytest.mark.parametrize`` in a loop."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase


def temp_path(case: SynchronousTestCase) -> pathlib.Path:
    """A new empty folder outside the checkout, removed when ``case`` ends."""
    path = tempfile.mkdtemp(prefix="cheesecoin-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return pathlib.Path(path)


def clock_at(now: float) -> Clock:
    """A fake reactor clock already advanced to ``now``."""
    clock = Clock()
    clock.advance(now)
    return clock


@contextmanager
def case(**params: object) -> Iterator[None]:
    """Names the case of a test that loops over cases (trial has no subTest):
    a failed assertion inside says which case it was."""
    try:
        yield
    except AssertionError as error:
        raise AssertionError(f"case {params!r}: {error}") from error
