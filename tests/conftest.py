from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from datasets import make_data_root

REPO = Path(__file__).resolve().parents[1]


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
