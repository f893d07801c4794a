"""How the member-client subcommands print: JSON answers, times, and a member
answer of an unexpected shape as one clear line."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
from typing import Any, Callable

from cheesecoin.cli.errors import CliError

Handler = Callable[[argparse.Namespace], int]


def guard(handler: Handler) -> Handler:
    """The handler, with a member answer of an unexpected shape as one clear line."""

    @functools.wraps(handler)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise CliError(
                f"the member's answer is not what this command expects ({type(e).__name__}: {e})"
            )

    return guarded


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def when(timestamp: Any) -> str:
    """A cheese's timestamp as UTC date and time; "?" when it is not one."""
    try:
        return datetime.datetime.fromtimestamp(int(timestamp), datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
