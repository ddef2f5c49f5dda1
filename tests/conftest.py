from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from datasets import make_data_root

REPO = Path(__file__).resolve().parents[1]


def share_cpus_between_workers() -> None:
    """Under pytest-xdist (``-n N``, opt-in: ``TEST_WORKERS=N bash scripts/test.sh``), each worker's own torch uses
    its share of the cores. Processes the tests start are left alone: pinning them to one core made the suites'
    2-process DDP runs (gloo polls) and ``--parallel 2`` runs crawl, and the pinned run was no faster than one
    process (measured, see the README's test times)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if os.environ.get("PYTEST_XDIST_WORKER") is None or count < 2:
        return
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // count))


share_cpus_between_workers()

# Tests that must not run beside each other in parallel workers: one local SLURM cluster; the multi-process DDP tests
# (their rendezvous ports and run directories). Each group runs on one worker, its tests one after another.
SERIAL_GROUPS = {"test_slurm.py": "slurm", "test_distributed.py": "distributed"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        group = SERIAL_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def has_row(table: str, variant: str) -> bool:
    """Whether a markdown table has a row for ``variant``, with or without the collapse mark † (whether a briefly
    trained model collapses is its luck, not what a test of the plumbing checks)."""
    return re.search(rf"^\| {re.escape(variant)}( †)? \|", table, re.MULTILINE) is not None


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU trainer that writes nothing (no logger, checkpoints, progress bar or summary); kwargs override."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """MNIST, Fashion-MNIST and CIFAR-10 in torchvision's layout, small (600 train / 200 test images)."""
    return make_data_root(tmp_path_factory.mktemp("data"))


def write_small_suite(
    path: Path, data_root: Path, name: str, variants: list[dict], epochs: int, wandb_mode: str, **extra
) -> Path:
    """A suite on the generated MNIST with a cheap evaluation battery, written to ``path``."""
    import yaml

    suite = {
        "name": name,
        "data": {"name": "mnist", "root": str(data_root), "download": False, "val_size": 100, "batch_size": 50},
        "trainer": {"max_epochs": epochs, "accelerator": "cpu"},
        "evaluation": {"probe_train_samples": 200, "jacobian_samples": 20, "iw_samples": 5, "iw_images": 20},
        "wandb": {"mode": wandb_mode},
        "variants": variants,
        **extra,
    }
    path.write_text(yaml.safe_dump(suite))
    return path
