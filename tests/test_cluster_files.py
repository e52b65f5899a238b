"""The cluster files users submit: sbatch templates and sweep files, each checked with the real CLI."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from splitlab import sweep
from splitlab.errors import ConfigError
from tests.conftest import ROOT, cli, read_metrics

TEMPLATES = sorted((ROOT / "cluster" / "slurm").glob("*.sbatch"))
SWEEPS = sorted((ROOT / "cluster" / "sweeps").glob("*.yaml"))


def _stubs(tmp_path: Path) -> Path:
    """``srun`` that runs its command with ``--print_config`` (parse, print, start nothing), ``lightning`` = our CLI."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nexec "$@" --print_config\n')
    (bin_dir / "lightning").write_text(f'#!/bin/sh\nexec "{os.sys.executable}" -m splitlab "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def test_templates_are_shipped():
    assert {t.name for t in TEMPLATES} >= {"one_node.sbatch", "multi_node.sbatch", "seed_array.sbatch", "sweep_array.sbatch"}


@pytest.mark.slow  # runs each template under bash, which starts the CLI as a fresh process
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_each_sbatch_template_requeues_and_its_command_parses_with_the_cli(template, tmp_path):
    text = template.read_text()
    assert "#SBATCH --signal=SIGUSR1@" in text and "#SBATCH --requeue" in text  # Lightning's auto-requeue signal
    ntasks = int(next(line.split("=")[1] for line in text.splitlines() if line.startswith("#SBATCH --ntasks-per-node")))
    nodes = int(next(line.split("=")[1] for line in text.splitlines() if line.startswith("#SBATCH --nodes")))
    env = {**os.environ, "PATH": f"{_stubs(tmp_path)}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "SLURM_JOB_ID": "812347", "SLURM_ARRAY_JOB_ID": "812345", "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_NTASKS_PER_NODE": str(ntasks), "SLURM_NNODES": str(nodes)}
    arg = "cluster/sweeps/split_vae_svhn.yaml" if "sweep" in template.name else "configs/split_spair_hard.yaml"
    r = subprocess.run(["bash", str(template), arg, "--trainer.max_steps=10"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = yaml.safe_load(r.stdout)
    assert cfg["trainer"]["max_steps"] == 10 and cfg["trainer"]["accelerator"] == "gpu"
    assert str(cfg["trainer"]["devices"]) in (str(ntasks), "1") and cfg["trainer"]["num_nodes"] in (nodes, 1)
    if "seed_array" in template.name:
        assert cfg["seed_everything"] == 1  # the array task's seed
    if "sweep" in template.name:
        assert cfg["model"]["init_args"]["beta"] == 40.0  # trial 1 of the file: patch size 1, beta 40


@pytest.fixture(scope="module")
def parser():
    return sweep.cli_parser()


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_grid_point_of_each_sweep_file_expands_and_parses(path, parser):
    """Every trial line is expanded; each is parsed with the CLI where the grid is small. The 1,728-point paper grid
    of SPLIT-GMVAE is parsed at every value of each parameter (its points combine independent typed model values,
    so a point parses exactly when each of its values does) and at its first and last points."""
    spec = sweep.load(str(path))
    names, values = sweep.grid(spec)
    lines = sweep.trials(spec)
    n = 1
    for v in values:
        n *= len(v)
    assert len(lines) == n == len({tuple(x) for x in lines})
    assert all(x[:3] == ["lightning", "fit", "--config"] and Path(ROOT / x[3]).is_file() for x in lines)
    if n <= 64:
        sweep.check(lines, parser)
    else:
        singles = [[*lines[0][:4], f"--{name}={sweep._value(v)}"] for name, vals in zip(names, values) for v in vals]
        sweep.check([*singles, lines[0], lines[-1]], parser)
    metric = spec["metric"]["name"]
    assert metric.startswith("val/")


def test_one_sweep_trial_trains_a_few_steps(fake_svhn, tmp_path):
    line = sweep.trials(sweep.load(str(ROOT / "cluster" / "sweeps" / "split_vae_svhn.yaml")))[-1]  # r = 8, beta = 40
    root = tmp_path / "runs"
    r = cli([*line[1:], f"--data.init_args.root={fake_svhn}", "--data.init_args.download=false",
             "--data.init_args.verify_md5=false", "--data.init_args.val_size=16", "--trainer.max_steps=2",
             "--trainer.limit_val_batches=1", "--trainer.callbacks=[]", "--trainer.logger=false",
             "--trainer.accelerator=cpu", f"--trainer.default_root_dir={root}"])
    assert r.returncode == 0, r.stderr[-3000:]
    m = read_metrics(root)
    assert m["step"] == 2 and m["config"] == "split_vae_svhn"
    cfg = yaml.safe_load(next(root.glob("*/config.yaml")).read_text())
    assert cfg["model"]["init_args"]["local_branch"]["init_args"]["patch_size"] == 8


def test_a_sweep_key_that_is_not_an_option_gets_the_config_error(tmp_path, parser):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"program": "lightning", "method": "grid",
                                   "parameters": {"model.init_args.alphaa": {"values": [1, 5]}},
                                   "command": ["${program}", "fit", "--config", "configs/split_gmvae_svhn_k30.yaml", "${args}"]}))
    r = cli(["sweep", str(bad), "--check"])
    assert r.returncode == 2
    msg = r.stderr.split("splitlab error: ", 1)[1].strip()
    assert "\n" not in msg and "alphaa" in msg and "Did you mean `alpha`" in msg
    line = sweep.trials(sweep.load(str(bad)))[0]  # the trial itself, started as an agent would: the same paragraph
    r = cli(line[1:])
    assert r.returncode == 2 and "Did you mean `alpha`" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ConfigError, match="distributions"):
        sweep.grid({"parameters": {"model.init_args.beta": {"min": 1, "max": 2}}})
    assert shlex.join(line).startswith("lightning fit --config configs/split_gmvae_svhn_k30.yaml --model.init_args.alphaa=1")
