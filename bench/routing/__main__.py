"""``python -m bench.routing``: see ``bench/routing/run.py``."""

import sys

from .run import main

sys.exit(main())
