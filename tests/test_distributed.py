"""DDP on the CPU (gloo) with real processes: Lightning's launcher and torchrun."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ae_lightning.seeding import derive_seed

from conftest import write_small_suite
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


@pytest.mark.slow  # two fit processes, one of them DDP (15 s); the fast loop keeps a DDP step (test_cli's ddp_cpu)
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


@pytest.mark.slow  # gloo processes by nature (7 s)
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


# --- decisions every rank must share, per-rank randomness (tests/ddp_worker.py on 2 gloo processes) ---------------

WORKER = Path(__file__).with_name("ddp_worker.py")


def start_worker(tmp_path: Path, name: str, data_root: Path, **config) -> tuple[subprocess.Popen, Path, dict]:
    out = tmp_path / name
    out.mkdir(parents=True, exist_ok=True)
    config = {"out": str(out), "data_root": str(data_root), "model": "Autoencoder", **config}
    (out / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(out / "config.json")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the launcher and its rank processes: one group to kill
    )
    return process, out, config


def ddp_worker(tmp_path: Path, name: str, data_root: Path, timeout: float = 150, **config) -> dict[int, dict]:
    """Run the worker to the end; each rank's record. A hang (ranks waiting on different collectives) fails."""
    process, out, config = start_worker(tmp_path, name, data_root, **config)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"{name}: the ranks hung (no end after {timeout} s)") from None
    assert process.returncode == 0, stderr[-3000:]
    return {rank: torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(config.get("devices", 2))}


def assert_same_weights(one: dict, two: dict) -> None:
    assert one.keys() == two.keys()
    for name, tensor in one.items():
        assert torch.equal(tensor, two[name]), name


@pytest.mark.parametrize("ema_decay", [None, 0.99], ids=["gradient-codebook", "ema-codebook"])
@pytest.mark.slow  # several gloo processes, 10–35 s: with the slow tests (CI runs both)
def test_vqvae_ranks_keep_one_codebook_through_updates_and_restarts(data_root, tmp_path, ema_decay):
    # 256 codes and restarts after one unused step: most codes are restarted at every step from a batch piece, and
    # each rank sees other pieces — only rank 0's broadcast (and the summed EMA statistics) keep the replicas equal.
    args = {"codebook_size": 256, "embedding_dim": 4, "dead_code_steps": 1, "ema_decay": ema_decay}
    ranks = ddp_worker(tmp_path, "vq", data_root, model="VectorQuantizedAutoencoder", model_args=args, epochs=1)
    assert_same_weights(ranks[0]["state_dict"], ranks[1]["state_dict"])
    assert ranks[0]["global_step"] == 10


@pytest.mark.slow  # gloo processes by nature (9 s)
def test_a_nan_on_one_rank_makes_every_rank_skip(data_root, tmp_path):
    ranks = ddp_worker(tmp_path, "skip", data_root, model_args={"nonfinite": "skip"}, rank=1, nan_at_step=3, epochs=1)
    # Rank 1's NaN reached rank 0's gradients through the all-reduce: only if both skip do they stay equal and finite
    assert_same_weights(ranks[0]["state_dict"], ranks[1]["state_dict"])
    assert all(torch.isfinite(t).all() for t in ranks[0]["state_dict"].values())
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 10


@pytest.mark.slow  # several gloo processes, 10–35 s: with the slow tests (CI runs both)
def test_preemption_signal_on_one_rank_is_handled_by_all_at_one_step(data_root, tmp_path):
    # Rank 1 alone gets SIGUSR1 during step 4; the handler saves a checkpoint (a collective). Handled per rank, rank 1
    # would wait in the checkpoint's barrier while rank 0 all-reduces gradients: a hang or a gloo error.
    ranks = ddp_worker(tmp_path, "signal", data_root, rank=1, signal_at_step=4, signal_sync_every=5, epochs=2)
    assert ranks[0]["handled_at"] == ranks[1]["handled_at"] == [5]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 5
    checkpoint = tmp_path / "signal" / "hpc_ckpt_1.ckpt"
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 5
    # the requeued job resumes from it and ends where an uninterrupted run ends
    resumed = ddp_worker(tmp_path, "requeued", data_root, epochs=2, ckpt_path=str(checkpoint))
    assert resumed[0]["global_step"] == resumed[1]["global_step"] == 20
    assert_same_weights(resumed[0]["state_dict"], resumed[1]["state_dict"])


