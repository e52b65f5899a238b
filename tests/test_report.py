"""`python -m splitlab report`: the papers' tables from run folders, right means and stds, valid PNGs, bad input."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from splitlab.report import build_report, fmt, group_runs, read_runs
from tests.conftest import cli

PNG = b"\x89PNG\r\n\x1a\n"

SPLIT_VAE = {"model": {"class_path": "lightning_modules.vae.VAE", "init_args": {
    "z_g_dim": 16, "local_branch": {"class_path": "lightning_modules.split.LocalBranch", "init_args": {"patch_size": 1}}}},
    "data": {"class_path": "datamodules.svhn.SVHNDataModule", "init_args": {"root": "data/svhn"}}}
SPAIR_HARD = {"model": {"class_path": "lightning_modules.spair.SPAIR", "init_args": {"local_branch": None}},
              "data": {"class_path": "datamodules.multi_bird.MultiBirdDataModule",
                       "init_args": {"variant": "hard", "sprites": "synthetic"}}}


def write_run(folder: Path, name: str, seed: int, config: dict, metrics: dict, stage: str = "test",
              history: list[dict] | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "seed_everything": seed,
                                                        "trainer": {"default_root_dir": str(folder)}}))
    rec = {"config": name, "seed": seed, "step": 100, "stage": stage, "metrics": metrics}
    (folder / f"metrics_{stage}.json").write_text(json.dumps(rec))
    (folder / "metrics.json").write_text(json.dumps(rec))
    if history:
        (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


T1 = [(0.98, 0.85, 0.12), (0.97, 0.80, 0.10), (0.99, 0.90, 0.14)]
COUNT = [(0.30, 0.20), (0.40, 0.25), (0.50, 0.15)]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two configs x three seeds, as `lightning fit` + `lightning test` leave them."""
    root = tmp_path / "runs"
    for seed, (rec, zl, zg) in enumerate(T1):
        write_run(root / f"split_vae_svhn_seed{seed}", "split_vae_svhn", seed, SPLIT_VAE,
                  {"test/table1_acc_recon": rec, "test/table1_acc_resample_z_l": zl, "test/table1_acc_resample_z_g": zg,
                   "test/table1_gap": zl - zg, "test/table1_judge_acc": 0.99, "test/table1_judge_weak": 0.0},
                  history=[{"step": s, "epoch": s // 10, "metrics": {"val/loss": 10.0 - s / 10 + seed}} for s in (10, 20, 30)])
    for seed, (seen, unseen) in enumerate(COUNT):
        write_run(root / "fig8" / f"spair_hard_seed{seed}", "spair_hard", seed, SPAIR_HARD,
                  {"val/count_acc": seen, "val/count_acc_unseen_bg": unseen, "val/box_map50": 0.5,
                   "val/count_mean": 2.5}, stage="fit",
                  history=[{"step": 50, "epoch": 0, "metrics": {"val/count_acc": seen / 2}},
                           {"step": 100, "epoch": 1, "metrics": {"val/count_acc": seen}}])
    return root


def test_report_means_and_stds_and_figures(sweep, tmp_path):
    out = tmp_path / "report"
    text, figs, problems, groups = build_report([str(sweep)], str(out))
    assert not problems and {g.name for g in groups} == {"split_vae_svhn", "spair_hard"}
    z_l = [t[1] for t in T1]
    want = f"{statistics.fmean(z_l):.3f} ± {statistics.stdev(z_l):.3f} (3)"
    assert want in text  # Table 1, z_l resampled
    gap = [t[1] - t[2] for t in T1]
    assert f"{statistics.fmean(gap):.3f} ± {statistics.stdev(gap):.3f} (3)" in text
    seen = [c[0] for c in COUNT]
    assert f"{statistics.fmean(seen):.3f} ± {statistics.stdev(seen):.3f} (3)" in text  # Fig. 8, seen colours
    # the paper's numbers and which data each side used
    assert "0.873 ± 0.003" in text and "| SVHN |" in text
    assert "Multi-Bird-Hard (synthetic birds)" in text and "Paper 1, Fig. 8" in text
    assert (out / "report.md").read_text() == text
    names = {Path(p).name for p in figs}
    assert {"fig8.png", "table1.png"} <= names and any(n.startswith("curves_") for n in names)
    for p in figs:
        data = Path(p).read_bytes()
        assert data[:8] == PNG and len(data) > 1000


def test_fmt_is_mean_sample_std_and_count():
    assert fmt([1.0, 2.0, 3.0]) == "2.000 ± 1.000 (3)"
    assert fmt([0.5]) == "0.500 (1)" and fmt([]) == "—"


def test_runs_of_one_config_with_different_settings_are_grouped_apart(tmp_path):
    for seed, beta in ((0, 1.0), (1, 1.0), (2, 4.0)):
        cfg = json.loads(json.dumps(SPLIT_VAE))
        cfg["model"]["init_args"]["beta"] = beta
        write_run(tmp_path / f"r{seed}", "split_vae_svhn", seed, cfg, {"test/table1_gap": 0.1 * (seed + 1)})
    runs, problems = read_runs([str(tmp_path)])
    groups, notes = group_runs(runs)
    assert len(groups) == 2 and sorted(len(g.runs) for g in groups) == [1, 2]
    assert notes == ["runs of split_vae_svhn differ in model.init_args.beta: grouped apart"]
    assert any("beta=4.0" in g.label for g in groups)


def test_bad_input_is_reported_and_the_good_runs_still_covered(sweep, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = sweep / "broken_run"
    broken.mkdir()
    (broken / "config.yaml").write_text("model: {}\n")  # no metrics: the run never finished
    cut = sweep / "cut_run"
    cut.mkdir()
    (cut / "metrics_test.json").write_text('{"config": "x", "metri')  # killed while writing
    out = tmp_path / "rep"
    r = cli(["report", str(sweep), str(empty), str(tmp_path / "missing"), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "broken_run: no metrics_<stage>.json" in r.stderr and "cut_run: metrics_test.json unreadable" in r.stderr
    assert f"{empty}: no run folders" in r.stderr and "missing: no such folder" in r.stderr
    report = (out / "report.md").read_text()
    assert "## Skipped" in report and "split_vae_svhn" in report  # the good runs are still there


def test_a_folder_with_no_runs_is_one_paragraph_and_exit_2(tmp_path):
    r = cli(["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "splitlab error: no usable runs" in r.stderr


def test_wandb_logs_the_report_offline(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "rep"
    r = cli(["report", str(sweep), "--out", str(out), "--wandb"], env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "logged to W&B (offline)" in r.stdout
    assert list((out / "wandb").glob("offline-run-*"))


def test_a_real_run_writes_history_that_the_report_reads(tmp_path):
    run = tmp_path / "runs" / "q"
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.logger=false", "--trainer.max_steps=4",
             "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1", "--trainer.callbacks=[]",
             f"--trainer.default_root_dir={run}"])
    assert r.returncode == 0, r.stderr[-2000:]
    from tests.conftest import run_of

    lines = [json.loads(x) for x in (run_of(run) / "history.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4] and "val/loss" in lines[0]["metrics"]
    runs, problems = read_runs([str(tmp_path / "runs")])
    assert not problems and runs[0].name == "quickstart" and len(runs[0].history) == 2


def test_the_paper2_table_has_table4s_raw_pixel_row_and_the_papers_numbers(tmp_path):
    flow = {"model": {"class_path": "lightning_modules.flow_vae.FlowVAE", "init_args": {"z_dim": 64}},
            "data": {"class_path": "datamodules.cifar10.CIFAR10DataModule", "init_args": {"root": "data"}}}
    for seed, (z, v, px) in enumerate([(0.50, 0.20, 0.30), (0.60, 0.10, 0.40)]):
        write_run(tmp_path / "runs" / f"flow_seed{seed}", "flow_vae_cifar10", seed, flow,
                  {"test/bpd": 3.5, "test/probe_acc_z_g": z, "test/probe_acc_z_l": v, "test/probe_acc_pixels": px})
    text, _, problems, _ = build_report([str(tmp_path / "runs")], str(tmp_path / "report"))
    assert not problems
    section = text.split("### Paper 2")[1].split("###")[0]
    assert "SVM on raw pixels" in section
    row = next(line for line in section.splitlines() if "flow VAE" in line and "0.550" in line)
    assert "0.350 ± 0.071 (2)" in row  # the pixel column: mean ± sample std (n)
    assert "0.595 / 0.172 / 0.353" in row  # the paper's z / v / raw pixels (Table 4)
