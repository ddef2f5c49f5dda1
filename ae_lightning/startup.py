"""A process's start-up: importing torch, torchvision and Lightning leaves ~470 000 objects that live as long as the
process; Python's cyclic garbage collector runs about 1 100 collections while they load, and every full collection
afterwards (while the process trains, evaluates and exits) walks them all, without freeing any of them.

:func:`collector_paused_for_imports` pauses the collector for those imports; where they are the process's start-up
it then frees what they left as garbage (one full collection) and freezes what is alive (``gc.freeze``: kept out of
all later collections). Each run of a suite (``python -m ae_lightning.suite.run``) and each ``ae-lightning`` command
uses it: a 3-epoch suite run's process took 2–3 s less (``benchmarks/startup.py``; figures in its README).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused_for_imports() -> Iterator[None]:
    """Pause the cyclic collector for the imports in the block. If the block is where this process first imports
    torch (its start-up), collect once and then freeze every object alive. Anywhere else — a notebook or a test
    process calling a command's ``main``, a module imported after torch — nothing is frozen: objects alive there may
    become garbage later, and frozen garbage is never freed."""
    starting_up = "torch" not in sys.modules
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if starting_up:
            gc.collect()  # what the imports left as garbage: freed, not frozen
            gc.freeze()
        if enabled:
            gc.enable()
