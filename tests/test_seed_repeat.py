"""The seed-repeat table reads run logs and gives the right mean ± std."""
import pytest

from benchmarks.seed_repeat import table


def test_table_mean_and_std_from_records():
    from splitlab.report import Run

    runs = [Run(folder=f"r{i}", name="c", seed=i, config={}, records={"test": {"metrics": {"test/cluster_acc": v, "val/x": 1.0}}})
            for i, v in enumerate((0.5, 0.7, 0.6))]
    out = table(runs)
    assert "| test/cluster_acc | 0.6000 ± 0.1000 (3) | 0.5, 0.7, 0.6 |" in out
    assert "val/x" not in out


@pytest.mark.slow  # starts the CLI as several fresh processes
def test_seed_repeat_end_to_end_reads_the_runs(tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    cfg = yaml.safe_load((ROOT / "configs" / "quickstart_split_gmvae.yaml").read_text())
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "run")
    cfg["trainer"]["logger"] = False
    cfg["trainer"]["callbacks"] = [{"class_path": "callbacks.clustering.ClusteringCallback"}]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [sys.executable, "benchmarks/seed_repeat.py", "--config", str(path), "--seeds", "0", "1", "--",
         "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=2",
         "--data.init_args.copies=1", "--data.init_args.eval_copies=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| test/cluster_acc |" in r.stdout and " (2) |" in r.stdout
    assert (tmp_path / "run" / "seeds.md").exists()  # in the config's folder, beside its runs
    assert (tmp_path / "run" / "seed1" / "metrics_test.json").exists()
