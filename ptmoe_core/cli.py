"""``python -m ptmoe_core``: train, generate, push, params, data, evaluate.

User errors print one line and exit with status 2; no tracebacks for bad input (an unexpected failure
prints one line too and exits with 1; ``PTMOE_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from .callbacks import EvalReport, StepMetrics, TrainerCallback
from .config import MethodConfig, RunConfig, read_config_file
from .errors import ConfigError, PTMoEError
from .methods import DEFAULT, NAMES
from .params import LLAMA_32_1B, ModelShape, count_params
from .presets import DEFAULT_PRESET, PRESETS, differences, paper_method


class TqdmProgress(TrainerCallback):
    """A progress bar with loss, learning rate, tokens/s and the batch's expert load."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, total_steps, start_step, info):
        from tqdm.auto import tqdm

        print(f"trainable parameters: {info['trainable_params']:,} | train examples: {info['n_train_examples']} | "
              f"device: {info['device']} ({info['dtype']}) | lr {info['lr']:g}", file=sys.stderr)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def on_step(self, m: StepMetrics):
        post = {"loss": f"{m.loss:.3f}", "lr": f"{m.lr:.2e}", "tok/s": f"{m.tokens_per_s:.0f}"}
        if m.expert_load:
            post["load"] = "/".join(f"{x:.2f}" for x in m.expert_load)
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_evaluate(self, report: EvalReport):
        scores = ", ".join(f"{k}: " + " ".join(f"{n}={v:.3g}" for n, v in s.items() if n != "n")
                           for k, s in report.scores.items())
        self.bar.write(f"[eval @ step {report.step}] {scores}")

    def on_checkpoint(self, step, path):
        self.bar.write(f"[checkpoint] {path}")

    def on_train_end(self, status, step, adapter_dir):
        if self.bar is not None:
            self.bar.close()


def cmd_train(args) -> int:
    from .trainer import train

    cfg = continued_config(args) if args.resume else train_config(args)
    from .trackers import installed, missing_note

    gone = [t for t in cfg.train.report_to if not installed()[t]]
    if gone:
        raise ConfigError("train.report_to", f"{', '.join(gone)} not installed. {missing_note()}")
    print(preset_note(cfg))  # information, on stdout: stderr carries only errors
    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: stop at the next step and save; second: abort
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    signal.signal(signal.SIGINT, on_sigint)
    res = train(cfg, callbacks=[TqdmProgress()], should_stop=lambda: stop["requested"], resume=not args.no_resume)
    print(f"{res.status} at step {res.step} in {res.elapsed_s:.0f}s; final loss {res.final_loss:.4f}"
          if res.final_loss is not None else f"{res.status} at step {res.step}")
    if res.adapter_dir:
        print(f"adapter: {res.adapter_dir}")
    return 0


def continued_config(args) -> RunConfig:
    """``--resume DIR``: the run folder's own configuration, ``--more-steps`` past its last checkpoint,
    with only the changes the engine allows on resuming (``ptmoe_core.resume``)."""
    from .resume import continue_config, run_folder_config

    if args.config or args.preset or args.no_resume or args.output_dir:
        raise ConfigError("--resume", "continues a run folder as it was: drop --config, --preset, --output-dir "
                                      "and --no-resume (change steps with --more-steps, the rest with --set)")
    cfg, step = run_folder_config(args.resume)
    sets = [*(args.set or []), *([f"train.report_to={args.report_to}"] if args.report_to is not None else [])]
    return continue_config(cfg, step, args.more_steps, sets)


def train_config(args) -> RunConfig:
    """The config file's keys as written (not yet laid over a preset), then ``--set``, then ``--preset``,
    so the chosen preset fills every method key that neither sets explicitly."""
    d = read_config_file(args.config) if args.config else {}
    if not isinstance(d, dict):
        raise ConfigError("config", f"expected a mapping, got {type(d).__name__}")
    if args.output_dir:
        d["output_dir"] = args.output_dir
    sets = [*(args.set or []), *([f"method.preset={args.preset}"] if args.preset else []),
            *([f"train.report_to={args.report_to}"] if args.report_to is not None else [])]
    return RunConfig.from_overrides(d, sets)


