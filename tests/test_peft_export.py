"""Adapters that travel: PT and LoRA folders are PEFT adapters (same logits in PEFT as in the studio),
PEFT's own folders load in the studio, format-1 folders still load, and mismatches are refused clearly."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from ptmoe_core import api
from ptmoe_core.adapter import (
    CONFIG_NAME,
    PEFT_CONFIG_NAME,
    WEIGHTS_NAME,
    Adapter,
    build_adapter,
    load_adapter,
    read_adapter_config,
    save_adapter,
)
from ptmoe_core.config import MethodConfig
from ptmoe_core.data.formatting import FormatConfig, collate, encode_example
from ptmoe_core.errors import AdapterError
from ptmoe_core.models import BaseModel

QUESTIONS = ["What is 12 plus 30?", "How many grams is 3 kilograms? Answer with the number only."]


def trained_like(base: BaseModel, method: str, seed: int = 1, init: str = "text") -> Adapter:
    """An adapter moved away from its init, so a fresh one (or a mis-read file) would differ."""
    cfg = MethodConfig(method=method, prompt_len=6, rank=4, n_experts=3, lora_r=2, lora_alpha=4.0, init=init)
    a = build_adapter(base, cfg, init_text="Answer the question.", seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in a.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return a.eval()


def right_padded(base: BaseModel) -> dict[str, torch.Tensor]:
    """Chat-templated inputs of different lengths, padded on the right (how PEFT batches are padded)."""
    enc = [encode_example(base.tokenizer, {"question": q, "context": "", "answers": [""], "answer_type": "text"},
                          FormatConfig(), with_answer=False) for q in QUESTIONS]
    b = collate([{k: e[k] for k in ("input_ids", "attention_mask", "router_mask")} for e in enc], base.pad_id, "right")
    assert (b["attention_mask"] == 0).any(), "the batch must contain padding to test it"
    return b


def input_logits(studio: Adapter, peft_model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' logits on the attended input tokens (the soft prompt's own positions dropped)."""
    T = studio.cfg.prompt_len if studio.prompt is not None else 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = studio(batch)[0].logits[:, T:]
        theirs = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, T:]
    keep = batch["attention_mask"].bool()
    return ours[keep], theirs[keep]


def peft_round_trip(base: BaseModel, method: str, folder) -> None:
    from peft import PeftConfig, PeftModel

    a = trained_like(base, method)
    api.save(a, folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pc = PeftConfig.from_pretrained(str(folder))
    assert not [w for w in caught if "Unexpected keyword" in str(w.message)], "PEFT must read its config cleanly"
    assert pc.peft_type == {"pt": "PROMPT_TUNING", "lora": "LORA"}[method]
    studio = load_adapter(folder, base=base)  # the studio's own loader, from the same files
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base.model), str(folder)).eval()
    ours, theirs = input_logits(studio, peft_model, right_padded(base))
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), f"max diff {(ours - theirs).abs().max():.2e}"
    # A fresh adapter differs: the comparison is sensitive to the stored tensors.
    fresh = build_adapter(base, a.cfg, init_text="Answer the question.", seed=7).eval()
    other, _ = input_logits(fresh, peft_model, right_padded(base))
    assert not torch.allclose(other, theirs, atol=1e-3)


@pytest.mark.parametrize("method", ["pt", "lora"])
def test_peft_loads_studio_pt_and_lora_with_the_same_logits(tiny_base, tmp_path, method):
    peft_round_trip(tiny_base, method, tmp_path / method)
    cfg = json.loads((tmp_path / method / PEFT_CONFIG_NAME).read_text())
    assert cfg["base_model_name_or_path"] is None  # tiny-random has no Hub id; nothing is invented
    assert (tmp_path / method / "README.md").is_file()


