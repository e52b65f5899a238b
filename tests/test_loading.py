"""A trained run loads in one line: ``<Family>.load_from_checkpoint(path)`` and ``splitlab.load(run)``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import splitlab
from lightning_modules.gmvae import GMVAE
from lightning_modules.vae import VAE
from splitlab.errors import DataError
from tests.conftest import ROOT, cli, run_of

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


@torch.no_grad()
def _outputs(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Deterministic outputs on a fixed batch: reconstruction from the posterior means."""
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    model.eval()
    if hasattr(model, "decode"):
        return model.decode(model.encode(x))
    return model(x)


def _image_shape(cfg: dict) -> tuple[int, int, int]:
    init = cfg["model"].get("init_args", {})
    return init.get("channels", 3), init.get("image_size", 32), init.get("image_size", 32)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert type(a) is type(b)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_rebuilds_exactly_from_its_checkpoint(cfg, tmp_path):
    """The model LightningCLI builds from each shipped config comes back identical from its checkpoint."""
    from splitlab.cli import SplitlabCLI

    cli = SplitlabCLI(args=["--config", str(cfg), "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}",
                            "--trainer.accelerator=cpu", "--trainer.devices=1"], run=False)
    model = cli.model
    model.configure_model()  # as the Trainer does before fit (memory format); load_from_checkpoint does it too
    with torch.no_grad():  # distinct values, so a parameter left at its init would show
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cli.trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    cli.trainer.save_checkpoint(path)
    again = type(model).load_from_checkpoint(path)
    _same(model, again)
    assert dict(again.hparams) == dict(model.hparams)
    loaded = splitlab.load(path)
    _same(model, loaded)
    assert not loaded.training
    if hasattr(model, "encode") and type(model).__name__ != "Classifier":
        shape = _image_shape(yaml.safe_load(cfg.read_text()))
        torch.manual_seed(0)
        want = _outputs(model, shape)
        torch.manual_seed(0)
        assert torch.equal(_outputs(again, shape), want)
        torch.manual_seed(0)
        assert torch.equal(_outputs(loaded, shape), want)


FAMILIES = ["quickstart.yaml", "quickstart_gmvae.yaml", "quickstart_split_spair.yaml", "quickstart_flow_vae.yaml"]


@pytest.mark.parametrize("name", FAMILIES)
def test_one_trained_step_per_family_reloads_both_ways(name, tmp_path):
    root = tmp_path / "runs"
    r = cli(["fit", "--config", f"configs/{name}", "--trainer.logger=false", "--trainer.max_steps=1",
             "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", f"--trainer.default_root_dir={root}", "--trainer.accelerator=cpu"])
    assert r.returncode == 0, r.stderr[-3000:]
    run = run_of(root)
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    cfg = yaml.safe_load((ROOT / "configs" / name).read_text())
    shape = _image_shape(cfg)

    by_folder = splitlab.load(root)  # the config's folder: its one run
    assert splitlab.load(run).run.folder == str(run)  # the run folder itself
    cls = type(by_folder)
    by_class = cls.load_from_checkpoint(ckpt)
    for m in (by_folder, by_class):
        assert m.state_dict().keys() == state.keys()
        assert all(torch.equal(m.state_dict()[k], state[k]) for k in state)
    torch.manual_seed(0)
    a = _outputs(by_folder, shape)
    torch.manual_seed(0)
    assert torch.equal(a, _outputs(by_class, shape))
    # the run at hand: config, metrics, datamodule
    assert by_folder.run.folder == str(run) and by_folder.run.checkpoint == str(ckpt.resolve())
    assert by_folder.run.metrics["fit"]["step"] == 1
    assert by_folder.run.data_config["class_path"] == cfg["data"]["class_path"]
    assert type(by_folder.run.datamodule()).__name__ == cfg["data"]["class_path"].rsplit(".", 1)[1]


