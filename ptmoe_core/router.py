"""The PT-MoE router: a linear map from the mean input embedding to expert probabilities.

    x = masked_mean(X, router_mask)        # b×H, question/context tokens only
    l = x Wᵀ + b                           # b×N
    l = l · (1 + ε), ε ~ N(0, σ²)          # training only; ε·l a constant to backward
    p = softmax(l)
    w = p ⊙ top-k mask                     # selective + probationary (the paper's default)

Router aids (not in the paper, each off in the ``paper`` preset; docs/routing.md measures them):
- ``norm``: x ← (x − μ) / σ with μ, σ of the training inputs (buffers, saved with the adapter).
  Mean embeddings of different inputs differ little next to their shared mean, so without it the
  logits barely depend on the input and p stays near 1/N.
- ``noise_type="additive"``: l + σε instead of l·(1 + σε): exploration that does not shrink with
  the logits (SMoP's own noise is the multiplicative one, at σ = 1).
- ``bias_balance``: a per-expert bias added to the logits for the top-k *selection* only, nudged
  after each step toward equal load (loss-free balancing); the weights still use p.
- ``router_init`` (``fit_groups``): instead of SMoP's random orthogonal rows, the router starts as a
  linear classifier of the training inputs into N groups (``domains``: the training data sets,
  grouped into N by their mean inputs; ``kmeans``: k-means clusters of the inputs), scaled so the
  mean probability of each input's group is ``router_init_confidence``. A random router splits
  inputs along a direction unrelated to their data set, and training then makes that arbitrary
  split confident; a router that starts from the groups keeps each data set on one expert.
- ``router_anchor`` (``anchor_loss``): while a fitted router trains, a cross-entropy term toward the
  expert the fitted start chose for each input, so the router's confidence learns but its split stays.

Switches (all four of the paper's routing ablations are reachable):
- ``top_k``: 1 is selective; N mixes every expert (non-selective).
- ``probationary``: scale each chosen expert by its own probability; off gives equal weights
  1/k to the chosen experts (exactly 1 for top-1), and then the router receives no gradient
  unless ``straight_through`` is on (``MethodConfig`` turns it on with non-probationary routing
  unless told otherwise).
- ``straight_through``: forward weights are the non-probationary ones, backward goes through p.

Forcing an expert (inspection only) routes every input to it as if the router had chosen it: with
probationary weights it gets the weight the router gives its own top choice (max p), not its own
p, which a confident router leaves at ≈0 (its prompt would vanish and the "forced" answer would be
the frozen model's). Forcing the expert the router chose reproduces the routed prompt exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class RoutingInfo:
    """What the router decided for a batch (all b-first tensors)."""

    probs: Tensor  # b×N, softmax of the (noisy while training) logits
    weights: Tensor  # b×N, the factor each expert's prompt is scaled by
    chosen: Tensor  # b, index of the top expert (or the forced one)
    router_input: Tensor  # b×H, the masked mean input embedding

    @property
    def confidence(self) -> Tensor:  # b: probability of the chosen expert
        return self.probs.gather(1, self.chosen[:, None]).squeeze(1)

    @property
    def entropy(self) -> Tensor:  # b, in nats
        p = self.probs.clamp_min(1e-12)
        return -(p * p.log()).sum(-1)

    def expert_load(self) -> Tensor:  # N: fraction of the batch routed to each expert
        return expert_fractions(self.chosen, self.probs.shape[1])

    def rows(self, index: Tensor) -> RoutingInfo:
        """The same routing with its rows taken at ``index`` (e.g. to undo a reordering)."""
        index = index.to(self.chosen.device)
        return RoutingInfo(self.probs[index], self.weights[index], self.chosen[index], self.router_input[index])

    @classmethod
    def cat(cls, parts: list[RoutingInfo]) -> RoutingInfo:
        """One RoutingInfo for several micro-batches (gradient accumulation)."""
        return cls(*(torch.cat([getattr(r, f) for r in parts]) for f in ("probs", "weights", "chosen", "router_input")))


def expert_fractions(chosen: Tensor, n: int) -> Tensor:
    """N: the fraction of ``chosen`` (b) equal to each expert index."""
    return torch.bincount(chosen, minlength=n).float() / max(1, chosen.numel())


def mutual_information(probs: Tensor) -> Tensor:
    """I(input; expert) over a batch, in nats: H(mean p) − mean H(p). High when each input is
    routed confidently and the batch as a whole uses every expert."""
    p = probs.clamp_min(1e-12)  # b×N
    pbar = p.mean(0)  # N
    return -(pbar * pbar.log()).sum() + (p * p.log()).sum(-1).mean()


def balance_loss(probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss N · Σ_i f_i · P̄_i (f_i: fraction routed to expert i,
    P̄_i: mean probability of i). Equals 1 when balanced; grows as the router collapses."""
    n = probs.shape[1]
    return n * (expert_fractions(chosen, n).to(probs.dtype) * probs.mean(0)).sum()


