"""splitlab: local/global disentangled representation learning with PyTorch Lightning.

``splitlab.load(run_folder_or_ckpt)`` returns a trained model (see :mod:`splitlab.loading`).
"""
from typing import Any

from splitlab.errors import ConfigError, DataError, SplitlabError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "SplitlabError", "__version__", "load"]


def load(path: Any, map_location: Any = "cpu") -> Any:
    """The trained model of a run folder or checkpoint, in eval mode (:func:`splitlab.loading.load`)."""
    from splitlab.loading import load as _load  # torch is imported only when a model is loaded

    return _load(path, map_location=map_location)
