"""The ``cheesecoin`` command: argparse front end over the subcommand modules.

Each module registers its subcommands with ``register(subparsers)``; a
subcommand's handler returns the exit code. Every failure is one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, NoReturn, Optional

from cheesecoin import __version__
from cheesecoin.cli import chain as cli_core
from cheesecoin.cli import history as cli_history
from cheesecoin.cli import mine as external_miner
from cheesecoin.cli import simulate as cli_simulate
from cheesecoin.cli import status as cli_status
from cheesecoin.cli import wallet as cli_wallet
from cheesecoin.cli.errors import CliError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cheesecoin",
        description="CheeseCoin: verify stacks, make networks, keep a wallet, pay, mine.",
    )
    parser.add_argument("--version", action="version", version=f"cheesecoin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    # the order of the subcommands in --help
    modules = (cli_core, cli_wallet, cli_status, cli_history, external_miner, cli_simulate)
    for module in modules:
        module.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args) or 0)
    except CliError as e:
        print(f"cheesecoin: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("cheesecoin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    if argv is None and getattr(args, "leave_at_once", False):
        # The command (a large simulation) holds gigabytes of objects and has printed
        # and closed all it writes: freeing them one by one would take tens of seconds.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # the reader went away (a closed pipe): as a BrokenPipeError above
            os._exit(1)
        os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
