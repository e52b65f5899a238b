"""Load a trained run in one line, for a notebook.

    import splitlab
    model = splitlab.load("runs/quickstart")            # or ".../checkpoints/last.ckpt"
    latents = model.encode(x)                            # {"z_g": ..., "z_l": ...}
    x_swap = model.decode({**latents, "z_l": latents["z_l"].flip(0)})
    model.run.metrics["fit"]["metrics"]["val/loss"]      # metrics_<stage>.json of the run
    dm = model.run.datamodule()                          # the run's datamodule, from config.yaml

The model comes back in eval mode on the CPU. A checkpoint written by ``lightning fit`` holds
the config LightningCLI built the model from (nested ``class_path`` objects included), so the
same model is rebuilt; an older checkpoint without it is rebuilt from the run's
``config.yaml``.
"""
from __future__ import annotations

import glob
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml

from splitlab.errors import DataError

_HPARAMS = "hyper_parameters"


@dataclass
class RunInfo:
    """What :func:`load` found next to the checkpoint.

    Attributes:
        folder: the run folder (``trainer.default_root_dir``), or None for a lone checkpoint.
        checkpoint: the checkpoint file that was loaded.
        config: the run's ``config.yaml`` as a dict ({} when there is none).
        metrics: ``{stage: record}`` from the run's ``metrics_<stage>.json`` files.
    """

    folder: str | None
    checkpoint: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def data_config(self) -> dict[str, Any] | None:
        """The ``data`` section of the run's config (``class_path`` + ``init_args``)."""
        return self.config.get("data")

    def datamodule(self, **overrides: Any) -> Any:
        """Instantiate the run's datamodule; ``overrides`` replace its init args (e.g. ``root=...``)."""
        if not self.data_config:
            raise DataError(f"the run {self.folder or self.checkpoint} has no config.yaml with a `data` section.")
        data = dict(self.data_config)
        data["init_args"] = {**(data.get("init_args") or {}), **overrides}
        return _instantiate(data, "data")


def _read_checkpoint(path: str) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
        raise DataError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "It may be truncated (a copy that did not finish) or another kind of file; load the run's "
            "checkpoints/last.ckpt, or re-copy the file."
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError(
            f"{path} is a PyTorch file but not a Lightning checkpoint (no `state_dict`): it was not written by "
            "`lightning fit`. Load the run's checkpoints/last.ckpt."
        )
    return ckpt


def _class_of(ckpt: dict[str, Any], config: dict[str, Any]) -> str | None:
    hp = ckpt.get(_HPARAMS) or {}
    return hp.get("_class_path") or (config.get("model") or {}).get("class_path")


def check_checkpoint(path: Any, cls: type | None = None) -> dict[str, Any] | None:
    """Raise a one-paragraph :class:`DataError` for a missing file or a checkpoint of another class.

    With ``cls``, returns the checkpoint's hyper-parameters (None for a file object, which
    Lightning reads itself).
    """
    if not isinstance(path, (str, os.PathLike)):
        return None
    path = os.fspath(path)
    if not os.path.isfile(path):
        hint = ""
        if os.path.isdir(path):
            hint = " It is a folder: give the checkpoint file inside it, or use `splitlab.load(folder)`."
        raise DataError(
            f"checkpoint {path} does not exist.{hint} A run of `lightning fit` writes "
            "<trainer.default_root_dir>/checkpoints/last.ckpt."
        )
    if cls is None:
        return None
    ckpt = _read_checkpoint(path)
    name = _class_of(ckpt, {})
    if name is not None:
        found = _import(name)
        if found is not None and not issubclass(found, cls):
            raise DataError(
                f"{path} holds a {name} model, not a {cls.__name__}. Load it with "
                f"`{found.__name__}.load_from_checkpoint(path)` or `splitlab.load(path)`."
            )
    return dict(ckpt.get(_HPARAMS) or {})


def _import(path: str) -> type | None:
    import importlib

    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _instantiate(section: dict[str, Any], key: str) -> Any:
    """Build a ``class_path`` + ``init_args`` section the way LightningCLI does (nested objects too)."""
    from jsonargparse import ArgumentParser

    base = {"model": "pytorch_lightning.LightningModule", "data": "pytorch_lightning.LightningDataModule"}[key]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(_import(base), key, fail_untyped=False)
    cfg = parser.parse_object({key: section})
    return getattr(parser.instantiate_classes(cfg), key)


def _find_checkpoint(folder: str) -> str:
    last = os.path.join(folder, "checkpoints", "last.ckpt")
    if os.path.isfile(last):
        return last
    found = sorted(glob.glob(os.path.join(folder, "checkpoints", "*.ckpt")), key=os.path.getmtime)
    if not found:
        raise DataError(
            f"{folder} has no checkpoints/last.ckpt (nor any checkpoints/*.ckpt): it is not a finished or "
            "saved `lightning fit` run folder. Give the run folder (trainer.default_root_dir) or a .ckpt file."
        )
    return found[-1]


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """The trained model of a run folder or checkpoint, in eval mode, with ``model.run`` a :class:`RunInfo`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from splitlab.runs import resolve

        found = resolve(path)  # a config's folder stands for its runs; one model is its newest
        if len(found) > 1:
            warnings.warn(f"{path} holds {len(found)} runs; loading the newest, {found[-1]} (give a run folder to "
                          "choose another).", stacklevel=2)
        folder = found[-1]
        ckpt_path = _find_checkpoint(folder)
    else:
        from splitlab.runs import folder_of_checkpoint

        check_checkpoint(path)
        ckpt_path = path
        folder = folder_of_checkpoint(path)
        if not os.path.isfile(os.path.join(folder, "config.yaml")):
            folder = None
    config: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    if folder is not None:
        if os.path.isfile(os.path.join(folder, "config.yaml")):
            with open(os.path.join(folder, "config.yaml")) as f:
                config = yaml.safe_load(f) or {}
        for m in sorted(glob.glob(os.path.join(folder, "metrics_*.json"))):
            stage = os.path.basename(m)[len("metrics_"):-len(".json")]
            try:
                with open(m) as f:
                    metrics[stage] = json.load(f)
            except (OSError, json.JSONDecodeError):
                continue  # a half-written metrics file never stops a load
    ckpt = _read_checkpoint(ckpt_path)
    name = _class_of(ckpt, config)
    cls = _import(name) if name else None
    if cls is None:
        raise DataError(
            f"{ckpt_path} does not say which model it holds (no `_class_path` in its hyper-parameters and no "
            f"config.yaml next to it{'' if name is None else f'; {name} does not import'}). Load it with "
            "`<Family>.load_from_checkpoint(path)` and the arguments the model was built with."
        )
    if "_instantiator" in (ckpt.get(_HPARAMS) or {}):
        model = cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=False)
    elif config.get("model"):  # an older checkpoint: rebuild from the run's config.yaml
        model = _instantiate(config["model"], "model")
        model.load_state_dict(ckpt["state_dict"])
        model.to(map_location)
    else:
        model = cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=False)
    model.eval()
    model.run = RunInfo(folder=folder, checkpoint=os.path.abspath(ckpt_path), config=config, metrics=metrics)
    return model
