"""A misspelt key, in the YAML or on the command line, gets one paragraph and exit status 2."""
from __future__ import annotations

import pytest

from splitlab.config_errors import accepted_names, explain
from tests.conftest import ROOT, cli

QUICKSTART = (ROOT / "configs" / "quickstart.yaml").read_text()

# (YAML edit, command-line flag, full key path in the message, rejecting class, suggestion)
CASES = {
    "model": (("z_g_dim: 16", "z_g_dimm: 16"), "--model.init_args.z_g_dimm=8",
              "model.init_args.z_g_dimm", "lightning_modules.vae.VAE", "z_g_dim"),
    "nested_model": (("patch_size: 1", "patch_sise: 1"), "--model.init_args.local_branch.init_args.patch_sise=2",
                     "model.init_args.local_branch.init_args.patch_sise", "lightning_modules.split.LocalBranch",
                     "patch_size"),
    "data": (("batch_size: 64", "batchsize: 64"), "--data.init_args.batchsize=8",
             "data.init_args.batchsize", "datamodules.digits.ColouredDigitsDataModule", "batch_size"),
    "callback": (("every_n_epochs: 2", "every_n_epoch: 2"),
                 "--trainer.callbacks+=callbacks.table1.Table1Callback --trainer.callbacks.every_n_epoch=2",
                 "trainer.callbacks[Table1Callback].init_args.every_n_epoch", "callbacks.table1.Table1Callback",
                 "every_n_epochs"),
}


def _check(r, path: str, owner: str, suggestion: str) -> None:
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip()
    assert "Traceback" not in err and "usage:" not in err and "Union subtypes" not in err, err
    paragraph = err[err.index("splitlab error:"):]
    assert "\n" not in paragraph, paragraph  # one paragraph
    assert f"`{path}`" in paragraph and owner in paragraph and f"Did you mean `{suggestion}`" in paragraph, paragraph


@pytest.mark.parametrize("case", sorted(CASES))
def test_misspelt_key_in_yaml(case, tmp_path):
    (old, new), _, path, owner, suggestion = CASES[case]
    assert old in QUICKSTART
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(QUICKSTART.replace(old, new, 1))
    r = cli(["fit", "--config", str(cfg), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    _check(r, path, owner, suggestion)
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.parametrize("case", sorted(CASES))
def test_misspelt_key_on_the_command_line(case, tmp_path):
    _, flag, path, owner, suggestion = CASES[case]
    r = cli(["fit", "--config", "configs/quickstart.yaml", *flag.split(), f"--trainer.default_root_dir={tmp_path}"])
    _check(r, path, owner, suggestion)


def test_trainer_and_top_level_typos_and_debug_keeps_the_full_report(tmp_path):
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_stepz=3"])
    _check(r, "trainer.max_stepz", "pytorch_lightning.Trainer", "max_steps")
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_stepz=3", "--debug"])
    assert r.returncode == 2 and "usage:" in r.stderr and "splitlab error" not in r.stderr


def test_explain_other_parse_errors_name_the_key():
    msg = 'Parser key "trainer.max_steps":\n  Expected a <class \'int\'>. Got value: abc'
    text = explain(msg)
    assert "`trainer.max_steps`" in text and "Expected a <class 'int'>" in text


def test_accepted_names_follow_kwargs_to_the_parent():
    class A:
        def __init__(self, a: int = 1, shared: int = 2) -> None: ...

    class B(A):
        def __init__(self, b: int = 0, **kwargs) -> None: ...

    assert accepted_names(B) == ["b", "a", "shared"]
