"""Table of the runs that ``benchmarks/cli_seeds.sh`` (or any ``lightning fit`` with ``CountingCallback``) left in
run folders: count_acc at every count check, the last check's other counting metrics, and mean ± std per model.

    python benchmarks/cli_seeds.py runs/cli_seeds [runs/bce ...]     # folders holding <model>_s<seed>/history.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import yaml

LAST = ("count_acc", "count_acc_unseen_bg", "box_map50", "count_mean", "double_detection")


def count_every(folder: str) -> int:
    """``every_n_epochs`` of the run's ``CountingCallback``, read from the ``config.yaml`` the CLI saved (1 if none)."""
    path, config = os.path.join(folder, "config.yaml"), {}
    if os.path.exists(path):
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    for cb in (config.get("trainer") or {}).get("callbacks") or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("CountingCallback"):
            return int((cb.get("init_args") or {}).get("every_n_epochs", 1))
    return 1


def runs(folders: list[str]) -> dict[str, list[dict]]:
    """``{"<model>_s<seed>": [{"step": ..., "count_acc": ..., ...}, ...]}``, one row per count check.

    MetricsJSON writes a row every validation epoch, and between count checks Lightning repeats the last counting
    values, so only the epochs at which ``CountingCallback`` ran (``(epoch + 1) % every_n_epochs == 0``) are kept."""
    out = {}
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name, "history.jsonl")
            if "_s" not in name or not os.path.exists(path):
                continue
            every = count_every(os.path.join(folder, name))
            rows = [json.loads(line) for line in open(path) if line.strip()]
            rows = [{"step": r["step"], **{k[4:]: v for k, v in r["metrics"].items() if k.startswith("val/")}}
                    for r in rows if "val/count_acc" in r["metrics"] and (r["epoch"] + 1) % every == 0]
            if rows:
                out[name] = rows
    return out


def table(all_runs: dict[str, list[dict]]) -> str:
    lines = ["| run | count_acc at each check (step: value) | " + " | ".join(LAST) + " |",
             "|---|---|" + "---|" * len(LAST)]
    by_model: dict[str, list[float]] = {}
    for name, rows in all_runs.items():
        checks = ", ".join(f"{r['step']}: {r['count_acc']:.3f}" for r in rows)
        last = rows[-1]
        lines.append(f"| {name} | {checks} | " + " | ".join(f"{last.get(k, float('nan')):.3f}" for k in LAST) + " |")
        by_model.setdefault(name.rsplit("_s", 1)[0] + f" (step {last['step']})", []).append(last["count_acc"])
    lines.append("")
    for model, accs in by_model.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"{model}: count_acc {statistics.mean(accs):.3f} ± {sd:.3f} (n={len(accs)}: "
                     + " / ".join(f"{a:.3f}" for a in accs) + ")")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+")
    print(table(runs(p.parse_args().folders)))
