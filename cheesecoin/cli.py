"""The ``cheesecoin`` command: argparse front end over the subcommand modules.

Each module registers its subcommands with ``register(subparsers)``; a
subcommand's handler returns the exit code. Every failure is one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__, cli_core, cli_wallet, external_miner


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cheesecoin",
        description="CheeseCoin: verify stacks, make networks, keep a wallet, pay, mine.",
    )
    parser.add_argument("--version", action="version", version=f"cheesecoin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (cli_core, cli_wallet, external_miner):
        module.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as e:
        print(f"cheesecoin: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("cheesecoin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's main: its CliError is the one subcommands raise.
    from cheesecoin.cli import main as _main

    sys.exit(_main())
