"""``python -m bench.routing_study``: see ``bench/routing_study/run.py``."""

import sys

from .run import main

sys.exit(main())