@pytest.mark.slow  # several gloo processes, 10–35 s: with the slow tests (CI runs both)
def test_ranks_draw_their_own_noise_and_kill_resume_stays_bitwise(data_root, tmp_path):
    denoising = {"model": "DenoisingAutoencoder", "epochs": 3, "checkpoint_every": 7}
    whole = ddp_worker(tmp_path, "whole", data_root, **denoising)
    # each rank its own stream (noise, dropout, ε)
    assert not torch.equal(whole[0]["first_rng_state"], whole[1]["first_rng_state"])
    # a process's training draws come from the run seed's 'train' stream (seed_everything(0) in the worker), and
    # nothing else touches that stream before batch 0 (the plain AE draws nothing there itself)
    (one_process,) = ddp_worker(tmp_path, "one", data_root, devices=1, max_steps=1).values()
    torch.manual_seed(derive_seed(0, "train", 0))
    assert torch.equal(one_process["first_rng_state"], torch.get_rng_state())

    process, out, _ = start_worker(tmp_path, "killed", data_root, **denoising)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "last.ckpt").is_file():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # every rank, mid-run
    process.wait()
    killed_at = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(killed_at["ae_lightning"]["rng_per_rank"]) == 2  # both ranks' random states are in the checkpoint
    resumed = ddp_worker(tmp_path, "resumed", data_root, **denoising, ckpt_path=str(out / "checkpoints" / "last.ckpt"))
    for rank in (0, 1):
        assert resumed[rank]["global_step"] == whole[rank]["global_step"] == 30
        assert_same_weights(resumed[rank]["state_dict"], whole[rank]["state_dict"])


# --- compare: a suite whose runs are DDP jobs of 2 gloo processes, through the battery -----------------------------

DDP_CPU = {"max_epochs": 2, "accelerator": "cpu", "strategy": "ddp", "devices": 2}


def run_suite(
    tmp_path: Path, data_root: Path, variants: list[dict], trainer: dict, name: str, parallel: int = 1
) -> list[dict]:
    """``parallel``: runs at once — 2 for one-process runs (a run's process spends seconds starting up, which
    overlaps on 2 cores); 1 for DDP runs, each of which already has a process per core."""
    suite = write_small_suite(
        tmp_path / f"{name}.yaml", data_root, name, variants, 2, "disabled", trainer=trainer, seeds=[0]
    )
    out = ["--out", str(tmp_path / name), "--parallel", str(parallel)]
    result = cli("compare", str(suite), *out, cwd=tmp_path, timeout=1200)
    records = json.loads((tmp_path / name / "summary.json").read_text())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for record in records:
        assert record["status"] == "done", record
        assert all(math.isfinite(value) for value in record["metrics"].values()), record
    return records


@pytest.mark.slow  # several gloo processes, 10–35 s: with the slow tests (CI runs both)
def test_ddp_suite_runs_each_run_as_two_processes_through_the_battery(data_root, tmp_path):
    variants = [{"model": "Autoencoder"}, {"model": "VariationalAutoencoder", "args": {"latent_dim": 8}}]
    records = run_suite(tmp_path, data_root, variants, DDP_CPU, "ddp")
    for record in records:
        result = json.loads((Path(record["run_dir"]) / "result.json").read_text())
        assert result["world_size"] == 2 and result["steps"] == 10  # 500 images, 2 ranks × 50 a step, 2 epochs
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (Path(record["run_dir"]) / "log.txt").read_text()
        assert "test/psnr" in record["metrics"]  # torchmetrics computed by rank 0 alone


