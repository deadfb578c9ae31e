"""Time to a ready embedded model: the safetensors cache against parsing the GGUF (the reference),
measured in the same run.                                            target: cached load < 2 s

    python -m bench.load_time [--repeats 3]

The GGUF parse is measured on a temporary cache directory so the real cache is left alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

from ptmoe_core.config import ModelConfig
from ptmoe_core.models import load_base_model


def load_seconds() -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    base = load_base_model(ModelConfig(name="smollm2-135m", device="cpu"))
    ids = base.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = base.model(ids).logits[0, -1]
    return time.perf_counter() - t, logits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    load_seconds()  # make sure the real cache exists (converts once if missing)
    cached = [load_seconds() for _ in range(args.repeats)]
    old = os.environ.get("PTMOE_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PTMOE_CACHE_DIR"] = tmp  # empty cache: the load parses the GGUF and converts
        cold, cold_logits = load_seconds()
    if old is None:
        os.environ.pop("PTMOE_CACHE_DIR")
    else:
        os.environ["PTMOE_CACHE_DIR"] = old
    warm = statistics.median(s for s, _ in cached)
    same = torch.equal(cached[0][1], cold_logits)
    print(f"GGUF parse + convert (reference): {cold:6.2f} s")
    print(f"cached safetensors load:          {warm:6.2f} s  (median of {args.repeats}, incl. one forward pass)")
    print(f"ratio cached / GGUF = {warm / cold:.3f}; target < 2 s: {'meets' if warm < 2 else 'MISSES'}")
    print(f"identical logits after conversion: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
