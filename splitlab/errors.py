"""Errors that the ``lightning`` command prints as one paragraph, without a traceback."""


class SplitlabError(Exception):
    """Base of the errors a user can fix from the message alone.

    ``SplitlabError.last`` is the most recent one raised: jsonargparse re-raises errors from
    nested constructors (a ``local_branch`` inside a ``model``) as its own ValueError with the
    text folded in, and the ``lightning`` command uses it to print ours alone.
    """

    last: "SplitlabError | None" = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        SplitlabError.last = self


class ConfigError(SplitlabError, ValueError):
    """A config value is out of range or inconsistent; the message names the YAML key."""


class DataError(SplitlabError, FileNotFoundError):
    """A dataset folder or file is missing or unreadable; the message says what to put where."""


class NonFiniteLossError(SplitlabError, RuntimeError):
    """A loss term became NaN or Inf during training."""
