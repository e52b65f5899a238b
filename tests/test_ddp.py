"""2-process CPU DDP runs (gloo) of the quick-starts work, and the evaluation metrics they give
(Table 1 accuracies, clustering ACC / NMI / ARI) equal the one-process values on the same data
and checkpoint."""
from __future__ import annotations

import math

import pytest

from tests.conftest import cli, read_metrics, run_cli, run_of

SMALL = ["--trainer.accelerator=cpu", "--trainer.logger=false", "--data.init_args.copies=1",
         "--data.init_args.eval_copies=1", "--data.init_args.val_digits=101",  # 101: uneven shards
         "--data.init_args.eval_batch_size=1",  # per-image forward passes: no batch-size float noise
         "--data.init_args.image_size=16", "--model.init_args.image_size=16"]  # 16x16: the same code paths, less compute

CASES = {
    "quickstart": ("val/table1_acc_recon", "val/table1_acc_resample_z_l", "val/table1_acc_resample_z_g"),
    "quickstart_split_gmvae": ("val/cluster_acc", "val/cluster_acc_hungarian", "val/cluster_nmi", "val/cluster_ari"),
    "quickstart_split_spair": ("val/count_acc", "val/count_acc_unseen_bg", "val/count_mae", "val/box_map50",
                               "val/box_map50_unseen_bg"),
}


def _small(config: str, tmp_path) -> list[str]:
    if "spair" not in config:
        return SMALL
    return ["--trainer.accelerator=cpu", "--trainer.logger=false", f"--data.init_args.root={tmp_path / 'mb'}",
            "--data.init_args.num_train=128", "--data.init_args.num_val=11", "--data.init_args.num_test=11",
            "--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=1"]


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.parametrize("config", list(CASES))
def test_two_process_ddp_fit_and_metrics_match_one_process(config, tmp_path):
    cfg = f"configs/{config}.yaml"
    run = tmp_path / "ddp"
    SMALL = _small(config, tmp_path)  # noqa: N806
    r = run_cli(["fit", "--config", cfg, *SMALL, "--trainer.devices=2", "--trainer.strategy=ddp",
                 "--trainer.max_steps=6", "--trainer.limit_val_batches=0", f"--trainer.default_root_dir={run}"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert read_metrics(run)["step"] == 6
    assert (run_of(run) / "checkpoints" / "last.ckpt").exists()  # one run folder for both ranks

    values = {}
    for devices in (1, 2):
        extra = ["--trainer.strategy=ddp"] if devices == 2 else []
        run_it = run_cli if devices == 2 else cli  # DDP launches its ranks from a fresh process
        r = run_it(["validate", "--config", cfg, *SMALL, f"--trainer.devices={devices}", *extra,
                    f"--trainer.default_root_dir={run}", "--ckpt_path=last"])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
        values[devices] = read_metrics(run)["metrics"]
    for key in CASES[config]:
        assert key in values[1], (key, values[1])
        assert math.isclose(values[1][key], values[2][key], abs_tol=1e-5), (key, values)
