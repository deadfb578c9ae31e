"""Routed greedy generation, batched, with the KV cache.

The router decides once per input (on its question/context tokens), the soft prompt is prepended
and processed at prefill only; every new token then costs one cached forward of a single token.
Inputs are left-padded; positions come from the attention mask, so the padding between the prompt
and a short input changes nothing. ``generate_all_experts`` answers with the router's choice and
with each expert forced in one stacked batch rather than one generation pass per expert.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .adapter import Adapter, position_ids_from_mask
from .router import RoutingInfo


@dataclass
class Generation:
    """One input's answer and what the router did for it."""

    text: str
    token_ids: list[int]
    expert: int | None  # chosen (or forced) expert; None for methods without a router
    probs: list[float] | None  # the full router probability vector
    confidence: float | None  # probability of the chosen expert
    entropy: float | None  # of the router distribution, nats
    latency_s: float  # wall time of the batch this input was generated in
    router_input: list[float] | None = None  # the b×H mean embedding row, when asked for


@torch.no_grad()
def generate(
    adapter: Adapter,
    encoded: list[dict[str, list[int]]],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    force_expert: int | None = None,
    use_cache: bool = True,
    return_router_input: bool = False,
    stop_at_eos: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Greedy answers for encoded prompts (``encode_example(..., with_answer=False)``), in order.

    ``force_expert`` routes every input to that expert as if the router had chosen it (with
    probationary weights: the router's top probability, see ``router``), so the answers of each
    expert can be compared on one input.
    ``use_cache=False`` recomputes the whole sequence for every token (the benchmark's baseline).
    ``stop_at_eos=False`` always generates ``max_new_tokens`` tokens (for benchmarks).
    ``progress``, if given, is called with the number of inputs done after each batch.
    """
    _check(max_new_tokens, batch_size)
    if force_expert is not None and not 0 <= force_expert < adapter.n_experts:
        raise ValueError(f"force_expert={force_expert}: this adapter has {adapter.n_experts} expert(s)")
    adapter.eval()
    eos = _eos_ids(adapter, stop_at_eos)
    results: list[Generation | None] = [None] * len(encoded)
    done = 0
    for idx, batch in _length_sorted_batches(adapter, encoded, batch_size):
        t0 = time.perf_counter()
        pi = adapter.embed_inputs(batch, force_expert)  # prompt + input embeddings, b×(T+L)×H
        tokens = _greedy(adapter, pi.inputs_embeds, pi.attention_mask, max_new_tokens, eos, use_cache)
        latency = time.perf_counter() - t0
        for j, i in enumerate(idx):
            results[i] = _generation(adapter, tokens[j], pi.routing, j, latency, return_router_input)
        done += len(idx)
        if progress is not None:
            progress(done)
    return results  # type: ignore[return-value]


@torch.no_grad()
def generate_all_experts(
    adapter: Adapter,
    encoded: list[dict[str, list[int]]],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    use_cache: bool = True,
    return_router_input: bool = False,
    stop_at_eos: bool = True,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Generation], list[list[Generation]]]:
    """The routed answer and each forced expert's answer for every input, in one generation pass:
    returns ``(routed, forced)`` with ``forced[i][e]`` = input i with expert e forced, each equal to
    ``generate(..., force_expert=e)`` (and ``routed`` to ``generate(...)``).

    The N forced variants of an input are stacked in the batch (``batch_size`` counts rows, so a
    batch holds ``batch_size // N`` inputs). With top-1 routing the routed prompt is the chosen
    expert's forced prompt, bit for bit, so that answer is not generated twice; a prompt that differs
    (a soft mix of experts) gets a row of its own. Methods without a router have no forced answers.
    """
    _check(max_new_tokens, batch_size)
    n = adapter.n_experts
    if not adapter.is_routed:
        routed = generate(adapter, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size, use_cache=use_cache,
                          stop_at_eos=stop_at_eos, progress=progress)
        return routed, [[] for _ in encoded]
    adapter.eval()
    eos = _eos_ids(adapter, stop_at_eos)
    routed_out: list[Generation | None] = [None] * len(encoded)
    forced_out: list[list[Generation]] = [[] for _ in encoded]
    done = 0
    for idx, batch in _length_sorted_batches(adapter, encoded, max(1, batch_size // n)):
        t0 = time.perf_counter()
        b = len(idx)
        pi = adapter.embed_inputs(batch)  # the router's own choice for each input
        experts = [adapter.embed_inputs(batch, force_expert=e) for e in range(n)]  # N × b rows, as generate forces
        chosen = pi.routing.chosen.tolist()
        own = [j for j in range(b) if not torch.equal(pi.inputs_embeds[j], experts[chosen[j]].inputs_embeds[j])]
        embeds = torch.cat([x.inputs_embeds for x in experts] + [pi.inputs_embeds[own]])  # (N·b + |own|)×(T+L)×H
        mask = torch.cat([x.attention_mask for x in experts] + [pi.attention_mask[own]])
        tokens: list[list[int]] = []
        for r in range(0, embeds.shape[0], batch_size):
            tokens += _greedy(adapter, embeds[r : r + batch_size], mask[r : r + batch_size], max_new_tokens, eos,
                              use_cache)
        latency = time.perf_counter() - t0
        for j, i in enumerate(idx):
            forced_out[i] = [_generation(adapter, tokens[e * b + j], x.routing, j, latency, False)
                             for e, x in enumerate(experts)]
            row = n * b + own.index(j) if j in own else chosen[j] * b + j
            routed_out[i] = _generation(adapter, tokens[row], pi.routing, j, latency, return_router_input)
        done += b
        if progress is not None:
            progress(done)
    return routed_out, forced_out  # type: ignore[return-value]


def _check(max_new_tokens: int, batch_size: int) -> None:
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")


def _eos_ids(adapter: Adapter, stop_at_eos: bool) -> Tensor:
    base = adapter.base
    return torch.tensor(base.eos_ids if stop_at_eos else [], dtype=torch.long, device=base.device)


def _length_sorted_batches(
    adapter: Adapter, encoded: list[dict[str, list[int]]], size: int
) -> Iterator[tuple[list[int], dict[str, Tensor]]]:
    """(input indices, left-padded batch) of ``size`` inputs each, shortest first: similar lengths
    in a batch waste less padding; callers put results back in input order."""
    from .data.formatting import collate

    base = adapter.base
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        feats = [{k: v for k, v in encoded[i].items() if k != "labels"} for i in idx]
        yield idx, {k: v.to(base.device) for k, v in collate(feats, base.pad_id, padding_side="left").items()}


def _generation(adapter: Adapter, ids: list[int], routing: RoutingInfo | None, j: int, latency: float,
                with_router_input: bool) -> Generation:
    """Row ``j`` of a batch's answer tokens and routing as a Generation."""
    text = adapter.base.tokenizer.decode(ids, skip_special_tokens=True).strip()
    if routing is None:
        return Generation(text=text, token_ids=ids, expert=None, probs=None, confidence=None, entropy=None,
                          latency_s=latency)
    return Generation(
        text=text,
        token_ids=ids,
        expert=int(routing.chosen[j]),
        probs=routing.probs[j].tolist(),
        confidence=float(routing.confidence[j]),
        entropy=float(routing.entropy[j]),
        latency_s=latency,
        router_input=routing.router_input[j].float().tolist() if with_router_input else None,
    )


def _greedy(adapter: Adapter, embeds: Tensor, mask: Tensor, max_new_tokens: int, eos: Tensor,
            use_cache: bool) -> list[list[int]]:
    """Greedy tokens for prompted inputs (embeds b×S×H, mask b×S), each cut at its first EOS."""
    lm = adapter.lm
    pos = position_ids_from_mask(mask)
    last_only = _last_logits_kwarg(adapter)  # the head on the last position only: the rest is never read
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=use_cache, **last_only)
    b = mask.shape[0]
    generated = torch.empty(b, 0, dtype=torch.long, device=mask.device)
    done = torch.zeros(b, dtype=torch.bool, device=mask.device)
    past = out.past_key_values if use_cache else None
    embed = lm.get_input_embeddings()
    for _ in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1)  # b
        generated = torch.cat([generated, nxt[:, None]], 1)
        done |= torch.isin(nxt, eos)
        if bool(done.all()) or generated.shape[1] >= max_new_tokens:
            break
        mask = torch.cat([mask, mask.new_ones(b, 1)], 1)
        pos = pos[:, -1:] + 1
        if use_cache:
            out = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
            past = out.past_key_values
        else:  # baseline: the whole sequence again, prompt included
            out = lm(inputs_embeds=torch.cat([embeds, embed(generated)], 1), attention_mask=mask,
                     position_ids=position_ids_from_mask(mask), use_cache=False, **last_only)
    rows = []
    stop = set(eos.tolist())
    for row in generated.tolist():
        cut = next((k for k, t in enumerate(row) if t in stop), len(row))
        rows.append(row[:cut])  # stop at the first end-of-turn token
    return rows


def _last_logits_kwarg(adapter: Adapter) -> dict[str, int]:
    """``logits_to_keep=1`` when the base model's forward takes it (transformers' causal LMs do)."""
    params = inspect.signature(adapter.base.model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}
