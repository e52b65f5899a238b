"""Run folders: one folder per run under its config's folder.

    runs/split_vae_svhn/                   the config's folder (``trainer.default_root_dir``)
        seed0-20261206-101500-3fa2/        one run: config.yaml, run.json, checkpoints/, images/,
        seed1-20261206-101502-9c01/        metrics*.json, history.jsonl, wandb/, latents_*.pt
        slurm-812345_2/                    a SLURM array task: the same folder again after a requeue

``run.json`` records the run's name, start time, seed, the W&B run id (so a resume continues the
same W&B run) and the SLURM job. A folder written before runs had their own folders (config.yaml
and checkpoints/ directly in the config's folder) is itself a run: it still loads, reports and
resumes.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from typing import Any

from splitlab.errors import ConfigError, DataError

RUN_FILE = "run.json"
#: set by rank 0 for the processes Lightning launches for DDP, so that all ranks use one folder
RUN_DIR_ENV = "SPLITLAB_RUN_DIR"


def is_run(folder: str) -> bool:
    """A run folder: written by one ``lightning fit`` (any layout)."""
    try:
        names = set(os.listdir(folder))
    except OSError:
        return False
    return bool(names & {RUN_FILE, "config.yaml", "checkpoints"}) or any(
        n.startswith("metrics") and n.endswith(".json") for n in names)


def runs_in(folder: str) -> list[str]:
    """The runs directly under a config's folder, oldest first (by start time)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = [os.path.join(folder, n) for n in names if n not in ("wandb", "checkpoints", "images")]
    found = [f for f in found if os.path.isdir(f) and is_run(f)]
    return sorted(found, key=_started)


def _started(folder: str) -> float:
    info = read_run_info(folder)
    if "started" in info:
        try:
            return _dt.datetime.fromisoformat(info["started"]).timestamp()
        except ValueError:
            pass
    return os.path.getmtime(folder)


