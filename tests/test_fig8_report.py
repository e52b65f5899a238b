"""benchmarks/fig8.py's table: the last validation of each run, seeds as mean ± std, per model x variant."""
from __future__ import annotations

import json
import statistics

from benchmarks.fig8 import HISTORY, report


def _write(folder, rows):
    folder.mkdir(parents=True)
    with open(folder / HISTORY, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    # the CLI's MetricsJSON callback writes its own curve next to it; the report must not read it
    (folder / "history.jsonl").write_text(json.dumps({"step": 500, "epoch": 0, "metrics": {"val/loss": 1.0}}) + "\n")


def _row(step, acc, unseen, wall=60.0):
    return {"step": step, "wall_s": wall, "count_acc": acc, "count_acc_unseen_bg": unseen, "box_map50": 0.5,
            "box_map50_unseen_bg": 0.4, "count_mean": 2.5, "count_mean_unseen_bg": 3.0, "double_detection": 0.1,
            "double_detection_unseen_bg": 0.2}


def test_report_takes_the_last_validation_and_aggregates_seeds(tmp_path):
    _write(tmp_path / "spair_easy_seed0", [_row(500, 0.1, 0.1), _row(1000, 0.8, 0.6)])
    hard = [0.2, 0.4, 0.9]
    for seed, acc in enumerate(hard):
        _write(tmp_path / f"split_spair_hard_seed{seed}", [_row(500, 0.0, 0.0), _row(1000, acc, acc / 2)])
    (tmp_path / "empty_run").mkdir()  # a folder without history is skipped
    text = report(str(tmp_path))
    lines = {line.split("|")[1].strip() + "_" + line.split("|")[2].strip(): line for line in text.split("\n\n")[0].splitlines()[2:]}
    assert set(lines) == {"spair_easy", "split_spair_hard"}
    assert "| 0.800 | 0.600 |" in lines["spair_easy"]
    mean, std = statistics.mean(hard), statistics.stdev(hard)
    assert f"{mean:.3f} ± {std:.3f} (n=3)" in lines["split_spair_hard"]
    assert "1000/1000/1000" in lines["split_spair_hard"]
    assert "| —/—/1000 |" in lines["split_spair_hard"]  # the first step with count_acc >= 0.5, per seed
    assert "| 1000 |" in lines["spair_easy"]
    curve = [line for line in text.split("\n\n")[1].splitlines() if line.startswith("| split_spair | hard | ")]
    assert curve == [f"| split_spair | hard | {mean:.3f} ± {std:.3f} |"]  # the curve at step 1000 (500 is not a multiple)
    saved = json.load(open(tmp_path / "fig8.json"))
    assert len(saved["spair_easy_seed0"]) == 2
    png = tmp_path / "fig8.png"
    if png.exists():  # matplotlib installed ([plot] extra)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
