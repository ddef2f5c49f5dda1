"""Speed shims that rest on Lightning internals, in one place. Each has a fallback that keeps training correct if
Lightning changes underneath it (only the speed-up is lost), and tests/test_shims.py fails loudly when it does.

1. ``FastAttributes``: Lightning sets ``_current_fx_name`` on the module around every hook it calls (~36 times a
   step); ``nn.Module.__setattr__``'s checks for parameters, buffers and submodules cost ~1.6 µs each time, so
   attributes that are never any of those skip them. Fallback: none needed (a plain attribute either way).
2. ``store_training_step_signature``: Lightning inspects ``training_step``'s signature on every step (does it take
   ``batch_idx``?); ``inspect`` answers from a stored ``__signature__`` at once instead of rebuilding it (~10 µs).
   Fallback: none needed (the stored signature is the real one).
3. ``should_log_step``: Lightning's ``self.log`` costs ~1 ms per key, so the step terms are handed over only on
   the steps the loggers write — which ``trainer._logger_connector.should_update_logs`` says. Fallback: every step.
"""

from __future__ import annotations

import inspect

import pytorch_lightning as pl

# Set by Lightning around every hook (1.), or by the base class every step (its non-finite bookkeeping).
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_pending_finite_check", "_step_loss"})


class FastAttributes:
    """Mixin for an ``nn.Module``: the names in ``PLAIN_ATTRIBUTES`` bypass ``nn.Module.__setattr__``."""

    def __setattr__(self, name: str, value) -> None:
        if name in PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


def store_training_step_signature(cls: type) -> None:
    """Store ``cls.training_step``'s signature on the function, where ``inspect.signature`` finds it first."""
    if "training_step" in cls.__dict__:
        cls.training_step.__signature__ = inspect.signature(cls.training_step)


def should_log_step(trainer: pl.Trainer | None) -> bool:
    """Whether the loggers write this step (Lightning's ``log_every_n_steps``); True where that cannot be known."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))
