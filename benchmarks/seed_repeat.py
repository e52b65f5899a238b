"""Repeat a config over N seeds and tabulate mean ± std of every logged test metric.

    python benchmarks/seed_repeat.py --config configs/split_gmvae_svhn_k30.yaml --seeds 0 1 2 3 4
    python benchmarks/seed_repeat.py --config configs/quickstart.yaml --seeds 0 1 2 -- --trainer.max_epochs 4
    python benchmarks/seed_repeat.py --config configs/quickstart.yaml --seeds 0 1 2 --collect-only

Each seed trains in its own run folder (``<default_root_dir>/seed<S>``, i.e. ``--run seed<S>``) with
``lightning fit`` and is then evaluated with ``lightning test --run seed<S> --ckpt_path last``; the table
is built from the runs' ``metrics_test.json`` files (the paper's "mean ± std over runs"), read
and aggregated by the same code as ``python -m splitlab report``, printed as Markdown and written to
``<default_root_dir>/seeds.md``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import yaml

from splitlab.report import Group, Run, fmt, read_run


def config_dir(config: str) -> str:
    with open(config) as f:
        root = (yaml.safe_load(f).get("trainer") or {}).get("default_root_dir")
    return (root or f"runs/{os.path.splitext(os.path.basename(config))[0]}").rstrip("/")


def run_dir(config: str, seed: int) -> str:
    return os.path.join(config_dir(config), f"seed{seed}")


def lightning(sub: str, config: str, seed: int, extra: list[str], ckpt: bool) -> None:
    cmd = [sys.executable, "-m", "splitlab", sub, "--config", config, f"--seed_everything={seed}",
           f"--run=seed{seed}", *extra]
    if ckpt:
        cmd.append("--ckpt_path=last")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def table(runs: list[Run], stage: str = "test") -> str:
    """Markdown: every ``<stage>/`` metric as mean ± std (n) and per seed (splitlab.report's aggregation)."""
    group = Group(runs[0].name, runs[0].name, runs)
    keys = sorted({k for r in runs for rec in r.records.values() for k in rec.get("metrics", {}) if k.startswith(f"{stage}/")})
    lines = ["| metric | mean ± std (n) | per seed |", "|---|---|---|"]
    for k in keys:
        vals = group.values(k)
        if vals:
            lines.append(f"| {k} | {fmt(vals, digits=4)} | {', '.join(f'{v:.4g}' for v in vals)} |")
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
        records.append(read_run(run_dir(a.config, s)))
    out = f"{a.config}, seeds {a.seeds}\n\n{table(records)}\n"
    print("\n" + out)
    with open(os.path.join(config_dir(a.config), "seeds.md"), "w") as f:
        f.write(out)


if __name__ == "__main__":
    main()
