"""Run bundles (ptmoe_core.bundle): a trained tiny run round-trips exactly; every malformed bundle is
refused with one line before anything is unpacked to disk."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

from ptmoe_core.adapter import CONFIG_NAME, WEIGHTS_NAME, load_adapter
from ptmoe_core.bundle import (
    FORMAT_VERSION,
    MANIFEST,
    BundleLimits,
    BundleRecorder,
    Evaluation,
    Floor,
    bundle_from_training,
    read_bundle,
    write_bundle,
)
from ptmoe_core.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from ptmoe_core.errors import BundleError
from ptmoe_core.floor import evaluate_floor, floor_key, frozen_adapter
from ptmoe_core.models import model_dims
from ptmoe_core.trainer import train


def tiny_config(out: Path, method: str = "ptmoe") -> RunConfig:
    return RunConfig(
        name=f"tiny-{method}", output_dir=str(out),
        model=ModelConfig(name="tiny-random", device="cpu"),
        method=MethodConfig(method=method, prompt_len=4, rank=3, n_experts=2),
        data=DataConfig(train=["builtin:all?n=8&n_eval=2"], max_eval_examples=2, max_source_tokens=64,
                        max_answer_tokens=4),
        train=TrainConfig(steps=2, batch_size=2, warmup_steps=0, eval_every=1, save_every=1, max_new_tokens=3),
    )


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    """(config, bundle) of a 2-step tiny PT-MoE run with its floor."""
    out = tmp_path_factory.mktemp("bundle-run")
    cfg = tiny_config(out / "run")
    rec = BundleRecorder()
    res = train(cfg, [rec], base=tiny_base)
    floor = evaluate_floor(cfg, base=tiny_base)
    b = bundle_from_training(cfg, res, rec, provenance={"command": "test"},
                             floor=Floor(floor_key(cfg), Evaluation.from_report(floor)))
    return cfg, res, b


@pytest.fixture
def good(trained, tmp_path) -> Path:
    return write_bundle(trained[2], tmp_path / "run.ptmoe.zip")


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(path: Path, out: Path, changes: dict[str, bytes | None] | None = None) -> Path:
    """A copy of the bundle with members replaced (bytes), removed (None) or added (new names)."""
    m = members(path)
    for name, v in (changes or {}).items():
        if v is None:
            m.pop(name, None)
        else:
            m[name] = v
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in m.items():
            zf.writestr(k, v)
    return out


def with_manifest(path: Path, out: Path, edit) -> Path:
    m = json.loads(members(path)[MANIFEST])
    edit(m)
    return rezip(path, out, {MANIFEST: json.dumps(m).encode()})


def refused(path: Path, *parts: str, **kw) -> str:
    with pytest.raises(BundleError) as e:
        read_bundle(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg
    return msg


# ---- the good path ---------------------------------------------------------------------------


def test_round_trip_keeps_everything(trained, good, tiny_base, tmp_path):
    cfg, res, b = trained
    assert set(members(good)) == {MANIFEST, CONFIG_NAME, WEIGHTS_NAME}
    r = read_bundle(good)
    assert r.bundle_id == b.bundle_id and r.weights == b.weights and r.config == cfg.to_dict()
    assert r.base_model == {"name": "tiny-random", **model_dims("tiny-random")}
    assert r.checkpoints == [1, 2] and r.method == "ptmoe" and r.provenance == {"command": "test"}
    assert [e.step for e in r.evaluations] == [1, 2]
    assert r.evaluations[-1].records == b.evaluations[-1].records
    rec = r.evaluations[-1].records[0]
    assert rec.expert in (0, 1) and len(rec.probs) == 2 and isinstance(rec.prediction, str)
    assert r.metrics["loss"]["steps"] == [1, 2]
    assert r.metrics["eval/macro/f1"]["steps"] == [1, 2]
    assert r.floor is not None and r.floor.key == floor_key(cfg)
    assert {x.id for x in r.floor.evaluation.records} == {x.id for x in rec_list(r)}
    assert r.floor.evaluation.records[0].expert is None  # the frozen model has no router
    # The adapter it carries loads and is the trained one, tensor for tensor.
    d = r.write_adapter(tmp_path / "ad")
    a = load_adapter(d, base=tiny_base)
    want = load_file(str(res.adapter_dir / WEIGHTS_NAME))
    assert all(torch.equal(a.state_dict()[k], want[k]) for k in want)
    # The same run gives the same bytes (fixed member dates, sorted JSON).
    assert write_bundle(r, tmp_path / "again.ptmoe.zip").read_bytes() == good.read_bytes()


def rec_list(b):
    return b.evaluations[-1].records


def test_embedded_dims_match_the_loaded_model(tiny_base):
    c = tiny_base.model.config
    assert model_dims("tiny-random") == {"hidden_size": c.hidden_size, "vocab_size": c.vocab_size,
                                         "num_hidden_layers": c.num_hidden_layers}
    assert model_dims("no-such/model-anywhere") is None


def test_frozen_adapter_is_the_base_model(tiny_base):
    a = frozen_adapter(tiny_base)
    assert a.prompt is None and a.num_trainable() == 0 and not a.is_routed and a.n_experts == 1
    ids = torch.tensor([[1, 5, 9, 11]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        out, routing = a(batch)
        ref = tiny_base.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert routing is None and torch.allclose(out.logits, ref, atol=1e-5)


def test_floor_key_ignores_the_method_and_follows_the_eval_sets(tmp_path):
    a, b = tiny_config(tmp_path / "a", "ptmoe"), tiny_config(tmp_path / "b", "lora")
    assert floor_key(a) == floor_key(b)
    b.data.max_eval_examples = 3
    assert floor_key(a) != floor_key(b)


# ---- refusals --------------------------------------------------------------------------------


def test_truncated_or_not_a_zip(good, tmp_path):
    data = good.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "cut.zip", "truncated or corrupt zip")
    (tmp_path / "text.zip").write_text("hello")
    refused(tmp_path / "text.zip", "truncated or corrupt zip")
    refused(tmp_path / "missing.zip", "no such file")


def test_wrong_format_or_version(good, tmp_path):
    refused(with_manifest(good, tmp_path / "v.zip", lambda m: m.update(format_version=FORMAT_VERSION + 1)),
            f"format version {FORMAT_VERSION + 1}", f"reads version {FORMAT_VERSION}")
    refused(with_manifest(good, tmp_path / "f.zip", lambda m: m.update(format="something-else")),
            "not a PT-MoE run bundle")
    refused(rezip(good, tmp_path / "j.zip", {MANIFEST: b"{not json"}), "manifest.json is not valid JSON")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "adapter/../../x", "notes.txt", "ADAPTER_CONFIG.JSON"])
def test_unexpected_member_names(good, tmp_path, name):
    out = tmp_path / "extra.zip"
    rezip(good, out)
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr(name, b"x")
    refused(out, "unexpected member", repr(name))
    assert not (tmp_path.parent / "x").exists()


def test_missing_or_duplicate_member(good, tmp_path):
    refused(rezip(good, tmp_path / "m.zip", {WEIGHTS_NAME: None}), "adapter_model.safetensors missing")
    out = tmp_path / "dup.zip"
    rezip(good, out)
    with zipfile.ZipFile(out, "a") as zf, pytest.warns(UserWarning):
        zf.writestr(CONFIG_NAME, b"{}")
    refused(out, "twice")


def test_a_pickle_is_refused(good, tmp_path):
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)
    pickled = buf.getvalue()
    out = tmp_path / "bin.zip"
    rezip(good, out)
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("adapter_model.bin", pickled)
    refused(out, "pickle-format file", "safetensors only")
    # Pickled bytes under the safetensors name (checksum updated, so only the format can refuse it).
    for name, data in (("torchsave", pickled), ("raw-pickle", b"\x80\x04\x95" + b"\x00" * 40)):
        p = rezip(good, tmp_path / f"{name}.zip", {WEIGHTS_NAME: data})
        p = with_manifest(p, tmp_path / f"{name}2.zip",
                          lambda m, d=data: m["files"][WEIGHTS_NAME].update(sha256=hashlib.sha256(d).hexdigest()))
        refused(p, "pickled data", "not safetensors")


def test_altered_or_non_finite_weights(trained, good, tmp_path):
    sd = load_file(str(trained[1].adapter_dir / WEIGHTS_NAME))
    sd = {k: v.clone() for k, v in sd.items()}
    refused(rezip(good, tmp_path / "alt.zip", {WEIGHTS_NAME: save(sd)}), "checksum")
    first = sorted(sd)[0]
    sd[first].view(-1)[0] = float("nan")
    data = save(sd)
    p = rezip(good, tmp_path / "nan.zip", {WEIGHTS_NAME: data})
    p = with_manifest(p, tmp_path / "nan2.zip",
                      lambda m: m["files"][WEIGHTS_NAME].update(sha256=hashlib.sha256(data).hexdigest()))
    refused(p, "contains NaN or infinite values")


def _set_base(good: Path, out: Path, **base) -> Path:
    m = members(good)
    man, cfg = json.loads(m[MANIFEST]), json.loads(m[CONFIG_NAME])
    man["base_model"].update(base)
    cfg["base_model"].update(base)
    if "name" in base:
        man["run"]["config"]["model"]["name"] = base["name"]
    cfg_bytes = json.dumps(cfg).encode()
    man["files"][CONFIG_NAME]["sha256"] = hashlib.sha256(cfg_bytes).hexdigest()
    return rezip(good, out, {MANIFEST: json.dumps(man).encode(), CONFIG_NAME: cfg_bytes})


def test_a_bundle_for_another_base_model(good, tmp_path):
    refused(_set_base(good, tmp_path / "a.zip", name="meta-llama/Llama-3.2-1B", hidden_size=2048),
            "'meta-llama/Llama-3.2-1B'", "cannot load")
    refused(_set_base(good, tmp_path / "b.zip", hidden_size=2048), "another 'tiny-random'", "hidden_size 2048 (here 64)")
    refused(good, "is for base model 'tiny-random', not 'smollm2-135m'", expect_model="smollm2-135m")
    assert read_bundle(good, expect_model="tiny-random").base_model["name"] == "tiny-random"


def _patch_sizes(data: bytes, member: str, size: int, local: bool = True) -> bytes:
    """Rewrite the unpacked size that the zip's central directory (and local header) give ``member``."""
    b = bytearray(data)
    name = member.encode()
    cd = 0
    while (cd := b.find(b"PK\x01\x02", cd)) >= 0:
        n = struct.unpack_from("<H", b, cd + 28)[0]
        if bytes(b[cd + 46 : cd + 46 + n]) == name:
            struct.pack_into("<I", b, cd + 24, size)
            if local:
                off = struct.unpack_from("<I", b, cd + 42)[0]
                struct.pack_into("<I", b, off + 22, size)
        cd += 4
    return bytes(b)


