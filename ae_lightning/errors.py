"""Errors a user can fix: the CLI prints their message alone (no traceback) and exits with a code that says which:
2 for a bad option or missing data (ConfigError, DataNotFoundError), 3 for a non-finite loss (NonFiniteLossError)."""


class ConfigError(ValueError):
    """A bad option value: the message names the value, where it came from and what is allowed."""


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded: the message says which, where, and how to fix it."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite: training stopped; the message names the variant, step and term."""


# Errors the user can act on: printed as one line (no traceback), with this exit code.
USER_ERRORS: dict[type[Exception], int] = {ConfigError: 2, DataNotFoundError: 2, NonFiniteLossError: 3}


def find_user_error(err: BaseException | None) -> BaseException | None:
    """The ConfigError/DataNotFoundError/NonFiniteLossError behind ``err`` (jsonargparse wraps errors raised while it
    instantiates), or None."""
    while err is not None:
        if isinstance(err, tuple(USER_ERRORS)):
            return err
        err = err.__cause__ or err.__context__
    return None
