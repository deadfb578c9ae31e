"""The router study of issue 22 (``python -m bench.routing_study``): ``plan`` (the variants and their
configs), ``run`` (training through the job layer, the evaluation, ``--diagnose``), ``report``
(``docs/routing_study.md`` from the stored results)."""
