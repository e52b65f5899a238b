"""The ``lightning`` command: LightningCLI with splitlab's run folder conventions.

    lightning fit --config configs/split_vae_svhn.yaml
    lightning test --config configs/split_vae_svhn.yaml --ckpt_path last
    python -m splitlab fit --config configs/quickstart.yaml
    python -m splitlab report runs/            # the papers' tables from run folders
    lightning sweep cluster/sweeps/FILE.yaml   # a sweep file as one command line per trial

Model and data are chosen by ``class_path`` in the YAML. ``trainer.default_root_dir`` is the
config's folder; every ``fit`` makes a run folder of its own inside it (``--run NAME``, the SLURM
job, or the seed and start time: :mod:`splitlab.runs`), holding ``config.yaml``, ``run.json``,
``checkpoints/last.ckpt``, the image grids, ``metrics.json`` and the W&B files. ``--ckpt_path
last`` resumes the newest run (or ``--run NAME``) and continues its W&B run. Errors a user can
fix (a bad value, a missing dataset, a NaN loss, a finished run named again) print as one paragraph.
"""
from __future__ import annotations

import datetime
import os
import secrets
import sys
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from callbacks.latents import LatentsWriter
from callbacks.lr import replace_lightning_monitors
from callbacks.metrics_json import MetricsJson
from callbacks.preemption import Preemption
from callbacks.progress import use_line_progress
from splitlab import runs
from splitlab.config_errors import DEBUG_ENV, SplitlabArgumentParser
from splitlab.errors import SplitlabError