def preset_note(cfg: RunConfig) -> str:
    """One line: the preset and the keys set explicitly to something else."""
    m = cfg.method
    diff = differences(m.preset, m.method, asdict(m))
    own = "; set otherwise: " + ", ".join(f"{k}={v!r} (preset {p!r})" for k, (v, p) in diff.items()) if diff else ""
    return f"method preset: {m.preset}{own}"


def cmd_generate(args) -> int:
    from . import api

    adapter = api.load(args.adapter)
    fmt = api.format_of(adapter, max_source_tokens=args.max_source_tokens, instruction=args.instruction)
    kw = dict(context=args.context or "", answer_type=args.answer_type, max_new_tokens=args.max_new_tokens,
              format_cfg=fmt)
    if args.all_experts and adapter.is_routed:  # every expert forced, in one batched pass
        _, forced = api.answer_all_experts(adapter, args.input, **kw)
        answers = {e: [f[e] for f in forced] for e in range(adapter.n_experts)}
    else:
        e = 0 if args.all_experts else args.force_expert
        answers = {e: api.answer(adapter, args.input, force_expert=e, **kw)}
    rows = [{"input": q, "forced": e, **asdict(g)} for e, gens in answers.items()
            for q, g in zip(args.input, gens, strict=True)]
    if args.json:
        for r in rows:
            r.pop("router_input", None)
            print(json.dumps(r))
        return 0
    for r in rows:
        route = "" if r["expert"] is None else (
            f"expert {r['expert']}{' (forced)' if r['forced'] is not None else ''} | p = "
            + " ".join(f"{p:.3f}" for p in r["probs"]) + f" | confidence {r['confidence']:.3f} | ")
        print(f"> {r['input']}\n  {route}{r['latency_s'] * 1000:.0f} ms\n  {r['text']}")
    return 0


def cmd_push(args) -> int:
    """Upload an adapter folder to the Hub with huggingface_hub's own token (HF_TOKEN or the saved login)."""
    from .hub import push

    print(f"pushed {args.adapter} to {args.repo}: {push(args.adapter, args.repo, private=args.private)}")
    return 0


def cmd_params(args) -> int:
    """Each method as the paper's comparison configures it (``presets.paper_method``: SMoP at T=20,
    DPT at R=39, ...), with the shape flags given laid over it."""
    shape = _shape_from_args(args)
    given = {k: v for k, v in (("prompt_len", args.prompt_len), ("n_experts", args.experts), ("rank", args.rank),
                               ("lora_r", args.lora_r)) if v is not None}
    if args.no_router_bias:
        given["router_bias"] = False
    methods = NAMES if args.method == "all" else [args.method]
    for m in methods:
        paper, over = paper_method(m), dict(given)
        if "rank" in paper and args.rank is None and args.prompt_len is not None:
            over["rank"] = min(paper["rank"], args.prompt_len)  # the paper's rank, at most the given T
        if args.preset:  # another preset's open choices (e.g. the router bias) at the paper's shape
            over["preset"] = args.preset
        cfg = MethodConfig.from_dict({**paper, **over})
        cfg.validate()
        n = count_params(cfg, shape)
        print(f"{m}\t{n}" if len(methods) > 1 else n)
    return 0


