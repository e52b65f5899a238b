"""The ``lightning`` command: LightningCLI with splitlab's run folder conventions.

    lightning fit --config configs/split_vae_svhn.yaml
    lightning test --config configs/split_vae_svhn.yaml --ckpt_path last
    python -m splitlab fit --config configs/quickstart.yaml
    python -m splitlab report runs/            # the papers' tables from run folders

Model and data are chosen by ``class_path`` in the YAML. Every run folder
(``trainer.default_root_dir``) holds ``config.yaml``, ``checkpoints/last.ckpt``, the image
grids and ``metrics.json``; ``--ckpt_path last`` resumes from that folder's ``last.ckpt``.
Errors a user can fix (a bad value, a missing dataset, a NaN loss) print as one paragraph.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from callbacks.lr import replace_lightning_monitors
from callbacks.metrics_json import MetricsJson
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
        super().__init__(model_class=None, datamodule_class=None, args=args, run=run, **kwargs)

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
        paths = cfg.get("config") or []
        name = os.path.splitext(os.path.basename(str(paths[-1])))[0] if paths else None
        seed = cfg.get("seed_everything")
        trainer = super().instantiate_trainer(**kwargs)
        replace_lightning_monitors(trainer)  # Lightning's refuses `--trainer.logger false`
        trainer.callbacks.append(MetricsJson(config_name=name, seed=seed if isinstance(seed, int) else None))
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint):
                if cb.dirpath is None:  # a fixed folder, so `--ckpt_path last` finds it again
                    cb.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
                if cb.save_last is None:
                    cb.save_last = True
        return trainer


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
