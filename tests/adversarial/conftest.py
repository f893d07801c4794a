"""The adversarial suite (issue 10): hostile peers, invalid cheeses, crashes,
fuzzing and partitions. Helpers live in ``hostile.py`` beside this file; the
member fakes (``Raw``, ``Net``, ``make_member``) are the ones of
``tests/test_member_protocol.py``.

``CHEESECOIN_STORM_SCALE`` (default 1) multiplies the counts of the long
storms (``@pytest.mark.storm``): crash-restart cycles, fuzzing examples.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