def _shape_from_args(args) -> ModelShape:
    if args.model:
        from transformers import AutoConfig

        from .models import EMBEDDED, TINY, embedded_cache_dir, tiny_config

        if args.model == TINY:
            return ModelShape.from_hf_config(tiny_config(49152))
        name = str(embedded_cache_dir()) if args.model == EMBEDDED else args.model
        if args.model == EMBEDDED and not Path(name).is_dir():
            from .models import load_base_model

            load_base_model(name=EMBEDDED)  # converts once
        try:
            return ModelShape.from_hf_config(AutoConfig.from_pretrained(name))
        except Exception as e:
            raise PTMoEError(f"cannot read the config of model {args.model!r}: {str(e).splitlines()[0]}") from e
    ref = LLAMA_32_1B
    hidden = args.hidden or ref.hidden
    return ModelShape(hidden=hidden, layers=args.layers or ref.layers, heads=args.heads or ref.heads,
                      kv_heads=args.kv_heads or ref.kv_heads, intermediate=args.intermediate or 4 * hidden)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ptmoe_core", description="PT-MoE engine: train, generate, inspect.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an adapter from a YAML/JSON config")
    t.add_argument("--config", help="YAML or JSON RunConfig (defaults: PT-MoE on smollm2-135m, builtin:all)")
    t.add_argument("--output-dir", help="override output_dir")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. train.steps=50")
    t.add_argument("--preset", choices=PRESETS, default=None,
                   help=f"method preset, overriding the config file's method.preset (itself {DEFAULT_PRESET} "
                        "when absent): studio = what measured best here (docs/routing.md); paper = PT-MoE exactly "
                        "as the paper describes it. Method keys the file or --set give explicitly still win.")
    t.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in output_dir")
    t.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR (its run_config.json) from its last checkpoint, also a "
                        "finished one, for --more-steps more; only steps, eval_every, save_every, report_to "
                        "and name may change (--set)")
    t.add_argument("--more-steps", type=int, default=0, metavar="N", help="with --resume: steps to add (default 0: finish the steps the run had left)")
    t.add_argument("--report-to", metavar="TRACKERS", default=None,
                   help="comma-separated experiment trackers: tensorboard, mlflow, trackio (default: none; "
                        "overrides train.report_to)")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("generate", help="routed greedy generation through an adapter")
    g.add_argument("--adapter", required=True, help="adapter directory, or a Hub repo id (user/name) when online")
    g.add_argument("--input", required=True, action="append", help="question / input text (repeatable)")
    g.add_argument("--context", default="", help="passage for extractive QA")
    g.add_argument("--answer-type", default="text", choices=["span", "number", "text"])
    g.add_argument("--instruction", default=None, help="default: the adapter's training instruction")
    g.add_argument("--max-new-tokens", type=int, default=48)
    g.add_argument("--max-source-tokens", type=int, default=None, help="default: the adapter's training format")
    grp = g.add_mutually_exclusive_group()
    grp.add_argument("--force-expert", type=int, default=None, help="route every input to this expert, as if the router had chosen it")
    grp.add_argument("--all-experts", action="store_true", help="answer once per expert")
    g.add_argument("--json", action="store_true", help="one JSON object per line")
    g.set_defaults(func=cmd_generate)

    h = sub.add_parser("push", help="upload an adapter folder to a Hugging Face Hub model repository")
    h.add_argument("--adapter", required=True, help="adapter directory (e.g. runs/NAME/adapter)")
    h.add_argument("--repo", required=True, metavar="USER/NAME", help="model repository (created if missing)")
    h.add_argument("--private", action="store_true", help="create the repository private")
    h.set_defaults(func=cmd_push)

    c = sub.add_parser("params", help="trainable-parameter count of a method, as the paper's comparison "
                                      "configures it unless a shape flag says otherwise")
    c.add_argument("--method", default=DEFAULT, choices=[*NAMES, "all"])
    c.add_argument("--hidden", type=int, help="H (default 2048, the paper's Llama-3.2-1B)")
    c.add_argument("--prompt-len", type=int, help="T (default: the paper's: 40, SMoP 20 per expert)")
    c.add_argument("--experts", type=int, help="N (default: the paper's 2)")
    c.add_argument("--rank", type=int, help="R (default: the paper's: PT-MoE 36, DPT 39; at most T)")
    c.add_argument("--lora-r", type=int, help="LoRA rank (default: the paper's 1)")
    c.add_argument("--layers", type=int, help="LoRA: number of layers (default 16)")
    c.add_argument("--heads", type=int, help="LoRA: attention heads (default 32)")
    c.add_argument("--kv-heads", type=int, help="LoRA: key/value heads (default 8)")
    c.add_argument("--intermediate", type=int, help="LoRA on MLP layers: intermediate size")
    c.add_argument("--model", help="take the shape from a model (smollm2-135m, tiny-random, Hub id, path)")
    c.add_argument("--no-router-bias", action="store_true")
    c.add_argument("--preset", choices=PRESETS, default=None,
                   help="lay another preset's open choices over each method's paper configuration (default: "
                        "the paper's own; the presets share shapes, so only e.g. SMoP's router bias can differ)")
    c.set_defaults(func=cmd_params)

    try:
        from .data.cli import register
    except ImportError:  # data layer not installed in a minimal checkout
        register = None
    if register is not None:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PTMoEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug rather than bad input: still one line; PTMOE_DEBUG=1 shows the traceback
        if os.environ.get("PTMOE_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"error: unexpected {type(e).__name__}: {first} (set PTMOE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