class RunFolderConfig(SaveConfigCallback):
    """Saves the resolved config as ``<default_root_dir>/config.yaml`` (also on resume) and
    hands it to W&B as the run config."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        folder = trainer.default_root_dir
        os.makedirs(folder, exist_ok=True)
        self.parser.save(self.config, os.path.join(folder, self.config_filename), skip_none=False, overwrite=True,
                         multifile=False)
        for lg in trainer.loggers:
            if type(lg).__name__ == "WandbLogger":
                try:
                    lg.experiment.config.update(self.config.as_dict(), allow_val_change=True)
                except Exception:  # logging the config must never stop training
                    pass


class SplitlabCLI(LightningCLI):
    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", RunFolderConfig)
        kwargs.setdefault("parser_class", SplitlabArgumentParser)  # a misspelt key: one paragraph, exit 2
        kwargs.setdefault("save_config_kwargs", {"save_to_log_dir": False, "overwrite": True})
        self.run_folder: str | None = None
        super().__init__(model_class=None, datamodule_class=None, args=args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--run", type=str | None, default=None,
                            help="Name of the run folder inside trainer.default_root_dir (the config's folder). "
                                 "Default: a new name from the seed and start time (fit), the newest run "
                                 "(--ckpt_path last), or the SLURM job (array job id + task id) inside a SLURM job.")

    def _config_name(self) -> str | None:
        cfg = self._run_config()
        paths = cfg.get("config") or []
        if not paths:
            return None
        path = str(getattr(paths[0], "absolute", paths[0]))  # the first --config; later ones are overrides
        name = os.path.splitext(os.path.basename(path))[0]
        if name == "config" and runs.is_run(os.path.dirname(path)):  # a run's own saved config.yaml
            name = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path)))) or name
        return name

    def before_instantiate_classes(self) -> None:
        """Choose this call's run folder (:func:`splitlab.runs.choose_run`), record it in ``run.json``, and point
        the W&B logger at it: its files in the run folder, the run's own W&B id (a resume continues the same W&B
        run), the config's name as the W&B group (its seeds side by side) and the model family and data as tags."""
        cfg = self._run_config()
        name = self._config_name()
        root = cfg.get("trainer.default_root_dir") or os.path.join("runs", name or "default")
        seed = cfg.get("seed_everything")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        folder, ckpt, why = runs.choose_run(os.fspath(root), cfg.get("run"), self.subcommand, cfg.get("ckpt_path"), seed)
        if self.subcommand is not None and ckpt != cfg.get("ckpt_path"):
            cfg["ckpt_path"] = ckpt
        run_name = os.path.basename(os.path.normpath(folder))
        if os.path.normpath(os.path.dirname(os.path.normpath(folder))) == os.path.normpath(os.fspath(root)):
            cfg["run"] = run_name  # the saved config.yaml names its run
        self.run_folder, self._run_why = folder, why
        info = runs.read_run_info(folder)
        self._run_info = {"name": run_name, "config": name, "seed": seed,
                          "started": info.get("started") or _now(),
                          "wandb_id": info.get("wandb_id") or _agent_run_id() or secrets.token_hex(4), "slurm_job": runs.slurm_run_name()}
        self._point_loggers(cfg, folder, name, self._run_info)

    def _open_run_folder(self) -> None:
        """Write the run folder's ``run.json`` once model and data were built (a bad config leaves no folder)."""
        if self.run_folder is None or not _is_rank_zero():
            return
        os.makedirs(self.run_folder, exist_ok=True)
        runs.write_run_info(self.run_folder, **self._run_info)
        os.environ[runs.RUN_DIR_ENV] = self.run_folder  # the DDP ranks Lightning launches use this folder too
        print(f"splitlab: run folder {self.run_folder} ({self._run_why})", file=sys.stderr, flush=True)

    def _point_loggers(self, cfg: Any, folder: str, name: str | None, info: dict[str, Any]) -> None:
        loggers = cfg.get("trainer.logger")
        for lg in loggers if isinstance(loggers, list) else [loggers]:
            if not hasattr(lg, "get") or not str(lg.get("class_path", "")).endswith("WandbLogger"):
                continue
            args = lg.get("init_args")
            if args is None:
                lg["init_args"] = args = type(lg)()
            args["save_dir"] = folder
            if info.get("wandb_id"):
                args["id"] = info["wandb_id"]
            args["name"] = f"{args.get('name') or name}/{info['name']}"
            if not args.get("group"):
                args["group"] = name
            args["tags"] = list(dict.fromkeys([*(args.get("tags") or []), *_family_tags(cfg)]))

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path FILE`` Lightning builds the model from the checkpoint's saved values, so that a
        resumed run goes on as it was. A model value that the config or command line sets differently is then
        silently dropped; print which ones, so a changed value is never mistaken for a tested one."""
        sub = self.config.get("subcommand")
        def model_values() -> dict[str, Any]:  # jsonargparse flattens: {"init_args.beta": 1.0, ...}
            node = self.config[sub].get("model") if sub else None
            return dict(node.items()) if node is not None else {}

        before = model_values()
        super()._parse_ckpt_path()
        after = model_values()
        dropped = {k: (v, after[k]) for k, v in before.items() if k in after and after[k] != v}
        if dropped:
            listed = "; ".join(f"model.{k}: {v!r} -> {w!r}" for k, (v, w) in sorted(dropped.items()))
            print(f"\nsplitlab: --ckpt_path {self.config[sub].get('ckpt_path')}: Lightning builds the model with the "
                  f"checkpoint's own values, so these model values from the config or command line are not used "
                  f"(yours -> the checkpoint's): {listed}. To train with new model values, start a new run "
                  "(without --ckpt_path).\n", file=sys.stderr)

    def _run_config(self) -> Any:
        return self.config.get(self.subcommand) if self.subcommand else self.config

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        cfg = self._run_config()
        name = self._config_name()
        seed = cfg.get("seed_everything")
        if self.run_folder is not None:
            kwargs.setdefault("default_root_dir", self.run_folder)
            self._open_run_folder()
        trainer = super().instantiate_trainer(**kwargs)
        replace_lightning_monitors(trainer)  # Lightning's refuses `--trainer.logger false`
        use_line_progress(trainer)  # a SLURM log file gets a line now and then, not a redrawn bar
        trainer.callbacks.append(MetricsJson(config_name=name, seed=seed if isinstance(seed, int) else None))
        trainer.callbacks.append(Preemption())
        if not any(isinstance(cb, LatentsWriter) for cb in trainer.callbacks):
            trainer.callbacks.append(LatentsWriter())  # `lightning predict` writes the latents into the run folder
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint):
                if cb.dirpath is None:  # a fixed folder, so `--ckpt_path last` finds it again
                    cb.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
                if cb.save_last is None:
                    cb.save_last = True
        return trainer


def _is_rank_zero() -> bool:
    """Global rank 0 of a job (SLURM task 0, or the process that Lightning's launcher starts the others from)."""
    if os.environ.get("SLURM_PROCID") and runs.slurm_run_name():
        return os.environ["SLURM_PROCID"] == "0"
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None and os.environ.get("RANK"):  # torchrun: the global rank
        return os.environ["RANK"] == "0"
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and int(os.environ.get("NODE_RANK", "0") or 0) == 0


def _agent_run_id() -> str | None:
    """The run id a W&B sweep agent gives its trial (``WANDB_RUN_ID`` with ``WANDB_SWEEP_ID``): the trial must log
    under it for the sweep to see its metric."""
    return os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _family_tags(cfg: Any) -> list[str]:
    """W&B tags: the model family (``SPLIT-VAE`` when a local branch is on), the data module's name."""
    tags = []
    model = cfg.get("model")
    if hasattr(model, "get") and model.get("class_path"):
        family = str(model["class_path"]).rsplit(".", 1)[-1]
        branch = model.get("init_args.local_branch") if model.get("init_args") is not None else None
        tags.append(f"SPLIT-{family}" if branch else family)
    data = cfg.get("data")
    if hasattr(data, "get") and data.get("class_path"):
        tags.append(str(data["class_path"]).rsplit(".", 1)[-1].removesuffix("DataModule"))
    return tags


def build_cli(args: list[str]) -> SplitlabCLI:
    """The CLI's model, data and trainer from ``args`` (``run=False``), for scripts that call
    ``trainer.fit`` themselves (``benchmarks/``). The calling script's own flags in ``sys.argv``
    are hidden while it parses, so LightningCLI does not warn that it got both."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return SplitlabCLI(args=args, run=False)
    finally:
        sys.argv = argv


def main(args: Any = None) -> None:
    """Entry point of the ``lightning`` console script. ``--debug`` keeps jsonargparse's full reports."""
    argv = sys.argv if args is None else args
    rest = list(argv[1:] if args is None else argv)
    if rest[:1] == ["report"]:  # `lightning report RUNS...` / `python -m splitlab report RUNS...`
        from splitlab.report import main as report_main

        sys.exit(report_main(rest[1:]))
    if rest[:1] == ["sweep"]:  # `lightning sweep FILE`: one command line per trial
        from splitlab.sweep import main as sweep_main

        sys.exit(sweep_main(rest[1:]))
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"
        if args is None:
            sys.argv[:] = argv
        else:
            args = argv
    try:
        SplitlabCLI(args=args)
    except SplitlabError as e:
        print(f"\nsplitlab error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        # jsonargparse wraps errors raised while building the model / data; unwrap ours
        ours = _find_ours(e)
        if ours is None:
            raise
        print(f"\nsplitlab error: {ours}", file=sys.stderr)
        sys.exit(2)


def _find_ours(e: BaseException | None) -> SplitlabError | None:
    """Our error in the exception chain, or the last one raised if its text is folded into it."""
    texts, seen = [], set()
    while e is not None and id(e) not in seen:
        if isinstance(e, SplitlabError):
            return e
        seen.add(id(e))
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    last = SplitlabError.last
    return last if last is not None and any(str(last) in t for t in texts) else None


if __name__ == "__main__":
    main()
