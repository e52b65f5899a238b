"""RepresentationModule: what every model family shares.

Hooks used and why:
- ``training_step`` / ``validation_step`` / ``test_step``: call the family's
  :meth:`compute_loss`, log every term under ``<stage>/<name>``.
- ``on_train_batch_end``: every ``trainer.log_every_n_steps`` steps, one host sync to stop
  on a NaN/Inf loss, naming the first bad step and term. Between checks the flag lives on
  the device, so the training step itself never syncs.
- ``on_save_checkpoint``: refuses to write a checkpoint after a NaN/Inf (so ``last.ckpt``
  from before it survives) and stores the RNG states, so a resumed run continues the same
  random stream (patch shuffles, reparameterisation noise, data order).
- ``on_load_checkpoint`` / ``on_train_epoch_start`` / ``on_train_batch_start``: restore those
  RNG states just before the first resumed step (after the sanity check, which draws too; a
  mid-epoch restore, as after a SLURM requeue, has no epoch start).
- ``configure_model``: optional ``torch.compile`` of the networks.
- ``configure_optimizers``: optimiser and scheduler from init args (LightningCLI
  dependency injection: ``optimizer: {class_path: torch.optim.Adam, init_args: {lr: ...}}``).
"""
from __future__ import annotations

import contextlib
import inspect
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lightning_modules.nn.aux_transforms import keyed_by_image
from splitlab.errors import ConfigError, DataError, NonFiniteLossError

OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
LRSchedulerCallable = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]



# --------------------------------------------------------------------------- capabilities
@runtime_checkable
class Clusters(Protocol):
    def cluster(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) in [0, 1] -> (B,) cluster index."""


@runtime_checkable
class Detects(Protocol):
    def detect(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x -> boxes (B, N, 4), scores (B, N), counts (B,)."""


@runtime_checkable
class HasLikelihood(Protocol):
    def log_likelihood(self, x: Tensor) -> Tensor:
        """x -> (B,) log p(x) estimate in nats per image."""


@runtime_checkable
class Encodes(Protocol):
    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]: ...

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor: ...


# --------------------------------------------------------------------------- loading
class Reloadable:
    """``<Family>.load_from_checkpoint(path)`` that rebuilds exactly the model ``lightning fit`` trained.

    Mixed into every LightningModule of the project (before ``pl.LightningModule``).
    """

    def save_init_args(self, objects: Iterable[str]) -> None:
        """``save_hyperparameters`` that lets ``<Family>.load_from_checkpoint(path)`` rebuild the model.

        Built by LightningCLI, the hyper-parameters are the resolved config itself (nested
        ``class_path`` objects included: the local branch, likelihood, networks, optimiser),
        recorded with LightningCLI's instantiator, so everything is kept. Built in Python, the
        ``objects`` (modules, callables) cannot be written as hyper-parameters and are left
        out; pass them again to ``load_from_checkpoint`` or load with :func:`splitlab.load`.
        """
        from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters  # set by LightningCLI

        given = _given_hyperparameters.get() is not None
        frame = inspect.currentframe().f_back  # the family's __init__, whose arguments are saved
        self.save_hyperparameters(ignore=None if given else list(objects), frame=frame)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Lightning's ``load_from_checkpoint``, with a one-paragraph error for a missing or foreign file."""
        from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters_context

        from splitlab.loading import check_checkpoint

        hp = check_checkpoint(checkpoint_path, cls)
        recorded = contextlib.nullcontext()
        if hp and "_instantiator" in hp:  # rebuilt as LightningCLI built it: keep its hparams (a re-save loads too)
            loading_args = ("map_location", "hparams_file", "strict", "weights_only")
            given = {k: v for k, v in hp.items() if k != "_instantiator"}
            given.update({k: v for k, v in kwargs.items() if k not in loading_args})
            recorded = _given_hyperparameters_context(hparams=given, instantiator=hp["_instantiator"])
        try:
            with recorded:
                return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except Exception as e:
            raise DataError(
                f"{checkpoint_path} could not be loaded as a {cls.__name__}: {type(e).__name__}: {str(e).splitlines()[0]}. "
                "A checkpoint written by `lightning fit` loads with `<Family>.load_from_checkpoint(path)` or "
                "`splitlab.load(run_folder)`; one from a model built in Python needs the objects it was built with "
                "passed again as keyword arguments (local_branch=..., likelihood=...)."
            ) from e


