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
    assert "| 0.600 | 0.800 |" in lines["spair_easy"]  # the paper's measure (unseen colours) first
    mean, std = statistics.mean(hard), statistics.stdev(hard)
    assert f"{mean:.3f} ± {std:.3f} (n=3)" in lines["split_spair_hard"]
    assert "1000/1000/1000" in lines["split_spair_hard"]
    assert "| —/—/1000 |" in lines["split_spair_hard"]  # the first step with count_acc >= 0.5, per seed
    assert "| 1000 |" in lines["spair_easy"]
    unseen, seen = text.split("Learning curve, unseen colours:")[1].split("Learning curve, training colours:")
    curve = [line for line in seen.splitlines() if line.startswith("| split_spair | hard | ")]
    assert curve == [f"| split_spair | hard | {mean:.3f} ± {std:.3f} |"]  # the curve at step 1000 (500 is not a multiple)
    halves = [a / 2 for a in hard]
    assert [line for line in unseen.splitlines() if line.startswith("| split_spair | hard | ")] == [
        f"| split_spair | hard | {statistics.mean(halves):.3f} ± {statistics.stdev(halves):.3f} |"]
    saved = json.load(open(tmp_path / "fig8.json"))
    assert len(saved["spair_easy_seed0"]) == 2
    png = tmp_path / "fig8.png"
    if png.exists():  # matplotlib installed ([plot] extra)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_drops_validations_after_the_checkpoint_and_keeps_the_time_spent(tmp_path):
    import torch

    from benchmarks.fig8 import History, resume_point

    run = tmp_path / "spair_hard_seed0"
    assert resume_point(str(run)) is None  # nothing to resume: start afresh
    _write(run, [_row(500, 0.0, 0.0, wall=100.0), _row(1000, 0.3, 0.2, wall=200.0), _row(1500, 0.5, 0.4, wall=300.0)])
    (run / "checkpoints").mkdir()
    torch.save({"global_step": 1000}, run / "checkpoints" / "last.ckpt")  # killed after the 1,500 row, before its checkpoint
    assert resume_point(str(run)) == str(run / "checkpoints" / "last.ckpt")
    rows = [json.loads(line) for line in open(run / HISTORY)]
    assert [r["step"] for r in rows] == [500, 1000]
    assert History(str(run / HISTORY), counting=None).offset == 200.0


def test_a_resumed_run_writes_over_last_ckpt_so_a_second_resume_continues_from_it(tmp_path):
    """A resumed three-seed run saved last-v1.ckpt, and a second resume went back to the first
    interruption's step. The benchmark's checkpoint is written over in place, and the CLI trainer's
    default ModelCheckpoint (same state key, its own epoch=... files) is dropped."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.demos.boring_classes import BoringModel

    from benchmarks.fig8 import use_checkpointing

    last = tmp_path / "checkpoints" / "last.ckpt"
    seen = []  # last.ckpt's step at each epoch start: what a run killed there would resume from

    class Probe(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(torch.load(last, map_location="cpu", weights_only=False)["global_step"] if last.exists() else None)

    def fit(steps, ckpt_path=None):
        trainer = pl.Trainer(max_steps=steps, limit_train_batches=2, limit_val_batches=1, logger=False,
                             enable_checkpointing=True, default_root_dir=str(tmp_path), enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", callbacks=[Probe()])
        use_checkpointing(trainer, str(tmp_path))
        trainer.fit(BoringModel(), ckpt_path=ckpt_path)

    fit(6)
    assert seen == [None, 2, 4]  # saved after every epoch's validation, not only at the end of fit
    for f in (tmp_path / "checkpoints").iterdir():
        f.unlink()
    fit(2)
    # the state fig8.py's first last.ckpt held (read off a real run's file): the callback's own last path
    # not yet recorded, so Lightning's version counter took the resumed run's last.ckpt for a foreign file
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    for key, state in ckpt["callbacks"].items():
        if key.startswith("ModelCheckpoint"):
            state["last_model_path"] = ""
    torch.save(ckpt, last)
    fit(4, ckpt_path=str(last))
    fit(6, ckpt_path=str(last))
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6
    assert not [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("last-")]


def test_report_reads_lightning_fit_runs_of_a_config_folder_as_seeds(tmp_path):
    """`fig8.py --report --out runs/split_spair_hard`: the CLI's run folders (run.json + history.jsonl) are seeds."""
    from benchmarks.fig8 import load
    from splitlab.runs import write_run_info

    config = tmp_path / "split_spair_hard"
    for seed, acc in ((0, 0.7), (1, 0.9)):
        run = config / f"seed{seed}-20261206-101500-abcd"
        run.mkdir(parents=True)
        write_run_info(str(run), config="split_spair_hard", seed=seed)
        rows = [{"step": s, "epoch": 0, "metrics": {"val/count_acc": a, "val/count_acc_unseen_bg": a / 2, "val/loss": 1.0}}
                for s, a in ((500, 0.1), (1000, acc))]
        (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = load(str(config))
    assert sorted(runs) == ["split_spair_hard_seed0", "split_spair_hard_seed1"]
    assert [r["count_acc"] for r in runs["split_spair_hard_seed1"]] == [0.1, 0.9]
    text = report(str(config))
    assert "| split_spair | hard | 1000/1000 |" in text and "0.800 ± 0.141 (n=2)" in text
    assert load(str(config / "seed0-20261206-101500-abcd")).keys() == {"split_spair_hard_seed0"}  # one run
