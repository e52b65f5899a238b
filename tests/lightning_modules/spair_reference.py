"""The loss terms of every shipped SPAIR config on a fixed batch and seed, at steps that cross its schedules.

    python -m tests.lightning_modules.spair_reference --write   # record (before a refactor)
    python -m tests.lightning_modules.spair_reference           # compare with the record (what the test does)

A refactor of ``lightning_modules/spair.py`` that means to change nothing must keep these numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_name("data") / "spair_losses.json"
CONFIGS = ["spair_easy", "spair_hard", "split_spair_easy", "split_spair_hard", "quickstart_spair_easy",
           "quickstart_split_spair_easy", "quickstart_spair", "quickstart_split_spair"]
STEPS = [0, 1_500, 3_500, 12_000]  # inside / after the warm-ups, the presence credit's start, the prior anneal


def losses(config: str) -> dict[str, dict[str, float]]:
    from splitlab.loading import _instantiate

    cfg = yaml.safe_load((ROOT / "configs" / f"{config}.yaml").read_text())
    torch.manual_seed(0)
    model = _instantiate(cfg["model"], "model")
    model.train()
    g = torch.Generator().manual_seed(1)
    size = model.hparams.get("image_size", 48)
    x = torch.rand(4, 3, size, size, generator=g)
    out = {}
    for step in STEPS:
        model.step_count = lambda step=step: step
        torch.manual_seed(2)
        terms = model.compute_loss(x)
        out[str(step)] = {k: float(v.detach().mean()) for k, v in sorted(terms.items())}
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    now = {c: losses(c) for c in CONFIGS}
    if a.write:
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"wrote {RECORD}")
        return 0
    ref = json.loads(RECORD.read_text())
    bad = [(c, s, k, ref[c][s].get(k), v) for c in now for s in now[c] for k, v in now[c][s].items()
           if ref[c][s].get(k) != v]
    missing = [(c, s, k) for c in ref for s in ref[c] for k in ref[c][s] if k not in now.get(c, {}).get(s, {})]
    for row in bad + missing:
        print("differs:", row)
    print("bit-identical" if not bad and not missing else f"{len(bad) + len(missing)} values differ")
    return 0 if not bad and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
