"""Warnings go through ``logging`` (logger ``ae_lightning``), from rank 0 only: by default one line ``warning: …`` on
stderr, which the suite runner shows on the console. Configure or silence them as any logger:
``logging.getLogger("ae_lightning").setLevel(logging.ERROR)``.
"""

from __future__ import annotations

import logging
import sys

from pytorch_lightning.utilities import rank_zero_only


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (not the one there was at import: pytest and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname_lower)s: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property answers instead
        pass

    def format(self, record: logging.LogRecord) -> str:
        record.levelname_lower = record.levelname.lower()
        return super().format(record)


log = logging.getLogger("ae_lightning")
if not log.handlers:
    log.addHandler(_StderrHandler())
    log.propagate = False  # one line, not a second copy through the root logger
log.setLevel(logging.INFO)


@rank_zero_only
def warn(message: str) -> None:
    log.warning(message)
