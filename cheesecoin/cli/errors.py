"""``CliError``: a failure of the cheesecoin command, said in one line with an exit code."""

from __future__ import annotations

USAGE = 2  # the exit code of a bad argument, as argparse's


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
