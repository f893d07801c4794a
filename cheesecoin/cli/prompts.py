"""The terminal prompts of the ``cheesecoin`` command: a wallet's passphrase.

``$CHEESECOIN_PASSPHRASE`` answers for scripts; without it the passphrase is
read from the terminal (never echoed, never from a pipe). The wallet files
themselves (``cheesecoin.storage.wallet``) never prompt.
"""

from __future__ import annotations

import getpass
import warnings

from cheesecoin.storage.wallet import (
    PASSPHRASE_ENV,
    WalletError,
    env_passphrase,
    passphrase_from_env,
)


def _prompt(text: str) -> str:
    """One passphrase read from the terminal; never from a pipe with a warning."""
    with warnings.catch_warnings():
        # Without a terminal getpass warns (naming its own source file) and
        # reads the passphrase, echoed, from stdin: refuse instead.
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(text)
        except getpass.GetPassWarning:
            raise WalletError(
                f"no terminal to ask the passphrase on (set ${PASSPHRASE_ENV} for scripts)"
            )
        except EOFError:
            raise WalletError(f"no passphrase given (set ${PASSPHRASE_ENV} for scripts)")


def ask_passphrase(confirm: bool) -> str:
    """The passphrase from ``$CHEESECOIN_PASSPHRASE``, else asked (twice when ``confirm``).

    An empty passphrase is refused the same way whether it comes from the
    environment or the terminal, when making a wallet and when using one.
    """
    if passphrase_from_env() is not None:
        return env_passphrase()
    first = _prompt("Wallet passphrase: ")
    if not first:
        raise WalletError("the passphrase must not be empty: an encrypted wallet needs one")
    if confirm and _prompt("Same passphrase again: ") != first:
        raise WalletError("the two passphrases differ; nothing was written")
    return first


def wallet_passphrase() -> str:
    """The passphrase of an encrypted wallet being opened (asked once)."""
    return ask_passphrase(confirm=False)