def read_run_info(folder: str) -> dict[str, Any]:
    try:
        with open(os.path.join(folder, RUN_FILE)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def write_run_info(folder: str, **values: Any) -> dict[str, Any]:
    """Update ``run.json`` (written atomically: a crash never leaves half a file)."""
    info = {**read_run_info(folder), **{k: v for k, v in values.items() if v is not None}}
    tmp = os.path.join(folder, f".{RUN_FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, os.path.join(folder, RUN_FILE))
    return info


def slurm_run_name(env: dict[str, str] | None = None) -> str | None:
    """``slurm-<array job>_<task>`` or ``slurm-<job>`` inside a SLURM job (a requeued job keeps its id), else None."""
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm-{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID") and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return f"slurm-{env['SLURM_JOB_ID']}"
    return None


def new_run_name(seed: int | None) -> str:
    """A readable unique name: the seed, the start time and four random hex digits (two runs started together differ)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"seed{seed if seed is not None else 'none'}-{stamp}-{secrets.token_hex(2)}"


def newest_run(config_folder: str) -> str | None:
    """The run a ``--ckpt_path last`` resumes: the newest run of the config's folder, or the folder itself in the
    older layout (checkpoints directly inside it)."""
    found = runs_in(config_folder)
    if found:
        return found[-1]
    if os.path.isdir(os.path.join(config_folder, "checkpoints")):
        return config_folder
    return None


def has_checkpoint(run: str) -> bool:
    ck = os.path.join(run, "checkpoints")
    return (os.path.isdir(ck) and any(n.endswith(".ckpt") for n in os.listdir(ck))) or bool(hpc_checkpoints(run))


def hpc_checkpoints(run: str) -> list[str]:
    """Lightning's SLURM requeue checkpoints (``hpc_ckpt_<n>.ckpt``) in a run folder."""
    try:
        return sorted(n for n in os.listdir(run) if n.startswith("hpc_ckpt_") and n.endswith(".ckpt"))
    except OSError:
        return []


def is_finished(run: str) -> bool:
    return os.path.isfile(os.path.join(run, "metrics_fit.json"))


def resolve(path: str) -> list[str]:
    """The runs a path stands for: a run folder -> [it]; a config's folder -> its runs (seeds), oldest first."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"{path} is not a folder. Give a run folder (runs/<config>/<run>) or a config's folder "
                        "(runs/<config>, whose runs are seeds).")
    inner = runs_in(path)
    if inner:
        return inner
    if is_run(path):
        return [path]
    raise DataError(f"{path} holds no runs: a run folder has config.yaml and checkpoints/ (written by `lightning fit`); "
                    "a config's folder has run folders inside. Check the path, or train first.")


def choose_run(root: str, run: str | None, subcommand: str | None, ckpt_path: str | None, seed: int | None,
               env: dict[str, str] | None = None) -> tuple[str, str | None, str]:
    """Pick the run folder of one CLI call.

    Returns ``(folder, ckpt_path, why)``: the run folder, the checkpoint to pass on (``"last"`` is added for a
    requeued SLURM job that has only ``last.ckpt``), and a sentence saying which run it is.
    """
    env = os.environ if env is None else env
    if env.get(RUN_DIR_ENV) and int(env.get("LOCAL_RANK", "0") or 0) > 0:
        # a DDP rank that Lightning launched from rank 0 (which set LOCAL_RANK): rank 0 chose and checked the folder
        return env[RUN_DIR_ENV], ckpt_path, "the run folder of rank 0"
    slurm = slurm_run_name(env)
    if run is None and ckpt_path not in (None, "last", "hpc") and os.path.isfile(ckpt_path):
        owner = _run_of_checkpoint(ckpt_path)
        if owner is not None:  # --ckpt_path runs/x/<run>/checkpoints/epoch=3.ckpt: that run
            return owner, ckpt_path, f"the run of {ckpt_path}"
    if run is None and slurm is None and ckpt_path in ("last", "hpc"):
        found = newest_run(root)
        if found is None:
            raise ConfigError(
                f"--ckpt_path {ckpt_path}: {root} holds no run to resume (no run folder with checkpoints/). Train "
                "first (`lightning fit` without --ckpt_path), or give the config's folder with "
                "--trainer.default_root_dir and the run with --run NAME.")
        return found, ckpt_path, "the newest run of this config (--run NAME picks another)"
    if run is None and slurm is None and env.get("TORCHELASTIC_RUN_ID") is not None:
        raise ConfigError(
            "under torchrun every process starts on its own, so they cannot agree on a generated run name: give "
            "the run folder's name with --run NAME (the same on every node), e.g. --run torchrun-$(date +%Y%m%d-%H%M).")
    name = run or slurm or new_run_name(seed)
    if os.sep in name or name in ("", ".", "..", "checkpoints", "wandb", "images"):
        raise ConfigError(f"--run {name!r}: a run name is one folder name (no '/'), not a reserved name.")
    folder = os.path.join(root, name)
    exists = os.path.isdir(folder) and (has_checkpoint(folder) or is_finished(folder))
    if not exists:
        return folder, ckpt_path, ("a new run" if run is None and slurm is None else f"run {name}")
    if ckpt_path is not None or subcommand != "fit":
        return folder, ckpt_path, f"run {name}"
    if run is None and slurm is not None:  # the same job again: SLURM requeued it
        if hpc_checkpoints(folder):
            return folder, None, f"run {name} (SLURM job requeued: Lightning resumes from its hpc checkpoint)"
        return folder, "last", f"run {name} (SLURM job requeued: resuming from checkpoints/last.ckpt)"
    state = "a finished run" if is_finished(folder) else "a run with checkpoints"
    raise ConfigError(
        f"--run {name}: {folder} is already {state}; starting it again would overwrite its checkpoints and "
        "metrics, so nothing was started. To continue it, add --ckpt_path last; to train anew, give another "
        "--run name (or none, for a fresh name); to evaluate it, use `lightning test ... --run "
        f"{name} --ckpt_path last`.")


def folder_of_checkpoint(ckpt: str) -> str:
    """The folder a checkpoint file belongs to: ``<run>/checkpoints/x.ckpt`` -> ``<run>`` (else its own folder)."""
    parent = os.path.dirname(os.path.abspath(ckpt))
    return os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else parent


def _run_of_checkpoint(ckpt: str) -> str | None:
    folder = folder_of_checkpoint(ckpt)
    return folder if os.path.isfile(os.path.join(folder, RUN_FILE)) else None
