"""``python -m cheesecoin.cli``: the cheesecoin command."""

import sys

from cheesecoin.cli.main import main

sys.exit(main())
