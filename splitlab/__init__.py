"""splitlab: local/global disentangled representation learning with PyTorch Lightning."""
from splitlab.errors import ConfigError, DataError, SplitlabError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "SplitlabError", "__version__"]