# --------------------------------------------------------------------------- base module
class RepresentationModule(Reloadable, pl.LightningModule):
    """Base of every family: image -> latents {z_g, z_l, ...} -> image.

    Subclasses implement :meth:`compute_loss`, :meth:`encode`, :meth:`decode`, :meth:`sample`.

    Args:
        optimizer: a callable params -> optimiser (YAML: ``class_path`` + ``init_args``).
        lr_scheduler: optional callable optimiser -> scheduler, stepped every training step.
        compile: wrap the networks with ``torch.compile`` (in place, checkpoint keys unchanged).
    """

    memory_format: torch.memory_format = torch.channels_last  # of the networks' 4-d weights and the batch images

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.compile_networks = compile
        # NaN/Inf tracking on the device: first bad step (-1: none) and which terms were bad
        self.register_buffer("_bad_step", torch.tensor(-1, dtype=torch.long), persistent=False)
        self.register_buffer("_bad_terms", torch.zeros(0, dtype=torch.bool), persistent=False)
        self._term_names: list[str] = []
        self._pending_rng: dict[str, Any] | None = None

    # ---- the surface every family implements
    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, C, H, W) in [0, 1] -> named scalar terms (batch means, nats) incl. ``loss``."""
        raise NotImplementedError

    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]:
        raise NotImplementedError

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def sample_latents(self, n: int, temperature: float = 1.0) -> dict[str, Tensor]:
        raise NotImplementedError

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """n images from the prior: (n, C, H, W) in [0, 1]."""
        return self.decode(self.sample_latents(n, temperature))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # ---- Lightning steps
    def _images(self, batch: dict[str, Tensor]) -> Tensor:
        """The batch's images in the networks' memory format (a copy only where the layout differs)."""
        x = batch["image"]
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.compute_loss(self._images(batch))
        self._track_nonfinite(terms)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True, on_epoch=False)
        return terms["loss"]

    def _shared_eval(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        terms = self.compute_loss(self._images(batch))
        self.log_dict(
            {f"{stage}/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True, sync_dist=True,
            batch_size=batch["image"].shape[0],
        )
        return terms

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._shared_eval(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._shared_eval(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``lightning predict``: the posterior-mean latents and the reconstruction of each image. The auxiliary
        transform's shuffle of an image is keyed by its dataset index, so its z_l is the same in any batch and on
        any rank (:func:`lightning_modules.nn.aux_transforms.keyed_by_image`)."""
        keyed = keyed_by_image(batch["index"]) if "index" in batch else contextlib.nullcontext()
        with keyed:
            latents = self.encode(batch["image"])
        out = {k: v.detach() for k, v in latents.items()}
        out["reconstruction"] = self.decode(latents)
        for key in ("label", "count", "index"):
            if key in batch:
                out[key] = batch[key]
        return out

    # ---- NaN / Inf guard
    def _track_nonfinite(self, terms: dict[str, Tensor]) -> None:
        new = [k for k in terms if k not in self._term_names]
        if new:  # the first step, or a term that joins mid-run (e.g. SPAIR's pres_credit_start)
            self._term_names += new
            self._bad_terms = torch.cat([self._bad_terms, self._bad_terms.new_zeros(len(new))])
        false = self._bad_terms.new_zeros(())
        bad = torch.stack([~torch.isfinite(terms[k].detach()).all() if k in terms else false for k in self._term_names])
        newly = bad.any() & (self._bad_step < 0)
        step = torch.as_tensor(self.global_step, device=bad.device)
        self._bad_step = torch.where(newly, step, self._bad_step)
        self._bad_terms = torch.where(newly, bad, self._bad_terms)

    def check_finite(self) -> None:
        """One host sync: raise :class:`NonFiniteLossError` if a loss term went NaN/Inf."""
        step = int(self._bad_step)
        if step < 0:
            return
        names = [n for n, b in zip(self._term_names, self._bad_terms.tolist()) if b]
        names = [n for n in names if n != "loss"] or names  # name the culprit, not the sum
        ckpt = getattr(self.trainer.checkpoint_callback, "dirpath", None) if self._trainer else None
        raise NonFiniteLossError(
            f"Training stopped: the loss term(s) {names} became NaN or Inf at step {step}. "
            f"No checkpoint was written after that step, so the last checkpoint in {ckpt} is from "
            "before it; resume from it with `--ckpt_path last` after lowering the learning rate "
            "(model.init_args.optimizer.init_args.lr), enabling gradient clipping "
            "(trainer.gradient_clip_val), or training in fp32 (trainer.precision: 32-true)."
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = max(1, getattr(self.trainer, "log_every_n_steps", 50) or 1)
        if self.global_step % every == 0:
            self.check_finite()

    def on_train_end(self) -> None:
        self.check_finite()

    # ---- checkpoints: NaN guard and RNG continuity
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()
        checkpoint["splitlab_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_to_safe(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pending_rng = checkpoint.get("splitlab_rng")

    def on_train_epoch_start(self) -> None:
        self._restore_rng()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._restore_rng()  # a mid-epoch restore (a SLURM requeue) has no epoch start

    def _restore_rng(self) -> None:
        if self._pending_rng is not None:
            rng, self._pending_rng = self._pending_rng, None
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])
            np.random.set_state(_numpy_state_from_safe(rng["numpy"]))
            random.setstate(rng["python"])

    # ---- optimisation
    def networks(self) -> list[nn.Module]:
        """The modules ``compile=True`` wraps; by default every child module."""
        return [m for m in self.children() if any(True for _ in m.parameters())]

    def configure_model(self) -> None:
        # conv weights in NHWC: measured on 2 CPU cores, a training step of the SPLIT-VAE / SPLIT-GMVAE / flow VAE
        # quick-starts takes 1.27 / 1.37 / 1.23x less time (SPAIR: no clear gain, it stays NCHW); on a GPU it is the layout
        # tensor cores want under mixed precision. Values are unchanged; only the strides differ.
        self.to(memory_format=self.memory_format)
        if self.compile_networks and not getattr(self, "_compiled", False):
            for m in self.networks():
                m.compile()
            self._compiled = True

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups; a group may carry ``lr_scale`` (its lr = the
        optimiser's lr times that). Default: one group of every parameter."""
        return [{"params": list(self.parameters())}]

    def build_optimizer(self, factory: OptimizerCallable) -> torch.optim.Optimizer:
        """``factory(param_groups())``, then each group's lr times its ``lr_scale`` (set after
        construction, so the factory's lr is the base). A bare loop calls this too."""
        opt = factory(self.param_groups())
        for group in opt.param_groups:
            group["lr"] = group["lr"] * group.pop("lr_scale", 1.0)
        return opt

    def configure_optimizers(self) -> Any:
        opt = self.build_optimizer(self.optimizer_factory)
        if self.lr_scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.lr_scheduler_factory(opt), "interval": "step"}}


def _numpy_state_to_safe(state: tuple) -> tuple:
    """numpy's RNG state with its array as a tensor, so ``torch.load(weights_only=True)`` reads it."""
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_safe(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def check_positive(name: str, value: float, key: str, allow_zero: bool = False) -> None:
    """Raise a ValueError naming the YAML key when ``value`` is not (strictly) positive."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        need = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be {need}, got {value!r}; set `{key}` to a {need} number.")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a ConfigError naming the model's YAML key when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{name} must be one of {options}, got {value!r}; set `model.init_args.{name}`.")
