"""Does the optional balance loss make PT-MoE's router tell domains apart? A controlled check.

PT-MoE on the embedded SmolLM2 with the built-in tasks (qa, arith, units, dates: domains a router
can separate by their wording), trained with ``method.balance_loss`` 0 (the paper's method) and 0.1
(the studio's default), each over several seeds; everything else identical. Per run it prints the
expert each domain's evaluation inputs go to, how pure that is, the mutual information between
domain and chosen expert (bits; 1.0 = two experts that split the domains cleanly, 0 = routing
ignores the domain) and the mean router confidence.

    python bench/balance_loss.py [--steps 60] [--batch 8] [--seeds 0,1] [--coefs 0,0.1] [--threads N]

Not part of CI: about eight minutes per run on a 2-core CPU (four runs by default).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def routing_stats(records: list) -> dict:
    """Majority expert and purity per domain, mutual information I(domain; expert) in bits, confidence."""
    from ptmoe_core.eval_record import EvalRecord
    from ptmoe_core.routing_summary import mutual_information_bits

    records = [EvalRecord.of(r) for r in records]
    pairs = [(r.dataset, r.expert) for r in records if r.expert is not None]
    dom = Counter(d for d, _ in pairs)
    exp = Counter(e for _, e in pairs)
    mi = mutual_information_bits([d for d, _ in pairs], [e for _, e in pairs])
    per = {}
    for d in dom:
        counts = Counter(e for dd, e in pairs if dd == d)
        e, c = counts.most_common(1)[0]
        per[d] = (e, c / dom[d])
    conf = [r.confidence for r in records if r.confidence is not None]
    return {"per_domain": per, "mi_bits": mi, "experts_used": sorted(exp),
            "confidence": sum(conf) / len(conf) if conf else float("nan")}


def _numbers(kind):
    """An argparse type: a comma-separated list of ``kind`` values, with a usage error otherwise."""
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}s") from None
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/balance_loss.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seeds", default=[0, 1], type=_numbers(int), help="comma-separated, e.g. 0,1,2")
    p.add_argument("--coefs", default=[0.0, 0.1], type=_numbers(float), help="comma-separated, e.g. 0,0.1")
    p.add_argument("--n-eval", type=int, default=24, help="evaluation questions per domain")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from ptmoe_core.config import RunConfig
    from ptmoe_core.data import build_datasets
    from ptmoe_core.models import load_base_model
    from ptmoe_core.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds, coefs = args.seeds, args.coefs

    def config(coef: float, seed: int, out: Path) -> RunConfig:
        return RunConfig.from_dict({
            "name": f"balance-{coef:g}-seed{seed}", "output_dir": str(out / f"c{coef:g}-s{seed}"),
            "model": {"name": args.model},
            "method": {"method": "ptmoe", "prompt_len": 40, "n_experts": 2, "rank": 36, "balance_loss": coef},
            "data": {"train": ["builtin:all"], "max_eval_examples": args.n_eval, "seed": seed},
            "train": {"steps": args.steps, "batch_size": args.batch, "warmup_steps": max(1, args.steps // 10),
                      "seed": seed, "max_new_tokens": 16},
        }).validate()

    with tempfile.TemporaryDirectory(prefix="ptmoe-balance-") as tmp:
        first = config(coefs[0], seeds[0], Path(tmp))
        base = load_base_model(first.model)
        rows = []
        for seed in seeds:
            data = build_datasets(config(coefs[0], seed, Path(tmp)).data)  # the same data for every coefficient
            for coef in coefs:
                cfg = config(coef, seed, Path(tmp))
                t = time.time()
                res = train(cfg, base=base, data=data, resume=False)
                st = routing_stats(res.evaluation.records)
                macro = res.evaluation.scores.get("macro", {})
                rows.append((coef, seed, st, macro, time.time() - t))
                doms = ", ".join(f"{d.removeprefix('builtin-')}→e{e} ({pu:.0%})" for d, (e, pu) in st["per_domain"].items())
                print(f"balance_loss={coef:g} seed={seed}: I(domain; expert) = {st['mi_bits']:.2f} bits, "
                      f"experts used {st['experts_used']}, mean confidence {st['confidence']:.3f}; {doms}; "
                      f"macro F1 {100 * macro.get('f1', float('nan')):.1f} ({time.time() - t:.0f}s)", flush=True)

    print("\n| balance_loss | seed | I(domain; expert), bits | experts used | mean router confidence | macro F1 |")
    print("|---|---|---|---|---|---|")
    for coef, seed, st, macro, _ in rows:
        print(f"| {coef:g} | {seed} | {st['mi_bits']:.2f} | {len(st['experts_used'])} | {st['confidence']:.3f} | "
              f"{100 * macro.get('f1', float('nan')):.1f} |")
    for coef in coefs:
        mis = [st["mi_bits"] for c, _, st, _, _ in rows if c == coef]
        print(f"balance_loss={coef:g}: mean I(domain; expert) over {len(mis)} seed(s) = {sum(mis) / len(mis):.2f} bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
