"""DDP on the CPU (gloo) with real processes: Lightning's launcher and torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from test_cli import cli

DATA = ["--data.name", "mnist", "--data.val_size", "100", "--data.download", "false"]


def fit(data_root: Path, root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--model",
        "Autoencoder",
        *DATA,
        "--data.root",
        str(data_root),
        "--trainer.max_epochs",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger",
        "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def final_state(root: Path) -> dict:
    (path,) = root.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return torch.load(path, weights_only=True)


def val_mse(root: Path) -> float:
    import csv

    with open(root / "lightning_logs" / "version_0" / "metrics.csv") as f:
        return [float(r["val/mse"]) for r in csv.DictReader(f) if r.get("val/mse")][-1]


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(data_root, tmp_path):
    single = cli(*fit(data_root, tmp_path / "one", "--data.batch_size", "50", "--trainer.devices", "1"), cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = cli(
        *fit(
            data_root,
            tmp_path / "ddp",
            "--data.batch_size",
            "25",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
        ),
        cwd=tmp_path,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in ddp.stderr  # the second process joined and trained
    one, two = final_state(tmp_path / "one"), final_state(tmp_path / "ddp")
    # 500 images: 10 steps of 50 a epoch in one process, 10 steps of 2 × 25 in two; rank r takes every
    # other image of the same permutation, so every step sees the same 50 images and averages the same gradient.
    assert one["global_step"] == two["global_step"] == 20
    for name, tensor in one["state_dict"].items():
        assert torch.allclose(tensor, two["state_dict"][name], rtol=1e-3, atol=1e-5), name
    assert abs(val_mse(tmp_path / "one") - val_mse(tmp_path / "ddp")) < 1e-4
    # one set of checkpoints, written once (rank 0)
    assert len(list((tmp_path / "ddp").rglob("last.ckpt"))) == 1
    assert len(list((tmp_path / "ddp").glob("lightning_logs/version_*"))) == 1


def test_torchrun_launches_lightning_ddp(data_root, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [
        torchrun,
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "ae_lightning",
        *fit(
            data_root, tmp_path / "tr", "--data.batch_size", "25", "--trainer.devices", "2", "--trainer.strategy", "ddp"
        ),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    assert final_state(tmp_path / "tr")["global_step"] == 20
