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
    row = re.search(
        r"^\| points for sending an invalid cheese "
        r"\(a line too long: (\d+), malformed: (\d+)\) \| (\d+) \|",
        TEXT,
        flags=re.M,
    )
    assert row, "the misbehaviour points row is missing"
    assert (int(row.group(3)), int(row.group(1)), int(row.group(2))) == (
        ERROR_POINTS["invalid-cheese"],
        ERROR_POINTS["too-long"],
        ERROR_POINTS["bad-message"],
    )


def test_every_test_file_named_exists() -> None:
    named = set(re.findall(r"`(tests/[\w/]+\.py)`", TEXT))
    assert len(named) >= 10
    for path in named:
        assert os.path.exists(os.path.join(ROOT, path)), path


def _cost_rows() -> dict:
    """The cost table of docs/security.md: {message type: (work, bound)}."""
    start = TEXT.index("## The cost of each message")
    section = TEXT[start : TEXT.index("\n## ", start + 1)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z_]+)`", cells[0]) if line.startswith("| `") else []
        if names:
            assert len(cells) == 3 and all(cells), (
                f"a cost row needs its work and its bound: {line}"
            )
            assert names[0] not in rows, f"two cost rows for {names[0]}"
            rows[names[0]] = (cells[1], cells[2])
    return rows


def test_every_handled_message_type_has_a_cost_row() -> None:
    """A message type added to the connection states without a row here fails."""
    import importlib
    import inspect
    import pkgutil

    from twisted.internet.protocol import Protocol

    import cheesecoin.p2p

    # The tables of the member connection's states (msg_ handlers and the reply
    # types each resolves): every class of a cheesecoin.p2p module but a
    # protocol (the tracker link's).
    handled = set()
    for info in pkgutil.iter_modules(cheesecoin.p2p.__path__):
        module = importlib.import_module("cheesecoin.p2p." + info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and not issubclass(cls, Protocol):
                handled.update(n[4:] for n in dir(cls) if n.startswith("msg_"))
                handled.update(getattr(cls, "replies", ()))
    assert {"HELLO", "GET_TXS", "ANNOUNCE_COMPACT", "TXS"} <= handled  # the scan works
    rows = _cost_rows()
    assert handled - set(rows) == set(), "message types with no row in the cost table"
    assert set(rows) - handled == set(), "cost rows for message types nothing handles"


def test_the_cost_table_names_only_what_exists() -> None:
    from doccheck import _resolve

    start = TEXT.index("## The cost of each message")
    section = TEXT[start : TEXT.index("\n## ", start + 1)]
    names = set(re.findall(r"`(cheesecoin\.[\w.]+(?:\(\w+\))?)`", section))
    assert len(names) >= 15
    for name in names:
        _resolve(name)  # raises if the module, constant or parameter is gone
