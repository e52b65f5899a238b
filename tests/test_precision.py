"""Mixed precision end to end: every family trains a few steps with ``--trainer.precision bf16-mixed`` through the CLI
(CPU autocast here; CUDA autocast on a GPU), its losses and validation metrics finite and written to metrics.json.
That the flows' log-densities stay float32 under autocast is checked in tests/lightning_modules/test_flows.py."""
from __future__ import annotations

import math

import pytest

from tests.conftest import cli, read_metrics

FAMILIES = {
    "quickstart": "SPLIT-VAE", "quickstart_gmvae": "GMVAE", "quickstart_split_spair": "SPLIT-SPAIR",
    "quickstart_flow_vae": "flow VAE", "quickstart_glow": "refined Glow",
}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(FAMILIES))
def test_each_family_trains_under_bf16_mixed(config, tmp_path):
    r = cli(["fit", "--config", f"configs/{config}.yaml", "--trainer.precision=bf16-mixed", "--trainer.max_epochs=1",
             "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1", "--trainer.val_check_interval=1.0",
             "--trainer.check_val_every_n_epoch=1", "--trainer.callbacks=[]", "--trainer.logger=false",
             "--trainer.log_every_n_steps=1", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}"])
    assert r.returncode == 0, r.stderr[-3000:]
    m = read_metrics(tmp_path)
    assert m["step"] == 3
    for stage in ("train", "val"):
        assert isinstance(m["metrics"].get(f"{stage}/loss"), float), (stage, m["metrics"])
    bad = {k: v for k, v in m["metrics"].items() if not (isinstance(v, float) and math.isfinite(v))}
    assert not bad, bad
