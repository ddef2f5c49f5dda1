"""Trainer limits checked before anything runs: a value that would make a run never end or never train is one
``ConfigError`` naming it and what is allowed. Lightning reads ``max_epochs: -1`` (with ``max_steps: -1``) as
"train forever" and ``limit_train_batches: 0`` as "skip training"; a suite or a ``fit`` never means either."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from ae_lightning.errors import ConfigError

# Lightning's max_time string: days:hours:minutes:seconds
MAX_TIME = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}):(\d{1,2})$")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_count(trainer: dict[str, Any], key: str, where: str, allowed: str, minimum: int = 1) -> None:
    value = trainer.get(key)
    if value is not None and not (is_int(value) and value >= minimum):
        raise ConfigError(f"{where}trainer.{key}={value!r}: allowed: {allowed}")


def check_fraction_or_count(trainer: dict[str, Any], key: str, where: str, zero_allowed: bool) -> None:
    """``limit_*_batches`` and ``val_check_interval``: a fraction of the epoch in (0, 1] or a number of batches."""
    value = trainer.get(key)
    if value is None:
        return
    lowest = 0 if zero_allowed else 1
    if is_int(value):
        ok = value >= lowest
    else:
        ok = isinstance(value, float) and (0.0 <= value <= 1.0 if zero_allowed else 0.0 < value <= 1.0)
    if not ok:
        zero = " (0: none)" if zero_allowed else ""
        raise ConfigError(
            f"{where}trainer.{key}={value!r}: allowed: a fraction of an epoch in {'[0' if zero_allowed else '(0'}, 1] "
            f"or a whole number of batches >= {lowest}{zero}"
        )


def max_time_seconds(value: Any) -> float | None:
    """Seconds of a ``max_time`` as Lightning takes it ("DD:HH:MM:SS" or a dict of timedelta fields); None where it
    is neither."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        match = MAX_TIME.match(value.strip())
        if match is None:
            return None
        days, hours, minutes, seconds = (int(part) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if isinstance(value, dict):
        units = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "milliseconds": 1e-3}
        if not set(value) <= set(units) or not all(isinstance(v, (int, float)) and v >= 0 for v in value.values()):
            return None
        return sum(units[unit] * amount for unit, amount in value.items())
    return None


def check_trainer_limits(trainer: dict[str, Any], where: str = "") -> None:
    """Raise a ``ConfigError`` for the first limit in ``trainer`` (Trainer keyword arguments) that would never end
    or never train; ``where`` prefixes the message (e.g. ``"suite s.yaml: "``)."""
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if max_epochs is not None and not (is_int(max_epochs) and max_epochs >= 1):
        forever = " (Lightning reads -1 as 'train forever')" if max_epochs == -1 else ""
        raise ConfigError(f"{where}trainer.max_epochs={max_epochs!r}: allowed: a whole number >= 1{forever}")
    if max_steps is not None and not (is_int(max_steps) and (max_steps >= 1 or max_steps == -1)):
        raise ConfigError(f"{where}trainer.max_steps={max_steps!r}: allowed: a whole number >= 1, or -1 (no limit)")
    check_count(trainer, "min_epochs", where, "a whole number >= 0", minimum=0)
    check_count(trainer, "min_steps", where, "a whole number >= 0", minimum=0)
    check_count(trainer, "log_every_n_steps", where, "a whole number >= 1")
    check_count(trainer, "check_val_every_n_epoch", where, "a whole number >= 1, or null (validate by steps)")
    check_count(trainer, "accumulate_grad_batches", where, "a whole number >= 1")
    check_fraction_or_count(trainer, "limit_train_batches", where, zero_allowed=False)  # 0 would never train
    for key in ("limit_val_batches", "limit_test_batches", "limit_predict_batches"):
        check_fraction_or_count(trainer, key, where, zero_allowed=True)
    check_fraction_or_count(trainer, "val_check_interval", where, zero_allowed=False)
    if trainer.get("max_time") is not None:
        seconds = max_time_seconds(trainer["max_time"])
        if seconds is None or seconds <= 0:
            raise ConfigError(
                f"{where}trainer.max_time={trainer['max_time']!r}: allowed: a positive time as 'DD:HH:MM:SS' or "
                "{days: …, hours: …, minutes: …, seconds: …}"
            )
