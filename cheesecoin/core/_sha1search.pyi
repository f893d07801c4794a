# The native nonce search (_sha1search.c), for the type checker.
from typing import Optional

def search(
    prefix: bytes, bits: int, first: int, last: int, portable: bool = False
) -> Optional[int]: ...
def backend() -> str: ...