def test_peft_prompt_tuning_config_fields(tiny_base, tmp_path):
    save_adapter(trained_like(tiny_base, "pt"), tmp_path / "pt")
    cfg = json.loads((tmp_path / "pt" / PEFT_CONFIG_NAME).read_text())
    assert cfg["num_virtual_tokens"] == 6 and cfg["token_dim"] == 64 and cfg["num_transformer_submodules"] == 1
    assert cfg["task_type"] == "CAUSAL_LM" and cfg["inference_mode"] is True
    assert cfg["prompt_tuning_init"] == "TEXT" and cfg["prompt_tuning_init_text"] == "Answer the question."
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "pt" / WEIGHTS_NAME))) == {"prompt_embeddings"}  # PEFT's key


@pytest.mark.parametrize("method", ["ptmoe", "smop", "dpt"])
def test_methods_without_a_peft_type_keep_the_studio_format(tiny_base, tmp_path, method):
    d = api.save(trained_like(tiny_base, method), tmp_path / method)
    assert sorted(p.name for p in d.iterdir()) == sorted(["README.md", CONFIG_NAME, WEIGHTS_NAME])
    assert json.loads((d / CONFIG_NAME).read_text())["format_version"] == 2


def test_studio_loads_a_folder_saved_by_peft(tiny_base, tmp_path):
    """The other direction: PEFT's own save_pretrained output (no studio record) runs in the studio."""
    from peft import PromptTuningConfig, get_peft_model

    pm = get_peft_model(copy.deepcopy(tiny_base.model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with torch.no_grad():
        pm.prompt_encoder["default"].embedding.weight.normal_(0, 0.05)
    pm.save_pretrained(str(tmp_path / "peft"))
    pm.eval()
    studio = load_adapter(tmp_path / "peft", base=tiny_base)
    assert studio.cfg.method == "pt" and studio.cfg.prompt_len == 5
    assert read_adapter_config(tmp_path / "peft")["library"] == "peft"
    ours, theirs = input_logits(studio, pm, right_padded(tiny_base))
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_peft_settings_the_studio_cannot_run_are_refused(tiny_base, tmp_path):
    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(copy.deepcopy(tiny_base.model),
                        LoraConfig(r=2, target_modules=["q_proj"], use_dora=True, task_type="CAUSAL_LM"))
    pm.save_pretrained(str(tmp_path / "dora"))
    with pytest.raises(AdapterError, match=r"does not reproduce \(use_dora=True\).*PeftModel.from_pretrained"):
        load_adapter(tmp_path / "dora", base=tiny_base)


def test_edited_peft_config_that_disagrees_is_refused(tiny_base, tmp_path):
    d = save_adapter(trained_like(tiny_base, "lora"), tmp_path / "lora")
    cfg = json.loads((d / PEFT_CONFIG_NAME).read_text())
    cfg["r"] = 8
    (d / PEFT_CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match=r"PEFT's r=8 disagrees with the studio's lora_r=2"):
        load_adapter(d, base=tiny_base)
    other = save_adapter(trained_like(tiny_base, "ptmoe"), tmp_path / "ptmoe")
    (other / PEFT_CONFIG_NAME).write_text(json.dumps(cfg))  # PEFT's LoRA config dropped into a PT-MoE folder
    with pytest.raises(AdapterError, match=r"PEFT type 'LORA' but the studio's record says method 'ptmoe'"):
        load_adapter(other, base=tiny_base)


def _write_format_1(a: Adapter, d) -> None:
    """A folder exactly as the format-1 studio wrote it: the record in adapter_config.json."""
    from safetensors.torch import save_file

    d.mkdir(parents=True)
    save_file(a.state_dict(), str(d / WEIGHTS_NAME), metadata={"format": "pt", "method": a.cfg.method})
    c = a.base.model.config
    record = {
        "format_version": 1, "library": "ptmoe_core", "method": a.cfg.__dict__,
        "base_model": {"name": a.base.name, "hidden_size": a.base.hidden_size, "vocab_size": c.vocab_size,
                       "num_hidden_layers": c.num_hidden_layers},
        "trainable_params": a.num_trainable(), "meta": {"init_text": "Answer the question.", "seed": 1},
        "step": 40, "run_name": "old-run",
    }
    (d / PEFT_CONFIG_NAME).write_text(json.dumps(record, indent=2))


@pytest.mark.parametrize("method", ["ptmoe", "pt"])
def test_format_1_folders_still_load_and_upgrade(tiny_base, tmp_path, method):
    a = trained_like(tiny_base, method)
    _write_format_1(a, tmp_path / "v1")
    old = load_adapter(tmp_path / "v1", base=tiny_base)
    assert old.meta["step"] == 40 and old.meta["run_name"] == "old-run"
    bt = right_padded(tiny_base)
    with torch.no_grad():
        assert torch.equal(a(bt)[0].logits, old(bt)[0].logits)
    new = api.save(old, tmp_path / "v2")  # the upgrade path the README names
    record = json.loads((new / CONFIG_NAME).read_text())
    assert record["format_version"] == 2 and record["step"] == 40 and record["meta"]["seed"] == 1
    assert (new / PEFT_CONFIG_NAME).is_file() == (method == "pt")
    with torch.no_grad():
        assert torch.equal(load_adapter(new, base=tiny_base)(bt)[0].logits, old(bt)[0].logits)
    api.save(old, tmp_path / "v1")  # in place: the format-1 record gives way to PEFT's config, or goes
    assert json.loads((tmp_path / "v1" / CONFIG_NAME).read_text())["format_version"] == 2
    assert (tmp_path / "v1" / PEFT_CONFIG_NAME).is_file() == (method == "pt")
    if method == "pt":
        assert json.loads((tmp_path / "v1" / PEFT_CONFIG_NAME).read_text())["peft_type"] == "PROMPT_TUNING"


def test_newer_format_and_foreign_configs_say_what_to_do(tiny_base, tmp_path):
    d = save_adapter(trained_like(tiny_base, "ptmoe"), tmp_path / "ad")
    record = json.loads((d / CONFIG_NAME).read_text())
    (d / CONFIG_NAME).write_text(json.dumps({**record, "format_version": 99}))
    with pytest.raises(AdapterError, match="format version 99; this build reads up to 2: upgrade ptmoe_core"):
        load_adapter(d, base=tiny_base)
    (d / CONFIG_NAME).unlink()
    with pytest.raises(AdapterError, match="neither ptmoe_config.json nor adapter_config.json"):
        load_adapter(d, base=tiny_base)
    (d / PEFT_CONFIG_NAME).write_text(json.dumps({"hello": 1}))
    with pytest.raises(AdapterError, match="neither a PEFT config"):
        load_adapter(d, base=tiny_base)
    (d / PEFT_CONFIG_NAME).write_text(json.dumps({"peft_type": "IA3", "task_type": "CAUSAL_LM"}))
    with pytest.raises(AdapterError, match="PEFT type 'IA3' is not one the studio runs"):
        load_adapter(d, base=tiny_base)


def test_hub_repo_id_offline_names_the_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hub cache
    with pytest.raises(AdapterError, match=r"adapter 'someone/ptmoe-adapter' is not a local folder .*offline"):
        api.load("someone/ptmoe-adapter", local_files_only=True)
    with pytest.raises(AdapterError, match="adapter directory not found"):
        api.load(str(tmp_path / "missing" / "adapter"))


@pytest.mark.integration
@pytest.mark.parametrize("method", ["pt", "lora"])
def test_peft_round_trip_on_smollm2(smol_base, tmp_path, method):
    peft_round_trip(smol_base, method, tmp_path / method)
    cfg = json.loads((tmp_path / method / PEFT_CONFIG_NAME).read_text())
    assert cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = (tmp_path / method / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "license: apache-2.0" in card
