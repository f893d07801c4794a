"""The cheesecoin command's HTTP client of a member's API (docs/protocol.md section 7)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from cheesecoin.cli.errors import USAGE, CliError
from cheesecoin.wire.limits import API_PORT

MEMBER_ENV = "CHEESECOIN_MEMBER"
DEFAULT_MEMBER = f"http://127.0.0.1:{API_PORT}"
HTTP_TIMEOUT = 15.0


def member_url(option: Optional[str]) -> str:
    """The member's base URL: the option, $CHEESECOIN_MEMBER or the default."""
    url = (option or os.environ.get(MEMBER_ENV) or DEFAULT_MEMBER).strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"bad member URL {url[:80]!r}: use http://HOST:PORT", USAGE)
    return url.rstrip("/")


class Member:
    """A member's HTTP API, through urllib."""

    def __init__(self, url: str, timeout: float = HTTP_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout

    def get(self, path: str) -> Any:
        return self.call(path)

    def post(self, path: str, body: Any) -> Any:
        return self.call(path, json.dumps(body, ensure_ascii=False).encode("utf-8"))

    def call(self, path: str, data: Optional[bytes] = None) -> Any:
        """The decoded JSON answer; any failure is a CliError with one line."""
        request = urllib.request.Request(
            self.url + path,
            data=data,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="GET" if data is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            raise CliError(self._refusal(e))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise CliError(f"cannot reach the member at {self.url}: {reason}")
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise CliError(
                f"the member at {self.url} did not answer JSON (is it a CheeseCoin member?)"
            )

    def _refusal(self, error: urllib.error.HTTPError) -> str:
        try:
            answer = json.loads(error.read().decode("utf-8"))
            message = answer["message"]
            code = answer.get("error", "")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            return f"the member at {self.url} answered HTTP {error.code} {error.reason}"
        message = " ".join(str(message).split())[:300]
        return (
            f"the member refused ({code}): {message}" if code else f"the member refused: {message}"
        )