ALL_SIX = [
    {"model": "Autoencoder"},
    {"model": "DenoisingAutoencoder", "data": {"noise": {"kind": "gaussian", "level": 0.3}}},
    {"model": "SparseAutoencoder", "args": {"penalty": "kl"}},
    {"model": "DropoutAutoencoder"},
    {"model": "ContractiveAutoencoder"},
    {"model": "VariationalAutoencoder", "args": {"latent_dim": 8}},
]
EVERY_VARIANT = ALL_SIX + [
    {"model": "ImportanceWeightedAutoencoder", "args": {"latent_dim": 8, "samples": 3}},
    {"model": "BetaTCVAE", "args": {"latent_dim": 8}},
    {"model": "WassersteinAutoencoder", "args": {"latent_dim": 8}},
    {"model": "VectorQuantizedAutoencoder", "args": {"latent_dim": 8, "ema_decay": 0.99, "dead_code_steps": 3}},
    {"model": "AdversarialAutoencoder", "args": {"latent_dim": 8}},
    {"model": "DeepSVDD", "args": {"latent_dim": 8, "pretrain_epochs": 1}},  # both phases in the 2 epochs
    {"model": "MemoryAutoencoder", "args": {"latent_dim": 8, "memory_size": 20}},
    # the recipes across ranks: each network, top-k with AuxK (dead units counted over every rank), the schedule
    {"name": "AE-lenet", "model": "Autoencoder", "args": {"network": "lenet"}},
    {
        "name": "AE-conv-bn-res",
        "model": "Autoencoder",
        "args": {"network": "conv", "normalization": "batch", "residual": True},
    },
    {
        "name": "SAE-topk-auxk-cosine",
        "model": "SparseAutoencoder",
        "args": {"penalty": "topk", "k": 4, "latent_dim": 16, "dead_after_samples": 50, "lr_schedule": "cosine"},
    },
]


def test_every_variant_is_in_the_ddp_and_bf16_suites():
    from ae_lightning import VARIANTS

    assert {v["model"] for v in EVERY_VARIANT} == set(VARIANTS)
    assert {v["args"].get("network") for v in EVERY_VARIANT if "args" in v} >= {"lenet", "conv"}


@pytest.mark.slow
def test_every_variant_trains_under_ddp_with_its_replicas_kept_equal(data_root, tmp_path):
    """Every variant and recipe, 2 epochs on 2 gloo processes (one process group, the variants one after another):
    each finishes every step, and both ranks end with the same weights and buffers — what DDP promises, and what a
    variant with state of its own (codebooks, a memory, a centre, dead-unit counts) must keep. The suite's DDP path
    through the battery is test_ddp_suite_runs_each_run_as_two_processes_through_the_battery's."""
    ranks = ddp_worker(tmp_path, "every", data_root, timeout=600, variants=EVERY_VARIANT)
    names = [v.get("name", v["model"]) for v in EVERY_VARIANT]
    assert list(ranks[0]) == list(ranks[1]) == names
    for name in names:
        # 500 images: 10 steps of 2 × 25 an epoch, for each optimizer
        steps = 20 * ranks[0][name]["optimizers"]
        assert ranks[0][name]["global_step"] == ranks[1][name]["global_step"] == steps, name
        # BatchNorm's running statistics are each rank's own (its half of the batch) unless the trainer sets
        # sync_batchnorm; the checkpoint keeps rank 0's. Everything else must be equal.
        one, two = ({k: v for k, v in ranks[r][name]["state_dict"].items() if k.rsplit(".", 1)[-1] not in BN_STATS}
                    for r in (0, 1))  # fmt: skip
        assert_same_weights(one, two)
        assert all(torch.isfinite(t).all() for t in ranks[0][name]["state_dict"].values() if t.is_floating_point())


BN_STATS = {"running_mean", "running_var", "num_batches_tracked"}


@pytest.mark.slow
def test_every_variant_finishes_a_bf16_suite(data_root, tmp_path):
    trainer = {"max_epochs": 2, "accelerator": "cpu", "precision": "bf16-mixed"}
    assert len(run_suite(tmp_path, data_root, EVERY_VARIANT, trainer, "bf16_all", parallel=2)) == len(EVERY_VARIANT)
