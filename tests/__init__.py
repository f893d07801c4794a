"""CheeseCoin's tests, a package so that trial finds the protocol tests
(``python -m twisted.trial tests.p2p tests.wire tests.tracker``); pytest runs
them too. The helper modules beside this file (``procs``, ``doccheck``) are
imported as top-level modules by tests in every folder, under pytest and
trial alike, so this folder goes on ``sys.path`` once."""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
