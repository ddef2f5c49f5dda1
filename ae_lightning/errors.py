"""Errors a user can fix: the CLI prints their message alone (no traceback) and exits with a code that says which:
2 for a bad option or missing data (ConfigError, DataNotFoundError), 3 for a non-finite loss (NonFiniteLossError)."""


class ConfigError(ValueError):
    """A bad option value: the message names the value, where it came from and what is allowed."""


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded: the message says which, where, and how to fix it."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite: training stopped; the message names the variant, step and term."""
