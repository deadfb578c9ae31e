"""The model card: Hub metadata, the method's settings, parameter count, data, scores, routing, loading."""

from __future__ import annotations

import math
import re
from dataclasses import asdict

import yaml

from ptmoe_core.callbacks import EvalReport
from ptmoe_core.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from ptmoe_core.model_card import TrainingSummary, render_card


def record(method: str = "ptmoe", base: str = "smollm2-135m", params: int = 80_706) -> dict:
    return {"format_version": 2, "method": asdict(MethodConfig(method=method)), "trainable_params": params,
            "base_model": {"name": base, "hidden_size": 576}, "meta": {"init_text": "Solve it.", "seed": 0}}


def front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def evaluation() -> EvalReport:
    # 6 arithmetic inputs: 5 to expert 0, 1 to expert 1; 4 SQuAD inputs: all to expert 1.
    recs = ([{"dataset": "arith", "domain": "builtin-arith", "expert": 0, "confidence": 0.8}] * 5
            + [{"dataset": "arith", "domain": "builtin-arith", "expert": 1, "confidence": 0.6}]
            + [{"dataset": "squad", "domain": "squad", "expert": 1, "confidence": 0.7}] * 4)
    scores = {"arith": {"n": 6, "em": 0.5, "f1": 0.5, "accuracy": 0.5},
              "squad": {"n": 4, "em": 0.25, "f1": 0.4375, "accuracy": 0.25},
              "macro": {"n": 10, "em": 0.375, "f1": 0.46875, "accuracy": 0.375}}
    return EvalReport(step=40, scores=scores, records=recs)


def run_config(name: str = "arith-vs-squad") -> RunConfig:
    return RunConfig(name=name, method=MethodConfig(method="ptmoe"),
                     data=DataConfig(train=["builtin:arith", "squad:/data/squad.json@200"], eval=["builtin:arith-ood"]),
                     train=TrainConfig(steps=40, batch_size=4, lr=0.01, seed=3))


def test_card_names_the_right_numbers():
    card = render_card(record(), TrainingSummary.from_run(run_config(), evaluation(), n_train_examples=321))
    meta = front(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert meta["library_name"] == "ptmoe-studio" and "mixture-of-experts" in meta["tags"]
    assert "base_model:adapter:HuggingFaceTB/SmolLM2-135M-Instruct" in meta["tags"]
    assert "**80,706 trainable parameters**" in card
    assert "| `n_experts` | `2` |" in card and "| `rank` | `36` |" in card and "lora_r" not in card
    assert "| `init_text` | `Solve it.` |" in card  # the text actually used when the config left it open
    assert "`builtin:arith`, `squad:/data/squad.json@200`" in card and "`builtin:arith-ood`" in card
    assert "| training examples | 321 |" in card and "40 × batch 4" in card
    assert "| arith | 6 | 50.0 | 50.0 | 50.0 |" in card and "| squad | 4 | 25.0 | 43.8 | 25.0 |" in card
    assert "| **macro** | 10 | 37.5 | 46.9 | 37.5 |" in card and "at step 40" in card
    # Load: expert 0 got 5 of 10 inputs, expert 1 the other 5; per set 5/6 vs 1/6 and 0 vs 1.
    assert "expert 0: 50.0 %, expert 1: 50.0 %" in card
    assert "| arith | 83.3 % | 16.7 % |" in card and "| squad | 0.0 % | 100.0 % |" in card
    # I(domain; expert) = H(expert) - H(expert | domain) = 1 - 0.6 * H(5/6, 1/6), computed here independently.
    h = -(5 / 6 * math.log2(5 / 6) + 1 / 6 * math.log2(1 / 6))
    assert f"I(domain; expert) = **{1 - 0.6 * h:.3f} bits** over 2 domain(s)" in card
    assert "Mean router confidence 0.740." in card  # (5 × 0.8 + 0.6 + 4 × 0.7) / 10
    assert 'ptmoe_core.load("path/to/this/adapter")' in card and "PeftModel" not in card


def test_peft_methods_get_peft_metadata_and_a_peft_snippet():
    card = render_card(record("lora", params=4_608), TrainingSummary.from_run(
        RunConfig(name="l", method=MethodConfig(method="lora")), None, None))
    meta = front(card)
    assert meta["library_name"] == "peft" and "lora" in meta["tags"] and "peft" in meta["tags"]
    assert "PeftModel.from_pretrained(base" in card and "AutoModelForCausalLM.from_pretrained('HuggingFaceTB/" in card
    assert "| `lora_r` | `1` |" in card and "prompt_len" not in card and "## Routing" not in card
    assert "Not evaluated." in card and "| training examples | not recorded |" in card


def test_unknown_licence_and_local_base_are_not_invented(tmp_path):
    card = render_card(record("pt", base=str(tmp_path)))
    meta = front(card)
    assert "license" not in meta and "base_model" not in meta  # a local folder has no Hub id or known licence
    assert "n_experts" not in card and "rank" not in card  # PT has neither
    assert "Saved outside a training run" in card


def test_user_text_is_escaped():
    evil = "<img src=x onerror=alert(1)> | `x`"
    cfg = run_config(name=evil)
    cfg.data.train = [f"jsonl:/tmp/{evil}.jsonl"]
    ev = evaluation()
    ev.scores = {evil: ev.scores["arith"]}
    card = render_card(record(), TrainingSummary.from_run(cfg, ev, 6))
    # Outside code spans (which Markdown never reads as HTML, and which hold no backtick to close them)
    # the text is HTML-escaped.
    prose = re.sub(r"`[^`\n]*`", "", card.split("```")[0])
    assert "<img" not in prose and "&lt;img" in prose
    assert "`jsonl:/tmp/<img src=x onerror=alert(1)> \\| 'x'.jsonl`" in card
    for line in card.splitlines():
        if line.startswith("| ") and "img" in line:  # table rows keep their column count
            assert len(re.findall(r"(?<!\\)\|", line)) in (3, 6), line  # 2 or 5 columns


def test_final_adapter_of_a_run_carries_its_card(tiny_base, tmp_path):
    from ptmoe_core.trainer import train

    rows = [{"id": str(i), "domain": "toy", "question": f"What is {i} plus 2?", "context": "", "answers": [str(i + 2)],
             "answer_type": "number", "split": "train", "ood": False} for i in range(8)]
    cfg = RunConfig(name="card-run", output_dir=str(tmp_path / "run"), model=ModelConfig(name="tiny-random", device="cpu"),
                    method=MethodConfig(method="ptmoe", prompt_len=4, rank=3, n_experts=2),
                    data=DataConfig(train=["builtin:toy"], max_source_tokens=64, max_answer_tokens=3),
                    train=TrainConfig(steps=2, batch_size=2, warmup_steps=0, max_new_tokens=2))
    res = train(cfg, base=tiny_base, data=(rows, {"toy": rows[:4]}))
    card = (res.adapter_dir / "README.md").read_text()
    macro = res.evaluation.scores["macro"]
    assert f"| **macro** | 4 | {100 * macro['em']:.1f} | {100 * macro['f1']:.1f} |" in card
    assert f"**{res.trainable_params:,} trainable parameters**" in card and "| training examples | 8 |" in card
    assert "Share of the 4 evaluation inputs" in card and "I(domain; expert) = **0.000 bits** over 1 domain" in card
