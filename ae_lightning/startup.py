"""A process's start-up: importing torch, torchvision and Lightning creates about a million objects that live as long
as the process, and Python's cyclic garbage collector walks them again and again — hundreds of times while they load,
then in every full collection while the process trains, evaluates and exits — without freeing any of them.

:func:`collector_paused_for_imports` pauses the collector for those imports and then freezes what they created
(``gc.freeze``: kept out of all later collections). Each run of a suite (``python -m ae_lightning.suite.run``) and
each ``ae-lightning`` command uses it; a one-epoch suite run took 6.2–6.7 s instead of 8.2–9.1 s, measured 2026-12-06
on 2 cores (``benchmarks/startup.py``). Nothing is freed later that would have been freed before: the frozen objects
are modules, classes and functions, reachable until the process ends.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused_for_imports() -> Iterator[None]:
    """Pause the cyclic collector for the imports in the block, then freeze every object alive and resume it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