def test_a_1gb_member_is_refused_from_the_directory(good, tmp_path):
    p = tmp_path / "huge.zip"
    p.write_bytes(_patch_sizes(good.read_bytes(), WEIGHTS_NAME, 1 << 30))
    refused(p, "would unpack to 1.0 GB", "adapter_model.safetensors")


def test_zip_bombs(good, tmp_path):
    """A real bomb (2 MB of zeros in ~2 KB) against small limits, and one whose directory lies."""
    limits = BundleLimits(manifest_bytes=1 << 20, total_bytes=4 << 20)
    bomb = rezip(good, tmp_path / "bomb.zip", {MANIFEST: b" " * (2 << 20)})
    assert bomb.stat().st_size < 200_000
    refused(bomb, "would unpack to 2.0 MB", limits=limits)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(_patch_sizes(bomb.read_bytes(), MANIFEST, 1000, local=False))
    refused(liar, limits=limits)  # the bounded read stops at the claimed size; the CRC then fails


def test_extra_adapter_files_travel_verbatim(trained, tmp_path, monkeypatch):
    """Files named in ADAPTER_EXTRAS (e.g. a PEFT-format config beside the studio's record) are carried
    when the adapter folder has them, checksummed, and refused when they are not JSON."""
    import shutil

    import ptmoe_core.bundle as bundle_mod
    from ptmoe_core.bundle import bundle_from_adapter_dir

    monkeypatch.setattr(bundle_mod, "ADAPTER_EXTRAS", ("extra_config.json",))
    cfg, res, _ = trained
    ad = tmp_path / "ad"
    shutil.copytree(res.adapter_dir, ad)
    (ad / "extra_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    b = bundle_from_adapter_dir(ad, name="x", config=cfg)
    p = write_bundle(b, tmp_path / "x.ptmoe.zip")
    assert "extra_config.json" in members(p)
    r = read_bundle(p)
    assert r.extras == {"extra_config.json": b'{"peft_type": "PROMPT_TUNING"}'}
    assert (r.write_adapter(tmp_path / "out") / "extra_config.json").read_bytes() == r.extras["extra_config.json"]
    bad = rezip(p, tmp_path / "bad.zip", {"extra_config.json": b"not json"})
    refused(bad, "checksum")
    bad = with_manifest(bad, tmp_path / "bad2.zip", lambda m: m["files"]["extra_config.json"].update(
        sha256=hashlib.sha256(b"not json").hexdigest()))
    refused(bad, "extra_config.json is not valid JSON")
