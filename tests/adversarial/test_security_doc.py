"""docs/security.md: its limits table matches the code, and every test file it
points to exists."""

from __future__ import annotations

import os
import re

from doccheck import check_limits_table

from cheesecoin.p2p.protocol import ERROR_POINTS

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
with open(os.path.join(ROOT, "docs", "security.md"), encoding="utf-8") as f:
    TEXT = f.read()


def test_the_limits_table_matches_the_code() -> None:
    check_limits_table(TEXT, 20)
    row = re.search(r"^\| points for sending an invalid cheese \(a line too long: (\d+), malformed: (\d+)\) \| (\d+) \|",
                    TEXT, flags=re.M)
    assert row, "the misbehaviour points row is missing"
    assert (int(row.group(3)), int(row.group(1)), int(row.group(2))) == (
        ERROR_POINTS["invalid-cheese"], ERROR_POINTS["too-long"], ERROR_POINTS["bad-message"])


def test_every_test_file_named_exists() -> None:
    named = set(re.findall(r"`(tests/[\w/]+\.py)`", TEXT))
    assert len(named) >= 10
    for path in named:
        assert os.path.exists(os.path.join(ROOT, path)), path
