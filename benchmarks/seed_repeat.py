"""Repeat a config over N seeds and tabulate mean ± std of every logged test metric.

    python benchmarks/seed_repeat.py --config configs/split_gmvae_svhn_k30.yaml --seeds 0 1 2 3 4
    python benchmarks/seed_repeat.py --config configs/quickstart.yaml --seeds 0 1 2 -- --trainer.max_epochs 4
    python benchmarks/seed_repeat.py --config configs/quickstart.yaml --seeds 0 1 2 --collect-only

Each seed trains in its own run folder (``<default_root_dir>_seed<S>``) with
``lightning fit`` and is then evaluated with ``lightning test --ckpt_path last``; the table
is built from the runs' ``metrics_test.json`` files (the paper's "mean ± std over runs"),
printed as Markdown and written to ``<default_root_dir>_seeds.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

import yaml


def run_dir(config: str, seed: int) -> str:
    with open(config) as f:
        root = (yaml.safe_load(f).get("trainer") or {}).get("default_root_dir") or f"runs/{os.path.splitext(os.path.basename(config))[0]}"
    return f"{root.rstrip('/')}_seed{seed}"


def lightning(sub: str, config: str, seed: int, extra: list[str], ckpt: bool) -> None:
    cmd = [sys.executable, "-m", "splitlab", sub, "--config", config, f"--seed_everything={seed}",
           f"--trainer.default_root_dir={run_dir(config, seed)}", *extra]
    if ckpt:
        cmd.append("--ckpt_path=last")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def table(records: list[dict], stage: str = "test") -> str:
    keys = sorted({k for r in records for k in r["metrics"] if k.startswith(f"{stage}/")})
    lines = ["| metric | mean ± std | n | per seed |", "|---|---|---|---|"]
    for k in keys:
        vals = [r["metrics"][k] for r in records if isinstance(r["metrics"].get(k), (int, float))]
        if not vals:
            continue
        mean = statistics.fmean(vals)
        std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        per = ", ".join(f"{v:.4g}" for v in vals)
        lines.append(f"| {k} | {mean:.4g} ± {std:.2g} | {len(vals)} | {per} |" if not math.isnan(std)
                     else f"| {k} | {mean:.4g} | 1 | {per} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--collect-only", action="store_true", help="only read the existing run folders")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: extra arguments for `lightning fit/test`")
    a = p.parse_args()
    extra = [x for x in a.extra if x != "--"]
    records = []
    for s in a.seeds:
        if not a.collect_only:
            lightning("fit", a.config, s, extra, ckpt=False)
            lightning("test", a.config, s, extra, ckpt=True)
        path = os.path.join(run_dir(a.config, s), "metrics_test.json")
        with open(path) as f:
            records.append(json.load(f))
    out = f"{a.config}, seeds {a.seeds}\n\n{table(records)}\n"
    print("\n" + out)
    base = run_dir(a.config, 0).rsplit("_seed", 1)[0]
    with open(f"{base}_seeds.md", "w") as f:
        f.write(out)


if __name__ == "__main__":
    main()
