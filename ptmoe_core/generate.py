"""Routed greedy generation, batched, with the KV cache.

The router decides once per input (on its question/context tokens), the soft prompt is prepended
and processed at prefill only; every new token then costs one cached forward of a single token.
Inputs are left-padded; positions come from the attention mask, so the padding between the prompt
and a short input changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .adapter import Adapter, position_ids_from_mask


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
    progress=None,
) -> list[Generation]:
    """Greedy answers for encoded prompts (``encode_example(..., with_answer=False)``), in order.

    ``force_expert`` routes every input to that expert (weight = its own probability when the
    method is probationary), so the answers of each expert can be compared on one input.
    ``use_cache=False`` recomputes the whole sequence for every token (the benchmark's baseline).
    ``stop_at_eos=False`` always generates ``max_new_tokens`` tokens (for benchmarks).
    ``progress``, if given, is called with the number of inputs done after each batch.
    """
    from .data.formatting import collate

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    if force_expert is not None and not 0 <= force_expert < adapter.n_experts:
        raise ValueError(f"force_expert={force_expert}: this adapter has {adapter.n_experts} expert(s)")
    adapter.eval()
    base = adapter.base
    eos = torch.tensor(base.eos_ids if stop_at_eos else [], dtype=torch.long, device=base.device)
    # Similar lengths in a batch waste less padding; results are put back in input order.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    results: list[Generation | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        feats = [{k: v for k, v in encoded[i].items() if k != "labels"} for i in idx]
        batch = {k: v.to(base.device) for k, v in collate(feats, base.pad_id, padding_side="left").items()}
        t0 = time.perf_counter()
        tokens, routing = _greedy(adapter, batch, max_new_tokens, eos, force_expert, use_cache)
        latency = time.perf_counter() - t0
        for j, i in enumerate(idx):
            ids = tokens[j]
            results[i] = Generation(
                text=base.tokenizer.decode(ids, skip_special_tokens=True).strip(),
                token_ids=ids,
                expert=int(routing.chosen[j]) if routing is not None else None,
                probs=routing.probs[j].tolist() if routing is not None else None,
                confidence=float(routing.confidence[j]) if routing is not None else None,
                entropy=float(routing.entropy[j]) if routing is not None else None,
                latency_s=latency,
                router_input=routing.router_input[j].float().tolist() if routing is not None and return_router_input else None,
            )
        if progress is not None:
            progress(min(start + batch_size, len(order)))
    return results  # type: ignore[return-value]


def _greedy(adapter: Adapter, batch, max_new_tokens: int, eos: torch.Tensor, force_expert, use_cache: bool):
    lm = adapter.lm
    pi = adapter.embed_inputs(batch, force_expert)  # prompt + input embeddings, b×(T+L)×H
    mask = pi.attention_mask
    pos = position_ids_from_mask(mask)
    out = lm(inputs_embeds=pi.inputs_embeds, attention_mask=mask, position_ids=pos, use_cache=use_cache)
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
            embeds = torch.cat([pi.inputs_embeds, embed(generated)], 1)
            out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False)
    rows = []
    stop = set(eos.tolist())
    for row in generated.tolist():
        cut = next((k for k, t in enumerate(row) if t in stop), len(row))
        rows.append(row[:cut])  # stop at the first end-of-turn token
    return rows, pi.routing
