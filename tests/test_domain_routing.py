"""Routing by domain from the trainer's step metrics to storage and back (storage/domain_routing.py),
including domain names a data file could supply: long, with slashes, with control characters."""

from __future__ import annotations

import pytest

from ptmoe_core.callbacks import StepMetrics
from storage import Storage
from storage import domain_routing as dr
from storage.worker import StorageCallback
from tests.jobs_fixtures import config, db_url


def _step(step: int, routing: dict[str, list[int]]) -> StepMetrics:
    return StepMetrics(step=step, total_steps=3, loss=1.0, lr=0.1, tokens_per_s=1.0, grad_norm=0.1,
                       router_entropy=0.5, expert_load=[0.5, 0.5], domain_routing=routing)


def test_labels_are_bounded_and_keep_long_names_apart():
    assert dr.domain_label("squad") == "squad" and dr.domain_label("a/b") == "a/b"
    assert dr.domain_label("x\x00y\n") == "xy"
    a, b = "q" * 300 + "a", "q" * 300 + "b"
    assert len(dr.domain_label(a)) == dr.MAX_DOMAIN_CHARS and dr.domain_label(a) != dr.domain_label(b)
    assert all(len(k) <= 250 for k, _ in dr.points({a: [1, 2]}))
    assert dr.points({"qa": [0, 3], "math": [2, 0]}) == [("domain_routing/1/qa", 3.0), ("domain_routing/0/math", 2.0)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_step_routing_round_trips_through_storage(backend, tmp_path):
    with db_url(backend, tmp_path) as url, Storage(url, runs_dir=tmp_path / "runs") as storage:
        _round_trip(storage)


def _round_trip(storage: Storage) -> None:
    run = storage.submit(config("ok-domains", steps=3))
    cb = StorageCallback(storage, run, flush_interval_s=3600)
    odd = "<b>evil</b>/set"
    steps = [
        _step(1, {"qa": [2, 0], "math": [1, 1]}),
        _step(2, {"qa": [0, 1], odd: [3, 0]}),
        _step(3, {}),  # a method without a router writes nothing
    ]
    for m in steps:
        cb.on_step(m)
    cb.flush()
    got = dr.from_history(storage.metric_history(run))
    assert got.n_experts == 2 and got.steps == [1, 2]
    assert got.counts == [{"qa": [2, 0], "math": [1, 1]}, {"qa": [0, 1], odd: [3, 0]}]
    assert got.domains == sorted(["qa", "math", odd])
    assert got.window(1) == {"qa": [0, 1], odd: [3, 0]}
    assert got.window(5) == {"qa": [2, 1], "math": [1, 1], odd: [3, 0]}
    assert got.window(0) == {}


def test_history_without_routing_reads_empty():
    assert dr.from_history({}) == dr.DomainRouting()
