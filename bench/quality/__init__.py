"""The quality benchmark (``python -m bench.quality``): ``plan`` (which runs, as sweeps), ``run``
(through the job layer, then the results), ``report`` (``docs/results.md`` from the results), ``plots``."""
