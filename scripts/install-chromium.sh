#!/usr/bin/env bash
# Install Debian's chromium for the explorer's browser test (tests/test_explorer_browser.py).
#
# Run by `make test` before pytest. It never fails the build: when chromium
# is already there, or cannot be installed here (not root and no password-less
# sudo, no apt-get, no network, no such package), it prints one line saying
# why and exits 0; the browser test then skips itself with a clear reason.
#
#   CHEESECOIN_CHROMIUM=PATH     the browser to look for (default /usr/bin/chromium; the test reads it too)
#   CHEESECOIN_NO_CHROMIUM=1     do not try to install it

set -u
CHROMIUM="${CHEESECOIN_CHROMIUM:-/usr/bin/chromium}"

say() { echo "install-chromium: $*"; }

if [ -x "$CHROMIUM" ]; then
    say "$CHROMIUM is already installed"
    exit 0
fi
if [ -n "${CHEESECOIN_NO_CHROMIUM:-}" ]; then
    say "not installing chromium (CHEESECOIN_NO_CHROMIUM is set); the browser test will be skipped"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get on this machine, cannot install chromium; the browser test will be skipped"
    exit 0
fi
if [ "$(id -u)" = "0" ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    say "not root (and no password-less sudo), cannot install chromium; the browser test will be skipped"
    exit 0
fi
TIMEOUT=()
if command -v timeout >/dev/null 2>&1; then
    TIMEOUT=(timeout 900)  # a hung mirror must not hang the build
fi

log="$(mktemp "${TMPDIR:-/tmp}/install-chromium.XXXXXX")"
trap 'rm -f "$log"' EXIT
if "${TIMEOUT[@]}" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 \
    && "${TIMEOUT[@]}" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >>"$log" 2>&1 \
    && [ -x "$CHROMIUM" ]; then
    say "installed $("$CHROMIUM" --version 2>/dev/null | grep -i chromium | head -n 1)"
else
    reason="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c 1-200)"
    say "could not install chromium (${reason:-apt-get failed}); the browser test will be skipped"
fi
exit 0
