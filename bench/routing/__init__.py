"""The routing benchmark (``python -m bench.routing``): ``plan`` (the variants, as sweeps), ``run``
(through the job layer, and the frozen model's floor), ``report`` (``docs/routing.md``)."""