def anchor_loss(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean −log p of each input's anchored expert: probs b×N, targets b (the fitted start's choices).
    Unlike keeping the router fixed, the confidence it gives that expert still learns."""
    return nn.functional.nll_loss(probs.clamp_min(1e-12).log(), targets.to(probs.device))


def kmeans(x: Tensor, k: int, generator: torch.Generator, weights: Tensor | None = None,
           iters: int = 50, restarts: int = 8) -> Tensor:
    """Labels (n) of weighted k-means on the rows of ``x`` (n×H): the best of ``restarts`` runs of
    Lloyd's algorithm from distinct random rows (deterministic for a generator)."""
    x = x.float()
    w = torch.ones(len(x)) if weights is None else weights.float()
    best, best_cost = None, float("inf")
    for _ in range(restarts):
        C = x[torch.randperm(len(x), generator=generator)[:k]].clone()  # k×H
        for _ in range(iters):
            labels = torch.cdist(x, C).argmin(1)
            for j in range(k):
                if (labels == j).any():
                    m = labels == j
                    C[j] = (w[m, None] * x[m]).sum(0) / w[m].sum()
        cost = float((w * (x - C[labels]).pow(2).sum(1)).sum())
        if cost < best_cost and len(labels.unique()) == min(k, len(x)):
            best, best_cost = labels, cost
    return best if best is not None else labels


def input_groups(x: Tensor, domains: list[str], n: int, how: str, generator: torch.Generator) -> Tensor:
    """Each input's group (n inputs -> values 0..n-1) for ``Router.fit_groups``. ``domains``: the
    inputs' data sets, grouped into n by weighted k-means on their mean inputs (one per expert when
    there are n); with fewer data sets than experts, or ``how="kmeans"``, k-means on the inputs."""
    names = sorted(set(domains))
    if how == "kmeans" or len(names) < n:
        return kmeans(x, n, generator)
    index = torch.tensor([names.index(d) for d in domains])
    centroids = torch.stack([x[index == i].float().mean(0) for i in range(len(names))])  # D×H
    sizes = torch.bincount(index, minlength=len(names))
    return kmeans(centroids, n, generator, weights=sizes)[index]


def masked_mean(X: Tensor, mask: Tensor) -> Tensor:
    """Mean over the positions where ``mask`` is 1: X b×L×H, mask b×L -> b×H."""
    m = mask.to(X.dtype).unsqueeze(-1)  # b×L×1
    return (X * m).sum(1) / m.sum(1).clamp_min(1.0)


