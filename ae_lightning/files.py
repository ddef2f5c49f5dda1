"""Atomic file writes, all of them: a kill or a crash mid-write never leaves a half file under the final name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it is renamed to ``path`` only if the block succeeds, and
    removed if it fails (the file under ``path``, if any, is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one partial file per process: processes writing the same file at once (tuning workers establishing one
    # suite) must not rename each other's partial away
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def write_json_atomic(path: str | Path, data: Any) -> None:
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(data, indent=2, default=str))


def atomic_torch_save(obj: object, path: str | Path) -> None:
    with atomic_path(path) as partial:
        torch.save(obj, partial)
