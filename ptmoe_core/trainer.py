"""The trainer: AdamW + warm-up/decay, accumulation, clipping, evaluation, checkpoints, resume, cancel.

Reproducibility is by construction rather than by saved RNG state: the examples of optimizer step
``s`` are a pure function of (seed, s) and the global RNG (router noise, LoRA dropout) is reseeded
from (seed, s) at every step. A run resumed from the checkpoint of step s therefore continues
exactly as the uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import get_scheduler

from .adapter import Adapter, build_adapter, save_adapter
from .callbacks import EvalReport, StepMetrics, TrainerCallback
from .config import RunConfig
from .errors import ConfigError, DataError, PTMoEError
from .methods.routing import ORTHOGONAL
from .model_card import TrainingSummary, write_model_card
from .models import BaseModel, load_base_model
from .router import RoutingInfo, anchor_loss, balance_loss, input_groups, masked_mean, mutual_information
from .routing_summary import routing_counts

CHECKPOINTS = "checkpoints"
FINAL_ADAPTER = "adapter"
STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
# Changing these does not change the optimisation trajectory, so a resume may change them.
# The trackers a run reports to do not touch the optimisation either.
RESUMABLE_CHANGES = {("train", "steps"), ("train", "eval_every"), ("train", "save_every"), ("train", "report_to"),
                     ("name",)}


@dataclass
class TrainResult:
    status: str  # "finished" | "cancelled"
    step: int
    adapter_dir: Path | None
    trainable_params: int
    final_loss: float | None = None
    evaluation: EvalReport | None = None
    elapsed_s: float = 0.0
    history: list[StepMetrics] = field(default_factory=list)


def train(
    cfg: RunConfig,
    callbacks: Sequence[TrainerCallback] = (),
    should_stop: Callable[[], bool] = lambda: False,
    resume: bool = True,
    base: BaseModel | None = None,
    data: tuple[Any, dict[str, Any]] | None = None,
) -> TrainResult:
    """Train ``cfg``; ``data`` = (train examples, {name: eval examples}) overrides ``cfg.data`` specs."""
    from .data.formatting import FormatConfig, encode_example  # data layer is optional for imports

    cfg.validate()
    t0 = time.time()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = base or load_base_model(cfg.model)
    train_examples, eval_sets = data if data is not None else _build_data(cfg)
    fmt = FormatConfig.from_data_config(cfg.data)
    features = [encode_example(base.tokenizer, ex, fmt, with_answer=True) for ex in train_examples]
    if not features:
        raise DataError(f"no training examples in {cfg.data.train}")
    # Teacher-forced eval loss needs the eval sets with answers; encode them once, not per evaluation.
    eval_feats = [encode_example(base.tokenizer, ex, fmt, with_answer=True) for ds in eval_sets.values() for ex in ds]
    init_text = cfg.method.init_text or cfg.data.instruction or _default_instruction(fmt, train_examples)
    adapter = build_adapter(base, cfg.method, init_text=init_text, seed=cfg.train.seed,
                            init_pool=_router_tokens(features) if cfg.method.init == "inputs" else None)
    router = getattr(adapter.prompt, "router", None)
    anchor = None  # a frozen copy of the fitted start, for router_anchor
    if router is not None and (router.norm or cfg.method.router_init != ORTHOGONAL):
        x, used = router_inputs(adapter, features)  # n×H, and which features they are
        if router.norm:
            router.set_input_stats(x.mean(0), x.std(0) if len(x) > 1 else torch.ones_like(x[0]))
        if cfg.method.router_init != ORTHOGONAL and router.n_experts > 1:  # one expert: nothing to choose
            groups = input_groups(x, [features[i].get("domain", "") for i in used], router.n_experts,
                                  cfg.method.router_init, torch.Generator().manual_seed(cfg.train.seed))
            router.fit_groups(x, groups, cfg.method.router_init_confidence)
            if cfg.method.router_anchor > 0:  # copied before a resumed run restores its trained router
                anchor = copy.deepcopy(router).requires_grad_(False).eval()

    tc = cfg.train
    lr = tc.resolved_lr(cfg.method.method)
    opt = torch.optim.AdamW(param_groups(adapter, lr), lr=lr, weight_decay=tc.weight_decay)
    sched = get_scheduler(tc.schedule if tc.schedule != "constant" else "constant_with_warmup", opt,
                          num_warmup_steps=tc.warmup_steps, num_training_steps=tc.steps)
    start = 0
    if resume:
        ckpt = latest_checkpoint(out)
        if ckpt is not None:
            start = _restore(ckpt, cfg, adapter, opt)
            with warnings.catch_warnings():  # stepping the schedule before the optimizer is intended
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(start):  # the schedule is a pure function of the step
                    sched.step()
    (out / "run_config.json").write_text(cfg.to_json())

    info = {
        "trainable_params": adapter.num_trainable(),
        "n_train_examples": len(features),
        "eval_sets": {k: len(v) for k, v in eval_sets.items()},
        "device": str(base.device),
        "dtype": str(base.dtype).replace("torch.", ""),
        "lr": lr,
        "init_text": init_text,
    }
    from .trackers import for_run

    callbacks = [*callbacks, *for_run(cfg, present=callbacks)]  # train.report_to, unless the caller built them
    for cb in callbacks:
        cb.on_train_begin(tc.steps, start, info)

    history: list[StepMetrics] = []
    status, step, last_eval = "finished", start, None
    adapter.train()
    for step in range(start, tc.steps):
        ts = time.time()
        torch.manual_seed(_step_seed(tc.seed, step))
        total_loss, n_tokens, routings, domains = 0.0, 0, [], []
        for micro in range(tc.grad_accum):
            idx = batch_indices(len(features), tc.seed, step, micro, tc.batch_size, tc.grad_accum)
            lm_loss, routing = batch_loss(adapter, [features[i] for i in idx])
            loss = lm_loss
            if routing is not None and cfg.method.balance_loss > 0:
                loss = loss + cfg.method.balance_loss * balance_loss(routing.probs, routing.chosen)
            if routing is not None and cfg.method.mi_loss > 0:
                loss = loss - cfg.method.mi_loss * mutual_information(routing.probs)
            if routing is not None and anchor is not None:
                loss = loss + cfg.method.router_anchor * anchor_loss(routing.probs, anchor.choices(routing.router_input))
            loss = loss / tc.grad_accum
            if not torch.isfinite(loss):
                raise PTMoEError(f"loss became {loss.item()} at step {step + 1}; lower train.lr (now {lr})")
            loss.backward()
            total_loss += lm_loss.item() / tc.grad_accum  # report the LM loss, not the auxiliary term
            n_tokens += sum(len(features[i]["input_ids"]) for i in idx) + (
                adapter.cfg.prompt_len if adapter.prompt else 0) * len(idx)
            if routing is not None:
                routings.append(routing)
                domains += [features[i].get("domain", "") for i in idx]
        grad_norm = torch.nn.utils.clip_grad_norm_(adapter.trainable_parameters(), tc.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if routings and router is not None and router.bias_balance > 0:
            router.update_selection_bias(RoutingInfo.cat(routings).expert_load())
        m = StepMetrics(
            step=step + 1,
            total_steps=tc.steps,
            loss=total_loss,
            lr=sched.get_last_lr()[0],
            tokens_per_s=n_tokens / max(time.time() - ts, 1e-9),
            grad_norm=float(grad_norm),
            elapsed_s=time.time() - t0,
        )
        if routings:
            r = RoutingInfo.cat(routings)
            m.router_entropy = float(r.entropy.detach().mean())
            m.expert_load = r.expert_load().tolist()
            m.domain_routing = routing_counts(domains, r.chosen.tolist(), r.probs.shape[1])
        history.append(m)
        for cb in callbacks:
            cb.on_step(m)
        done = step + 1
        if tc.eval_every and done % tc.eval_every == 0 and done < tc.steps and eval_sets:
            try:
                last_eval = run_evaluation(adapter, eval_sets, eval_feats, fmt, tc, done, callbacks, should_stop)
            except EvaluationStopped:
                pass  # should_stop() holds: the run stops just below, after its checkpoint
            adapter.train()
        stop = should_stop()
        if (tc.save_every and done % tc.save_every == 0 and done < tc.steps) or stop:
            save_checkpoint(out, adapter, opt, cfg, done, callbacks)
        if stop and done < tc.steps:
            status, step = "cancelled", done
            break
        step = done

    adapter_dir = None
    if status == "finished":
        if eval_sets:
            try:
                last_eval = run_evaluation(adapter, eval_sets, eval_feats, fmt, tc, step, callbacks, should_stop)
            except EvaluationStopped:
                status = "cancelled"
        if status == "finished" or not (out / CHECKPOINTS / _ckpt_name(step)).exists():
            save_checkpoint(out, adapter, opt, cfg, step, callbacks)
    if status == "finished":
        adapter_dir = out / FINAL_ADAPTER
        _publish(out / CHECKPOINTS / _ckpt_name(step), adapter_dir,
                 TrainingSummary.from_run(cfg, last_eval, len(features)))
    for cb in callbacks:
        cb.on_train_end(status, step, adapter_dir)
    adapter.eval()
    return TrainResult(
        status=status,
        step=step,
        adapter_dir=adapter_dir,
        trainable_params=adapter.num_trainable(),
        final_loss=history[-1].loss if history else None,
        evaluation=last_eval,
        elapsed_s=time.time() - t0,
        history=history,
    )


# ---------------------------------------------------------------------------------------------
# Data order


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


def batch_indices(n: int, seed: int, step: int, micro: int, batch_size: int, grad_accum: int) -> list[int]:
    """Example indices of one micro-batch: epochs are seeded permutations, so any step's batch is
    computable without replaying the ones before it."""
    first = (step * grad_accum + micro) * batch_size
    out = []
    for pos in range(first, first + batch_size):
        epoch, offset = divmod(pos, n)
        g = torch.Generator().manual_seed(seed * 7_777 + epoch)
        out.append(int(torch.randperm(n, generator=g)[offset]))
    return out


def batch_loss(adapter: Adapter, feats: Sequence[dict]) -> tuple[torch.Tensor, RoutingInfo | None]:
    """The batch's token-mean LM loss and its routing, computed on sub-batches of similar length
    (``padding_groups``) so a batch mixing long passages and short questions is not padded to the
    longest. Each sub-batch's loss is summed over its tokens and divided by the whole batch's count
    (transformers' ``num_items_in_batch``), so the loss and its gradient equal the unsplit batch's.
    The LM head runs on the labelled positions only (``Adapter.label_loss``)."""
    from .data.formatting import IGNORE_INDEX, collate, padding_groups

    base = adapter.base
    # Tokens the shifted LM loss scores. Position 0 is never an answer token (the chat template comes
    # first), so the count is the same with or without a soft prompt in front.
    n_items = sum(sum(1 for t in f["labels"][1:] if t != IGNORE_INDEX) for f in feats)
    total, routings, order = None, [], []
    for group in padding_groups([len(f["input_ids"]) for f in feats]):
        batch = {k: v.to(base.device) for k, v in collate([feats[i] for i in group], base.pad_id).items()}
        loss, routing = adapter.label_loss(batch, num_items_in_batch=max(n_items, 1))
        total = loss if total is None else total + loss
        if routing is not None:
            routings.append(routing)
            order += group
    # The routing's rows back in the order of ``feats`` (the groups are by length): row i is feats[i]'s.
    return total, (RoutingInfo.cat(routings).rows(torch.argsort(torch.tensor(order))) if routings else None)


def param_groups(adapter: Adapter, lr: float) -> list[dict]:
    """The router's tensors in a group of their own at ``router_lr_mult`` × the prompt's lr: the
    prompt's gradient is spread over T×R values, the router's decision rests on N×H."""
    named = adapter.named_trainable()
    mult = adapter.cfg.router_lr_mult if adapter.is_routed else 1.0
    routed = [p for n, p in named if n.startswith("router.")]
    rest = [p for n, p in named if not n.startswith("router.")]
    if mult == 1.0 or not routed:
        return [{"params": rest + routed}]
    return [{"params": rest}, {"params": routed, "lr": lr * mult}]


MAX_STATS_EXAMPLES = 4096  # enough for a stable mean/std of H=576..4096 dims, bounded cost


@torch.no_grad()
def router_inputs(adapter: Adapter, features: Sequence[dict]) -> tuple[torch.Tensor, list[int]]:
    """The router inputs (masked mean embeddings, n×H) of at most ``MAX_STATS_EXAMPLES`` training
    examples spread evenly over them (a mix is often stored one source after another), and their indices."""
    from .data.formatting import collate

    embed, dev = adapter.base.embed, adapter.base.device
    used = list(range(0, len(features), -(-len(features) // MAX_STATS_EXAMPLES)))
    rows = []
    for i in range(0, len(used), 64):
        batch = collate([features[j] for j in used[i : i + 64]], adapter.base.pad_id)
        X = embed(batch["input_ids"].to(dev)).float()  # b×L×H
        rows.append(masked_mean(X, batch["router_mask"].to(dev)))  # b×H
    return torch.cat(rows).cpu(), used  # n×H


def _router_tokens(features: Sequence[dict], limit: int = 200_000) -> list[int]:
    """Token ids the router reads (question/context) of the training examples, for ``init="inputs"``."""
    out: list[int] = []
    for f in features:
        out += [t for t, m in zip(f["input_ids"], f["router_mask"], strict=True) if m]
        if len(out) >= limit:
            break
    return out


def _build_data(cfg: RunConfig):
    from .data import build_datasets

    return build_datasets(cfg.data)


def _default_instruction(fmt, examples) -> str | None:
    """The task instruction (the paper's init text) of the first example's answer type."""
    return fmt.instruction_for(examples[0]) if len(examples) else None


# ---------------------------------------------------------------------------------------------
# Evaluation


class EvaluationStopped(Exception):
    """Stop was asked for during an evaluation: it ends between two batches, not after the last."""


def _stop_check(should_stop: Callable[[], bool]) -> Callable[..., None]:
    def check(*_: object) -> None:
        if should_stop():
            raise EvaluationStopped
    return check


@torch.no_grad()
def mean_loss(adapter: Adapter, features: list[dict], batch_size: int = 16,
              should_stop: Callable[[], bool] = lambda: False) -> float:
    """Token-weighted mean LM loss over encoded examples (with answers), in eval mode."""
    from .data.formatting import collate

    was_training = adapter.prompt.training if adapter.prompt is not None else adapter.lm.training
    adapter.eval()
    total, count = 0.0, 0
    base = adapter.base
    features = sorted(features, key=lambda f: len(f["input_ids"]))  # similar lengths: less padding
    for i in range(0, len(features), batch_size):
        _stop_check(should_stop)()
        batch = {k: v.to(base.device) for k, v in collate(features[i : i + batch_size], base.pad_id).items()}
        loss_sum, _ = adapter.label_loss(batch, num_items_in_batch=1)  # summed over the labelled tokens
        total += loss_sum.item()
        count += int((batch["labels"][:, 1:] != -100).sum())  # HF shifts labels by one
    adapter.train(was_training)
    return total / max(count, 1)


def run_evaluation(adapter: Adapter, eval_sets, eval_feats: list[dict], fmt, tc, step: int, callbacks,
                   should_stop: Callable[[], bool] = lambda: False) -> EvalReport:
    """Generation scores on ``eval_sets`` and the teacher-forced loss on ``eval_feats`` (the same
    examples, encoded with their answers). ``should_stop`` is asked between batches (a Stop must not
    wait for hundreds of evaluation sets): ``EvaluationStopped`` when it says so."""
    from .evaluate import evaluate

    res = evaluate(adapter, eval_sets, max_new_tokens=tc.max_new_tokens, batch_size=tc.eval_batch_size,
                   format_cfg=fmt, progress=_stop_check(should_stop))
    loss = mean_loss(adapter, eval_feats, tc.eval_batch_size, should_stop) if eval_feats else None
    report = EvalReport(step=step, scores=res.scores(), records=res.records, loss=loss)
    for cb in callbacks:
        cb.on_evaluate(report)
    return report


# ---------------------------------------------------------------------------------------------
# Checkpoints: adapter files + optimizer tensors (safetensors) + a JSON state; never pickle.


def _ckpt_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for p in root.glob("step-*"):
        if (p / STATE_NAME).is_file():  # written last: its presence marks a complete checkpoint
            try:
                found.append((int(p.name.split("-")[1]), p))
            except ValueError:
                continue
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1][1] if ckpts else None


def save_checkpoint(out: Path, adapter: Adapter, opt: torch.optim.Optimizer, cfg: RunConfig, step: int,
                    callbacks: Sequence[TrainerCallback] = ()) -> Path:
    final = out / CHECKPOINTS / _ckpt_name(step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    from .data.formatting import FormatConfig

    fmt = asdict(FormatConfig.from_data_config(cfg.data))  # how inputs were laid out: answering needs the same
    save_adapter(adapter, tmp, extra={"step": step, "run_name": cfg.name, "format": fmt})
    tensors, groups = _flatten_optimizer(opt)
    save_file(tensors, str(tmp / OPTIMIZER_NAME))
    state = {"step": step, "config": cfg.to_dict(), "param_groups": groups, "time": time.time()}
    (tmp / STATE_NAME).write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for cb in callbacks:
        cb.on_checkpoint(step, final)
    return final


def _publish(src: Path, dst: Path, training: TrainingSummary | None = None) -> None:
    """Copy the adapter files of a checkpoint to ``dst`` (the run's final adapter), with its model card."""
    from .adapter import ADAPTER_FILES

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ADAPTER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    write_model_card(tmp, training)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"state.{idx}.{k}"] = t.detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _restore(ckpt: Path, cfg: RunConfig, adapter: Adapter, opt: torch.optim.Optimizer) -> int:
    from .adapter import WEIGHTS_NAME

    try:
        state = json.loads((ckpt / STATE_NAME).read_text())
        weights = load_file(str(ckpt / WEIGHTS_NAME))
        opt_tensors = load_file(str(ckpt / OPTIMIZER_NAME))
    except (OSError, ValueError, SafetensorError) as e:
        raise PTMoEError(f"checkpoint {ckpt} is corrupt ({e}); delete it to restart from an earlier one") from e
    diffs = _config_diffs(_as_read(state.get("config", {})), cfg.to_dict())
    if diffs:
        raise ConfigError(
            "output_dir",
            f"{cfg.output_dir} holds checkpoints of a different configuration ({', '.join(diffs[:4])}); "
            "use a new output_dir or start without resuming",
        )
    adapter.load_state_dict(weights, source=str(ckpt))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in opt_tensors.items():
        _, idx, name = key.split(".", 2)
        opt_state.setdefault(int(idx), {})[name] = t
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return int(state["step"])


def _as_read(saved: Any) -> Any:
    """A checkpoint's saved config as every stored config is read (``RunConfig.from_dict``): an option added
    since it was saved takes its preset's value, as in the run's own config, instead of differing from
    it (None -> value) and refusing the resume. A config that no longer reads is compared as saved."""
    try:
        return RunConfig.from_dict(saved).to_dict()
    except (ConfigError, TypeError):
        return saved


def _config_diffs(old: dict, new: dict, prefix: tuple = ()) -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        path = (*prefix, k)
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diffs(a, b, path)
        elif a != b and path not in RESUMABLE_CHANGES and not (path == ("output_dir",)):
            out.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
    return out