class Router(nn.Module):
    """Linear router W ∈ R^{N×H}, b ∈ R^N."""

    def __init__(
        self,
        hidden: int,
        n_experts: int,
        *,
        top_k: int = 1,
        probationary: bool = True,
        straight_through: bool = False,
        noise_std: float = 0.01,
        noise_type: str = "multiplicative",
        bias: bool = True,
        norm: bool = False,
        bias_balance: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.n_experts, self.top_k = n_experts, top_k
        self.probationary, self.straight_through = probationary, straight_through
        self.noise_std, self.noise_type = noise_std, noise_type
        self.norm, self.bias_balance = norm, bias_balance
        self.linear = nn.Linear(hidden, n_experts, bias=bias)
        # Orthogonal rows, zero bias: SMoP's choice; experts start equally likely on average.
        nn.init.orthogonal_(self.linear.weight, generator=generator)
        if bias:
            nn.init.zeros_(self.linear.bias)
        # Buffers exist only when their aid is on, so adapters without it keep their tensor set.
        if norm:
            self.register_buffer("input_mean", torch.zeros(hidden))  # H
            self.register_buffer("input_std", torch.ones(hidden))  # H
        if bias_balance > 0:
            self.register_buffer("selection_bias", torch.zeros(n_experts))  # N

    @torch.no_grad()
    def set_input_stats(self, mean: Tensor, std: Tensor) -> None:
        """μ, σ (H each) of the training inputs' router inputs, for ``norm``."""
        self.input_mean.copy_(mean)
        self.input_std.copy_(std.clamp_min(1e-6 * float(std.max().clamp_min(1e-12))))

    def standardise(self, x: Tensor) -> Tensor:
        """The router's view of its input (b×H): standardised with ``norm``, else as given."""
        z = x.to(self.linear.weight.dtype)
        return (z - self.input_mean.to(z.dtype)) / self.input_std.to(z.dtype) if self.norm else z

    def fit_groups(self, x: Tensor, groups: Tensor, confidence: float, steps: int = 100) -> None:
        """Set W, b to a logistic-regression classifier of ``groups`` (n, values 0..N-1) from the
        inputs ``x`` (n×H), then shrink it so the mean probability of each input's own group is
        ``confidence`` (the classifier's own, if it cannot reach that)."""
        z = self.standardise(x.to(self.linear.weight.device)).detach().float()  # n×H
        groups = groups.to(z.device)
        W = torch.zeros(self.n_experts, z.shape[1], device=z.device, requires_grad=True)
        b = torch.zeros(self.n_experts, device=z.device, requires_grad=self.linear.bias is not None)
        params = [W, b] if b.requires_grad else [W]
        opt = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            # A light L2 keeps the fit on directions shared by each group, not on single examples.
            loss = nn.functional.cross_entropy(z @ W.T + b, groups) + 1e-3 * W.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            logits = z @ W.T + b  # n×N

            def own_p(s: float) -> float:
                return float((logits * s).softmax(-1).gather(1, groups[:, None]).mean())

            lo, hi = 0.0, 1.0
            while own_p(hi) < confidence and hi < 1e4:
                hi *= 2
            for _ in range(40):  # bisection on the scale: own_p rises with it
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if own_p(mid) < confidence else (lo, mid)
            self.linear.weight.copy_((hi * W).to(self.linear.weight))
            if self.linear.bias is not None:
                self.linear.bias.copy_((hi * b).to(self.linear.bias))

    @torch.no_grad()
    def choices(self, x: Tensor) -> Tensor:
        """b: the expert this router's noiseless logits rank first for each input x (b×H)."""
        return self.linear(self.standardise(x)).argmax(-1)

    @torch.no_grad()
    def update_selection_bias(self, load: Tensor) -> None:
        """Loss-free balancing: raise the bias of experts below the mean load, lower the others'."""
        self.selection_bias.add_(self.bias_balance * torch.sign(load.mean() - load.to(self.selection_bias)))

    def forward(self, x: Tensor, force_expert: int | None = None) -> RoutingInfo:
        logits = self.linear(self.standardise(x)).float()  # b×N, fp32 for a stable softmax
        if self.training and self.noise_std > 0:
            eps = self.noise_std * torch.randn_like(logits)
            # Multiplicative: l·(1 + σε) with the scale detached (as SMoP's GaussianNoise), so the
            # noise perturbs the choice without rescaling, or at σ≈1 flipping, the router's gradient.
            logits = logits + eps * (1 if self.noise_type == "additive" else logits.detach())
        p = logits.softmax(-1)  # b×N
        if force_expert is not None:
            if not 0 <= force_expert < self.n_experts:
                raise ValueError(f"force_expert={force_expert} but there are {self.n_experts} experts")
            chosen = torch.full((x.shape[0],), force_expert, dtype=torch.long, device=x.device)
            mask = nn.functional.one_hot(chosen, self.n_experts).to(p.dtype)
        else:
            select = logits + self.selection_bias if self.bias_balance > 0 else logits  # b×N
            top = select.topk(self.top_k, dim=-1).indices  # b×k
            chosen = top[:, 0]
            mask = torch.zeros_like(p).scatter(1, top, 1.0)
        hard = mask / mask.sum(-1, keepdim=True)  # equal weights over the chosen experts
        if self.straight_through:
            soft = p * mask
            w = hard + soft - soft.detach()  # forward = hard, backward through p
        elif self.probationary:
            w = (p.amax(-1, keepdim=True) if force_expert is not None else p) * mask  # forced: as if chosen
        else:
            w = hard
        return RoutingInfo(probs=p, weights=w, chosen=chosen, router_input=x)
