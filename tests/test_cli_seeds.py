"""benchmarks/cli_seeds.py's table: count checks read from MetricsJSON's history.jsonl at the epochs where the run's
CountingCallback ran (its every_n_epochs from the saved config.yaml), seeds as mean ± std per model."""
from __future__ import annotations

import json
import statistics

from benchmarks.cli_seeds import runs, table

CONFIG = """trainer:
  callbacks:
  - class_path: callbacks.grids.DetectionGrids
    init_args: {n: 8}
  - class_path: callbacks.counting.CountingCallback
    init_args: {max_count: 5, every_n_epochs: 2}
"""


def _write(folder, accs):
    """Six epochs of 625 steps; the counting values change at epochs 1, 3, 5 (every 2nd, as CountingCallback with
    every_n_epochs 2) and are repeated at the epochs in between, as Lightning's callback_metrics keep them. An
    all-on run repeats the same values at real checks too, which is why the epochs, not the values, pick the rows."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(CONFIG)
    with open(folder / "history.jsonl", "w") as f:
        m = {"val/loss": 2.0}
        for epoch in range(6):
            if epoch % 2 == 1:
                acc = accs[epoch // 2]
                m = {"val/loss": 1.0, "val/count_acc": acc, "val/count_acc_unseen_bg": acc / 2, "val/box_map50": 0.9,
                     "val/count_mean": 2.5, "val/double_detection": 0.1}
            f.write(json.dumps({"step": 625 * (epoch + 1), "epoch": epoch, "metrics": m}) + "\n")


def test_cli_seeds_table_reads_the_count_checks_and_aggregates_seeds(tmp_path):
    finals = {0: 0.8, 1: 0.7, 2: 0.0}
    for seed, acc in finals.items():
        _write(tmp_path / f"spair_s{seed}", [0.0, 0.0 if seed == 2 else 0.4, acc])
    (tmp_path / "spair_s9").mkdir()  # a run folder without history is skipped
    found = runs([str(tmp_path)])
    assert set(found) == {"spair_s0", "spair_s1", "spair_s2"}
    assert [r["step"] for r in found["spair_s0"]] == [1250, 2500, 3750]
    assert [r["step"] for r in found["spair_s2"]] == [1250, 2500, 3750]  # same values at each check, all kept
    text = table(found)
    mean, sd = statistics.mean(finals.values()), statistics.stdev(finals.values())
    assert f"spair (step 3750): count_acc {mean:.3f} ± {sd:.3f} (n=3: 0.800 / 0.700 / 0.000)" in text
    assert "| spair_s1 | 1250: 0.000, 2500: 0.400, 3750: 0.700 | 0.700 | 0.350 |" in text
