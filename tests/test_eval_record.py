"""The typed evaluation record and the one routing summary: conversions to and from the bundle and the
database (old forms included), and one collapse rule that the app and the results page share."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from sqlalchemy import insert

from app.inspection import routing_verdict, rows_from_records
from ptmoe_core.bundle import Evaluation
from ptmoe_core.config import RunConfig
from ptmoe_core.eval_record import EvalRecord
from ptmoe_core.evaluate import EvalResult, summarize
from ptmoe_core.model_card import TrainingSummary
from ptmoe_core.routing_summary import COLLAPSE_SHARE, RoutingSummary, collapsed_expert, majority, overall_load
from storage import Storage
from storage.models import RoutingRecord
from tests.jobs_fixtures import config, db_url
from tests.test_quality_quick import _load_bench


def _rec(ds: str, i: int, expert: int | None, **kw) -> EvalRecord:
    return EvalRecord(dataset=ds, id=f"{ds}-{i}", domain=ds, input=f"q{i}", gold=["a"], prediction="a",
                      expert=expert, probs=None if expert is None else [0.6, 0.4][::1 - 2 * expert],
                      confidence=None if expert is None else 0.6, entropy=0.67, em=1.0, f1=1.0, correct=True,
                      score=1.0, **kw)


def _records(split: dict[str, list[int]]) -> list[EvalRecord]:
    return [_rec(ds, i, e) for ds, experts in split.items() for i, e in enumerate(experts)]


# ---- the collapse rule -----------------------------------------------------------------------


def test_collapse_rule_weighs_each_set_the_same():
    assert collapsed_expert({"a": [0, 10]}) == 1
    assert collapsed_expert({"a": [1, 9]}) is None  # 90% is not more than 90%
    assert collapsed_expert({"a": [19, 1]}) == 0 and collapsed_expert({"a": [0.05, 0.95]}) == 1
    assert collapsed_expert({}) is None and collapsed_expert({"a": [0, 0]}) is None
    # 200 inputs of one set on expert 0, 20 of another on expert 1: 91% pooled, but the router
    # separates the sets, so it has not collapsed.
    assert collapsed_expert({"big": [200, 0], "small": [0, 20]}) is None
    assert overall_load({"a": [1.0, 0.0], "b": [0.5, 0.5]}) == [0.75, 0.25]


@pytest.mark.parametrize("split, collapsed, pooled_said, page_said", [
    # 37 of 40 inputs on expert 0: the app (> 90% pooled) said collapsed, the page (>= 95% per set) did not.
    ({"a": [0] * 20, "b": [0] * 17 + [1] * 3}, 0, True, False),
    # 100 inputs to expert 0 and 10 to expert 1, set by set: the app said collapsed, the page did not.
    ({"a": [0] * 100, "b": [1] * 10}, None, True, False),
])
def test_the_page_and_the_app_now_agree(split, collapsed, pooled_said, page_said):
    records = _records(split)
    experts = [r.expert for r in records]
    per_set = RoutingSummary.of(records, 2).per_set
    # The two rules of before, to show these are cases where they disagreed.
    assert (max(experts.count(e) for e in (0, 1)) / len(experts) > 0.9) is pooled_said
    assert (max(overall_load(per_set)) >= 0.95) is page_said
    # Now: Inspect's verdict on the stored evaluation, the model card's, and the results page's.
    verdict = routing_verdict(rows_from_records(records))
    assert (f"collapsed onto expert {collapsed}" in verdict) is (collapsed is not None)
    assert ("not collapsed" in verdict) is (collapsed is None)
    cfg = RunConfig.from_dict({"method": {"method": "ptmoe", "n_experts": 2}})
    card = TrainingSummary.from_run(cfg, SimpleNamespace(step=1, scores={}, records=records))
    assert card.routing.collapsed == collapsed
    q = _load_bench()
    result = SimpleNamespace(evaluation=SimpleNamespace(records=records, scores={}, loss=None), history=[],
                             trainable_params=1, elapsed_s=1.0, final_loss=0.0, adapter_dir=None)
    spec = SimpleNamespace(name="r", label="PT-MoE", group="main", seed=0, family="ptmoe")
    page = q.summarize_result(spec, cfg, 1, result, 1, "key")
    assert q._collapsed(page) is (collapsed is not None)
    assert COLLAPSE_SHARE == 0.9


def test_summary_of_records():
    records = _records({"a": [0, 0, 1, 1], "b": [1, 1, 1, 1]}) + [_rec("a", 9, None)]
    s = RoutingSummary.of(records, 2)
    assert s.n == 8 and s.load == [0.25, 0.75] and s.per_set == {"a": [0.5, 0.5], "b": [0.0, 1.0]}
    assert s.collapsed is None and s.n_domains == 2 and s.mean_confidence == pytest.approx(0.6)
    assert s.entropy_per_set == {"a": pytest.approx(0.67), "b": pytest.approx(0.67)}
    assert 0 < s.mi_bits < 1
    assert RoutingSummary.of([r.to_dict() for r in records], 2) == s  # the dict form reads the same
    assert RoutingSummary.of([_rec("a", 0, None)], 2) is None
    assert s.majority == {"a": (0, 0.5), "b": (1, 1.0)}  # a tie goes to the lower expert


def test_majority_expert_per_set():
    assert majority({"a": [11, 9], "b": [1, 3], "c": [0, 0]}) == {"a": (0, 0.55), "b": (1, 0.75)}
    assert majority({"a": [0.2, 0.8]}) == {"a": (1, 0.8)} and majority({}) == {}


# ---- conversions -----------------------------------------------------------------------------


def test_bundle_form_round_trips_and_old_bundles_read():
    r = _rec("a", 1, 1, ood=True, split="test", answer_type="span", latency_s=0.5)
    assert EvalRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    # A record as bundles before the type wrote it (no latency_s, JSON numbers, an unknown key).
    old = {"dataset": "a", "id": 7, "domain": "a", "ood": 0, "split": "validation", "answer_type": "span",
           "input": "Who?", "context": None, "gold": "Ann", "prediction": "Ann", "expert": 1.0,
           "probs": [0, 1], "confidence": 1, "entropy": None, "em": 1, "f1": 1, "correct": 1, "score": 1,
           "from_the_future": True}
    rec = EvalRecord.from_dict(old)
    assert (rec.id, rec.gold, rec.expert, rec.probs, rec.correct, rec.latency_s) == ("7", ["Ann"], 1, [0.0, 1.0],
                                                                                     True, None)
    ev = Evaluation.from_dict({"step": 3, "scores": {"macro": {"f1": 1.0}}, "records": [old]})
    assert ev.records == [rec] and ev.to_dict()["records"] == [rec.to_dict()]
    # The benchmarks' slimmed records (a few keys) read too.
    assert EvalRecord.from_dict({"dataset": "a", "id": "1", "expert": 0}).expert == 0


def test_summarize_takes_records_in_either_form():
    records = _records({"a": [0, 1], "b": [1, 1]})
    typed, dicts = summarize(records, n_experts=2), summarize([r.to_dict() for r in records], n_experts=2)
    assert isinstance(typed, EvalResult) and typed.records == dicts.records == records
    assert typed.expert_load == {"a": [0.5, 0.5], "b": [0.0, 1.0]} == dicts.expert_load


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    with db_url(request.param, tmp_path) as u:
        s = Storage(u, runs_dir=tmp_path / "runs")
        yield s
        s.close()


def test_database_rows_round_trip_and_old_rows_read(storage):
    run = storage.submit(config("records"))
    records = [_rec("a", 0, 0, split="validation", answer_type="span", context="ctx", ood=True),
               _rec("b", 1, None, split="validation")]
    storage.log_evaluation(run, 5, {"macro": {"f1": 1.0}}, records)
    back = storage.routing_records(run, step=5)
    assert back == records  # everything but the latency (no column) comes back; these have none
    # A row written by an older studio: the nullable columns empty.
    storage.db.run(lambda s: s.execute(insert(RoutingRecord), [{
        "run_id": run, "step": 6, "split": "validation", "example_id": "old", "dataset": None, "domain": None,
        "ood": False, "answer_type": None, "input": "q", "context": None, "gold": [], "prediction": "p",
        "expert": None, "probs": None, "confidence": None, "entropy": None, "em": None, "f1": None,
        "correct": None, "score": None}]), write=True)
    (old,) = storage.routing_records(run)
    assert old == EvalRecord(dataset=None, id="old", domain=None, split="validation", input="q", context=None,
                             prediction="p")
    assert rows_from_records([old])[0]["question"] == "q"
