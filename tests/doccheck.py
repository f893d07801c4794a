"""Checks shared by the docs tests: a limits table's numbers equal the code's."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any


def _resolve(name: str) -> Any:
    """``cheesecoin.mod.NAME``, ``cheesecoin.mod.Class.ATTR`` or
    ``cheesecoin.mod.Callable(param)`` (its default)."""
    param = None
    call = re.fullmatch(r"(.+)\((\w+)\)", name)
    if call:
        name, param = call.groups()
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            value = getattr(value, attr)
        break
    else:
        raise AssertionError(f"cannot import {name}")
    if param is not None:
        default = inspect.signature(value).parameters[param].default
        assert default is not inspect.Parameter.empty, f"{name}({param}) has no default"
        return default
    return value


def check_limits_table(text: str, minimum: int) -> None:
    """Every row ``| what | value | `cheesecoin.NAME` |`` of a markdown page: its
    first number equals NAME (also used for docs/security.md)."""
    rows = re.findall(
        r"^\|([^|\n]+)\|([^|\n]+)\|\s*`(cheesecoin\.[^`]+)`\s*\|\s*$", text, flags=re.M
    )
    assert len(rows) >= minimum, "the limits table is missing"
    for what, value, name in rows:
        number = re.search(r"[0-9][0-9,]*(?:\.[0-9]+)?", value)
        assert number, f"no number for {what.strip()!r}"
        documented = float(number.group(0).replace(",", ""))
        actual = _resolve(name)
        assert documented == actual, (
            f"{what.strip()}: the doc says {value.strip()}, {name} is {actual}"
        )
