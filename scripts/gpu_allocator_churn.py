"""Replay the fragmentation study's allocation churn on PyTorch's CUDA caching allocator.

For each Orca policy (per-request contiguous KV tensors) and for one paged pool, report reserved vs
allocated memory, inactive split bytes, allocator retries and OOMs under the KV budget of the study's
setup (attnbench/memory/gpu_churn.py explains the method). Without a CUDA GPU it says so and exits 0.

usage: PYTHONPATH=. python3 scripts/gpu_allocator_churn.py [--config configs/fragmentation.yaml]
           [--dataset sharegpt|alpaca] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench.memory.gpu_churn import allocator_churn, no_gpu_reason  # noqa: E402
from attnbench.memory.render import gpu_lines  # noqa: E402
from attnbench.memory.study import ConfigError, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/fragmentation.yaml")
    ap.add_argument("--dataset", default="sharegpt", choices=["sharegpt", "alpaca"])
    ap.add_argument("--out", default=None, help="folder for gpu_allocator_churn.json / .md")
    args = ap.parse_args(argv)
    reason = no_gpu_reason()
    if reason:
        print(f"gpu_allocator_churn: skipped: {reason}", file=sys.stderr)
        return 0
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = allocator_churn(cfg, dataset=args.dataset, progress=lambda d: print(d, file=sys.stderr))
    text = "\n".join(gpu_lines(result)) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_allocator_churn.json").write_text(json.dumps(result, indent=2))
        (out / "gpu_allocator_churn.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
