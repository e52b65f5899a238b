"""A research cluster's use: one folder per run, W&B runs that continue, SLURM requeue and cancel, sbatch templates.

The SLURM tests run on the CPU under a simulated job: the job's variables set and a stand-in ``scontrol`` on PATH
that records its call, as Lightning's SLURM environment sees a real one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from splitlab import runs
from splitlab.errors import ConfigError
from tests.conftest import ROOT, cli, read_metrics, run_cli, run_of

COMMON = [
    "fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs=3", "--trainer.limit_train_batches=8",
    "--data.init_args.image_size=16", "--model.init_args.image_size=16",  # 16x16: the same code paths, 4x less compute
    "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1", "--trainer.accelerator=cpu",
]
NO_LOGGER = ["--trainer.logger=false"]


def _callbacks(tmp_path: Path, name: str, extra: list[dict]) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": extra}}))
    return str(path)


def _slurm_env(tmp_path: Path, job: str = "4242") -> dict[str, str]:
    """A one-task SLURM job as Lightning detects it, with a stand-in ``scontrol`` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n')
    scontrol.chmod(0o755)
    return {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "splitlab-test", "SLURM_JOB_ID": job, "SLURM_NODELIST": "localhost",
            "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SCONTROL_LOG": str(tmp_path / "scontrol.log"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


# ---------------------------------------------------------------- run folders (no training)
def test_run_names_come_from_run_slurm_or_seed_and_time(tmp_path):
    root = str(tmp_path)
    a, _, why = runs.choose_run(root, None, "fit", None, 3, env={})
    b, _, _ = runs.choose_run(root, None, "fit", None, 3, env={})
    assert os.path.basename(a).startswith("seed3-") and a != b and why == "a new run"  # two starts never share
    assert runs.choose_run(root, "mine", "fit", None, 0, env={})[0] == os.path.join(root, "mine")
    array = {"SLURM_ARRAY_JOB_ID": "812345", "SLURM_ARRAY_TASK_ID": "2", "SLURM_JOB_ID": "812347"}
    assert runs.choose_run(root, None, "fit", None, 0, env=array)[0] == os.path.join(root, "slurm-812345_2")
    assert runs.choose_run(root, None, "fit", None, 0, env={"SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "x"})[0].endswith("slurm-77")
    assert runs.slurm_run_name({"SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "bash"}) is None  # an interactive shell
    with pytest.raises(ConfigError, match="holds no run to resume"):
        runs.choose_run(root, None, "fit", "last", 0, env={})


def _fake_run(folder: Path, started: str, finished: bool = True) -> None:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    runs.write_run_info(str(folder), started=started)
    if finished:
        (folder / "metrics_fit.json").write_text("{}")


def test_resume_picks_the_newest_run_or_the_named_one_and_old_layouts_still_count(tmp_path):
    _fake_run(tmp_path / "b", "2026-12-01T10:00:00")
    _fake_run(tmp_path / "a", "2026-12-02T10:00:00")  # newer, though it sorts first by name
    assert runs.choose_run(str(tmp_path), None, "fit", "last", 0, env={})[0] == str(tmp_path / "a")
    assert runs.choose_run(str(tmp_path), "b", "test", "last", 0, env={})[0] == str(tmp_path / "b")
    assert runs.resolve(str(tmp_path)) == [str(tmp_path / "b"), str(tmp_path / "a")]  # a config's folder: its seeds
    old = tmp_path / "old"  # the older layout: the config's folder is the run
    (old / "checkpoints").mkdir(parents=True)
    (old / "config.yaml").write_text("model: {}\n")
    assert runs.newest_run(str(old)) == str(old) and runs.resolve(str(old)) == [str(old)]


def test_a_requeued_slurm_job_resumes_its_own_folder(tmp_path):
    env = {"SLURM_JOB_ID": "9", "SLURM_JOB_NAME": "train"}
    folder = tmp_path / "slurm-9"
    _fake_run(folder, "2026-12-01T10:00:00", finished=False)
    assert runs.choose_run(str(tmp_path), None, "fit", None, 0, env=env)[1] == "last"
    (folder / "hpc_ckpt_1.ckpt").write_bytes(b"x")
    path, ckpt, why = runs.choose_run(str(tmp_path), None, "fit", None, 0, env=env)
    assert path == str(folder) and ckpt is None and "hpc checkpoint" in why  # Lightning picks the hpc checkpoint


def test_naming_a_finished_run_without_ckpt_path_is_refused_and_nothing_is_overwritten(tmp_path):
    _fake_run(tmp_path / "done", "2026-12-01T10:00:00")
    before = {p: p.read_bytes() for p in (tmp_path / "done").rglob("*") if p.is_file()}
    r = cli(["fit", "--config", "configs/quickstart.yaml", f"--trainer.default_root_dir={tmp_path}", "--run=done",
             *NO_LOGGER, "--trainer.max_steps=1"])
    assert r.returncode == 2, r.stderr[-2000:]
    msg = r.stderr.split("splitlab error: ", 1)[1].strip()
    assert "\n" not in msg and "already a finished run" in msg and "--ckpt_path last" in msg
    assert "Traceback" not in r.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "done").rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------- training runs
@pytest.mark.slow
def test_two_fits_of_one_config_started_together_make_two_runs_that_report_groups_as_seeds(tmp_path):
    from splitlab.report import group_runs, read_runs

    root = tmp_path / "quickstart"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "splitlab", "fit", "--config", "configs/quickstart.yaml",
                               f"--seed_everything={s}", f"--trainer.default_root_dir={root}", "--trainer.max_steps=4",
                               "--trainer.limit_val_batches=1", "--trainer.callbacks=[]", "--trainer.accelerator=cpu",
                               "--data.init_args.copies=1", "--data.init_args.eval_copies=1"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    folders = runs.runs_in(str(root))
    assert len(folders) == 2
    ids = set()
    for f in map(Path, folders):
        for name in ("config.yaml", "run.json", "metrics_fit.json", "checkpoints/last.ckpt"):
            assert (f / name).is_file(), (f, name)
        info = json.loads((f / "run.json").read_text())
        ids.add(info["wandb_id"])
        assert list((f / "wandb").glob(f"offline-run-*-{info['wandb_id']}"))  # its own W&B run, in its own folder
    assert len(ids) == 2
    found, problems = read_runs([str(root)])
    groups, notes = group_runs(found)
    assert not problems and not notes and len(groups) == 1
    assert sorted(groups[0].seeds) == [0, 1]


def _wandb_runs(run: Path) -> list[dict]:
    from splitlab.wandb_files import read_run_file

    return [read_run_file(str(next(d.glob("run-*.wandb")))) for d in sorted((run / "wandb").glob("offline-run-*"))]


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_wandb_run(tmp_path):
    """fit, `kill` (SIGTERM) before step 12, resume: one W&B run id (offline here), its steps going on from the checkpoint.

    (After a SIGKILL an offline W&B run keeps nothing of the killed part; online, W&B has it already.)"""
    root = tmp_path / "runs"
    term = _callbacks(tmp_path, "term", [{"class_path": "tests.helpers.SignalAtStep",
                                          "init_args": {"step": 12, "signal": "SIGTERM"}}])
    r = run_cli([*COMMON, "--config", term, f"--trainer.default_root_dir={root}"])
    assert r.returncode == 143, r.stderr[-2000:]
    run = run_of(root)
    plain = _callbacks(tmp_path, "plain", [])
    r = run_cli([*COMMON, "--config", plain, f"--trainer.default_root_dir={root}", "--ckpt_path=last"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run folder {run} (the newest run" in r.stderr
    wid = json.loads((run / "run.json").read_text())["wandb_id"]
    first, second = _wandb_runs(run)
    assert first["run_id"] == second["run_id"] == wid
    steps = [[h["trainer/global_step"] for h in w["history"] if "train/loss" in h] for w in (first, second)]
    assert steps[0] == list(range(0, 12)) and steps[1] == list(range(12, 24))  # one curve: 0..11, then 12..23
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    lg = cfg["trainer"]["logger"]["init_args"]
    assert lg["group"] == "quickstart" and {"SPLIT-VAE", "ColouredDigits"} <= set(lg["tags"])  # seeds side by side
    assert cfg["run"] == run.name and lg["id"] == wid


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("full")
    r = run_cli([*COMMON, *NO_LOGGER, "--config", _callbacks(tmp, "plain", []), f"--trainer.default_root_dir={tmp}"])
    assert r.returncode == 0, r.stderr[-3000:]
    return read_metrics(tmp)


@pytest.mark.slow
def test_slurm_requeue_checkpoints_requeues_and_the_requeued_job_ends_bitwise_as_uninterrupted(tmp_path, uninterrupted):
    env = _slurm_env(tmp_path)
    signal_at = _callbacks(tmp_path, "usr1", [{"class_path": "tests.helpers.SignalAtStep",
                                               "init_args": {"step": 12, "signal": "SIGUSR1"}}])  # mid epoch 2
    args = [*COMMON, *NO_LOGGER, f"--trainer.default_root_dir={tmp_path / 'runs'}"]
    r = run_cli([*args, "--config", signal_at], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "runs" / "slurm-4242"
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    hpc = torch.load(run / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert hpc["global_step"] == 12 and not (run / "metrics_fit.json").exists()
    # the requeued job: the same command again, in the same job
    r = run_cli([*args, "--config", _callbacks(tmp_path, "plain", [])], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SLURM job requeued" in r.stderr
    resumed = read_metrics(run)
    assert resumed["step"] == uninterrupted["step"] == 24
    assert resumed["metrics"] == uninterrupted["metrics"]  # every final metric, bitwise


@pytest.mark.slow
def test_a_cancelled_run_leaves_a_checkpoint_and_resumes_bitwise(tmp_path, uninterrupted):
    root = tmp_path / "runs"
    term = _callbacks(tmp_path, "term", [{"class_path": "tests.helpers.SignalAtStep",
                                          "init_args": {"step": 12, "signal": "SIGTERM"}}])
    r = run_cli([*COMMON, *NO_LOGGER, "--config", term, f"--trainer.default_root_dir={root}", "--run=cancelled"])
    assert r.returncode == 143, (r.returncode, r.stderr[-3000:])
    last = torch.load(root / "cancelled" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 12
    r = run_cli([*COMMON, *NO_LOGGER, "--config", _callbacks(tmp_path, "plain", []), f"--trainer.default_root_dir={root}",
                 "--run=cancelled", "--ckpt_path=last"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_metrics(root / "cancelled")["metrics"] == uninterrupted["metrics"]


def test_only_a_launched_ddp_rank_takes_rank_zeros_folder(tmp_path):
    env = {runs.RUN_DIR_ENV: str(tmp_path / "r0")}
    assert runs.choose_run(str(tmp_path), None, "fit", None, 0, env={**env, "LOCAL_RANK": "1"})[0] == str(tmp_path / "r0")
    assert runs.choose_run(str(tmp_path), None, "fit", None, 0, env=env)[0] != str(tmp_path / "r0")  # a later run


def test_torchrun_needs_a_run_name_that_all_processes_share(tmp_path):
    env = {"TORCHELASTIC_RUN_ID": "none", "RANK": "3", "LOCAL_RANK": "1"}
    with pytest.raises(ConfigError, match="--run NAME"):
        runs.choose_run(str(tmp_path), None, "fit", None, 0, env=env)
    assert runs.choose_run(str(tmp_path), "a", "fit", None, 0, env=env)[0] == str(tmp_path / "a")
