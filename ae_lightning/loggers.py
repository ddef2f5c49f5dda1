"""The CSV logger of ``fit``, suite runs and tuning trials: Lightning's ``CSVLogger``, except that a ``metrics.csv``
already in its directory is kept and appended to. Lightning's writer warns that the directory "exists and is not
empty" (every suite run's is: config.yaml and run.json come first) and deletes that file — on a resumed run, the
epochs before the interruption.

Rests on two Lightning private names, ``CSVLogger._experiment`` and ``_ExperimentWriter._check_log_dir_exists``;
``tests/test_lightning_private.py`` fails loudly if either changes, and without ``_experiment`` the logger falls
back to Lightning's own writer."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer that continues an existing ``metrics.csv`` (its header becomes the known columns, so
    rows with new columns rewrite the file with every old row kept)."""

    def __init__(self, log_dir: str) -> None:
        existing = Path(log_dir) / self.NAME_METRICS_FILE
        header: list[str] = []
        if existing.is_file():
            with open(existing, newline="") as f:
                header = next(csv.reader(f), [])
        super().__init__(log_dir)
        self.metrics_keys = header

    def _check_log_dir_exists(self) -> None:  # Lightning's: warn, then delete metrics.csv
        pass


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/<name>/<version>/metrics.csv`` and appending to it across resumes."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if not hasattr(self, "_experiment"):  # Lightning changed its attribute: its own writer, warning included
            return super().experiment
        if self._experiment is None:
            Path(self.root_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = AppendingExperimentWriter(self.log_dir)
        return self._experiment


def keep_rows_up_to(path: Path, step: int | None) -> None:
    """Before a run (re)starts: drop ``metrics.csv`` rows the restarted process will log again — all of them when
    it starts afresh (``step`` None: no checkpoint to resume), those after the resumed checkpoint's step otherwise."""
    if not path.is_file():
        return
    if step is None:
        path.unlink()
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], [r for r in reader if not r.get("step") or float(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
