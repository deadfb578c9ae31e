"""``python -m bench.quality``: see ``bench/quality/run.py``."""

import sys

from .run import main

sys.exit(main())