def test_plain_vae_comes_back_with_its_own_likelihood(tmp_path):
    """The plain VAE's likelihood is a config object: it must not fall back to the class default."""
    run = tmp_path / "run"
    r = cli(["fit", "--config", "configs/quickstart_vae.yaml", "--trainer.logger=false", "--trainer.max_steps=1",
             "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", f"--trainer.default_root_dir={run}",
             "--model.init_args.likelihood=lightning_modules.nn.distributions.Bernoulli"])
    assert r.returncode == 0, r.stderr[-3000:]
    m = VAE.load_from_checkpoint(run_of(run) / "checkpoints" / "last.ckpt")
    assert type(m.likelihood).__name__ == "Bernoulli"


def _write_ckpt_of(tmp_path: Path) -> Path:
    from splitlab.cli import SplitlabCLI

    cli = SplitlabCLI(args=["--config", "configs/quickstart_gmvae.yaml", "--trainer.logger=false",
                            f"--trainer.default_root_dir={tmp_path}"], run=False)
    cli.trainer.strategy.connect(cli.model)
    cli.trainer.save_checkpoint(tmp_path / "gmvae.ckpt")
    return tmp_path / "gmvae.ckpt"


def test_missing_and_foreign_files_get_one_paragraph(tmp_path):
    def one_paragraph(e: pytest.ExceptionInfo) -> str:
        text = str(e.value)
        assert "\n" not in text and len(text) < 800, text
        return text

    with pytest.raises(DataError) as e:
        VAE.load_from_checkpoint(tmp_path / "nope.ckpt")
    assert "does not exist" in one_paragraph(e)
    with pytest.raises(DataError) as e:
        splitlab.load(tmp_path / "nope.ckpt")
    assert "does not exist" in one_paragraph(e)
    with pytest.raises(DataError) as e:
        splitlab.load(tmp_path)  # a folder with no runs
    assert "holds no runs" in one_paragraph(e)
    (tmp_path / "old_run").mkdir()
    (tmp_path / "old_run" / "config.yaml").write_text("model: {}\n")
    with pytest.raises(DataError) as e:
        splitlab.load(tmp_path / "old_run")  # a run folder with no checkpoint
    assert "no checkpoints/last.ckpt" in one_paragraph(e)
    import shutil

    shutil.rmtree(tmp_path / "old_run")

    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    for load in (VAE.load_from_checkpoint, splitlab.load):
        with pytest.raises(DataError) as e:
            load(junk)
        assert "not a readable PyTorch checkpoint" in one_paragraph(e)

    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, weights)
    with pytest.raises(DataError) as e:
        VAE.load_from_checkpoint(weights)
    assert "not a Lightning checkpoint" in one_paragraph(e)

    gmvae = _write_ckpt_of(tmp_path)
    with pytest.raises(DataError) as e:
        VAE.load_from_checkpoint(gmvae)
    assert "holds a lightning_modules.gmvae.GMVAE model, not a VAE" in one_paragraph(e)
    assert isinstance(splitlab.load(gmvae), GMVAE)


def test_a_checkpoint_without_recorded_config_is_rebuilt_from_the_run_config(tmp_path):
    """Checkpoints written before the CLI recorded its instantiation still load from config.yaml."""
    run = tmp_path / "run"
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.logger=false", "--trainer.max_steps=1",
             "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", f"--trainer.default_root_dir={run}"])
    assert r.returncode == 0, r.stderr[-3000:]
    run = run_of(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["hyper_parameters"] = {k: v for k, v in state["hyper_parameters"].items()
                                 if k not in ("_instantiator", "_class_path", "local_branch", "likelihood")}
    torch.save(state, ckpt)
    m = splitlab.load(run)
    assert m.local_branch is not None and all(torch.equal(m.state_dict()[k], v) for k, v in state["state_dict"].items())
    assert json.loads((run / "metrics.json").read_text())["step"] == 1
