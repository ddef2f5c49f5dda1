"""What ae-lightning silences of its libraries' output, and why: each is a line a user of ``fit``, ``compare`` or
``tune`` cannot act on. Everything else they print is left alone.

- Lightning's hint that ``srun`` exists but is not used: printed on every machine with SLURM installed, also for runs
  that are not SLURM jobs (those that are get Lightning's SLURM environment without it).
- Lightning's "💡 Tip" advertising its LitLogger, on every Trainer.
- Lightning's own deprecated use of torch's ``LeafSpec`` (``_pytree.py``), which newer torch reports on every run.
- W&B's banner (``WANDB_SILENT``, unless set): its lines carry ANSI colours into log files, and the suite prints the
  one line that matters (how to sync offline runs).
"""

from __future__ import annotations

import logging
import os
import warnings

HIDDEN_WARNINGS = (
    r"The `srun` command is available on your system but is not used",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_libraries() -> None:
    """Install the filters above (idempotent)."""
    for message in HIDDEN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    os.environ.setdefault("WANDB_SILENT", "true")
