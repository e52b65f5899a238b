"""W&B logging that never prompts and never fails.

With no credentials (no ``WANDB_API_KEY``, no key in ``~/.netrc``) the run is offline: a
folder under ``save_dir/wandb`` that ``wandb sync`` uploads later. If going online fails
(no network), it falls back to offline with a warning. ``WANDB_MODE`` set by the user wins.
"""
from __future__ import annotations

import netrc
import os
import warnings
from typing import Any

from pytorch_lightning.loggers import WandbLogger as _WandbLogger


def wandb_credentials_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC", os.path.expanduser("~/.netrc")))
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return rc.authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_WandbLogger):
    """Lightning's WandbLogger with ``offline`` decided for you (None: offline without credentials).

    Args:
        name, save_dir, project, entity, group, tags, log_model: as in Lightning's WandbLogger.
        offline: True / False to force; None to decide from the credentials.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = ".",
        project: str = "splitlab",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        mode = os.environ.get("WANDB_MODE")
        if offline is None:
            offline = mode in ("offline", "dryrun", "disabled") or not wandb_credentials_available()
        os.environ.setdefault("WANDB_SILENT", "true")
        kwargs.setdefault("settings", _settings())
        super().__init__(
            name=name, save_dir=save_dir, project=project, entity=entity, group=group, tags=tags,
            offline=offline, log_model=log_model, **kwargs,
        )

    @property
    def experiment(self):  # noqa: ANN201 - a wandb Run
        if self._experiment is None and self.save_dir:
            os.makedirs(self.save_dir, exist_ok=True)  # created when the run starts, not when the config is read
        try:
            return _WandbLogger.experiment.fget(self)
        except Exception as e:  # no network, bad key, server down: keep training, log offline
            if self._offline:
                raise
            warnings.warn(f"W&B online init failed ({e}); logging offline instead (`wandb sync` later).", stacklevel=2)
            self._offline = True
            self._wandb_init["mode"] = "offline"
            return _WandbLogger.experiment.fget(self)


def _settings():
    import wandb

    return wandb.Settings(init_timeout=60, console="off", silent=True)
