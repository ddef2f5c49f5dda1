"""Faults lose no work: exact resume after kill -9, interrupted suites, non-finite losses, bad checkpoints,
atomic writes, and no secrets in what is saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import has_row, write_small_suite
from test_cli import SMALL_DATA, cli, cli_in_process


def fit_args(data_root: Path, root_dir: Path, model: str, *extra: str) -> list[str]:
    return [
        "fit",
        "--model",
        model,
        "--data.name",
        "mnist",
        "--data.root",
        str(data_root),
        *SMALL_DATA,
        "--trainer.default_root_dir",
        str(root_dir),
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "ae_lightning", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, f"finished before {path} appeared: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


COSINE = ["--model.lr_schedule", "cosine", "--model.warmup_steps", "15"]


@pytest.mark.parametrize(
    "model, model_args",
    [
        # ~19 s each (a process killed and two more): with the slow tests (CI runs both). The top-k AE with AuxK
        # and a cosine schedule has the most state to restore (the schedule's step, the dead-unit counts)
        pytest.param(
            "SparseAutoencoder",
            ["--model.penalty", "topk", "--model.dead_after_samples", "100", *COSINE],
            marks=pytest.mark.slow,
        ),
        pytest.param("VariationalAutoencoder", [], marks=pytest.mark.slow),
        pytest.param("DenoisingAutoencoder", [], marks=pytest.mark.slow),
        pytest.param("DropoutAutoencoder", [], marks=pytest.mark.slow),
        pytest.param("WassersteinAutoencoder", [], marks=pytest.mark.slow),
        # two optimizers and their schedules, manual optimisation
        pytest.param("AdversarialAutoencoder", COSINE, marks=pytest.mark.slow),
        # Deep SVDD's centre and its optimizer restart after the kill
        pytest.param("DeepSVDD", ["--model.pretrain_epochs", "3", "--model.network", "mlp"], marks=pytest.mark.slow),
    ],
)
def test_kill_9_mid_epoch_then_resume_is_bitwise_the_uninterrupted_run(model, model_args, data_root, tmp_path):
    # 10 batches an epoch, a checkpoint every 7 steps: the kill lands mid-epoch. These variants draw random
    # numbers every step (reparameterisation, corruption, dropout, prior draws), so the random state must be
    # restored too.
    (tmp_path / "noise.yaml").write_text("data: {noise: {kind: gaussian, level: 0.3}}\n")
    noise = ["--config", str(tmp_path / "noise.yaml")] if model == "DenoisingAutoencoder" else []
    extra = [*noise, *model_args, "--trainer.max_epochs", "12", "--resume_checkpoint.every_n_train_steps", "7"]
    whole = cli(*fit_args(data_root, tmp_path / "whole", model, *extra), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    # The run that dies writes step checkpoints only (every 7 steps), so the one it resumes from is mid-epoch.
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    process = start(
        fit_args(data_root, tmp_path / "killed", model, *extra, "--resume_checkpoint.save_on_epoch_end", "false"),
        cwd=tmp_path,
    )
    wait_for(last, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    interrupted_at = torch.load(last, weights_only=True)["global_step"]
    per_batch = 2 if model == "AdversarialAutoencoder" else 1  # Lightning counts each of its optimizers' steps
    batches = interrupted_at // per_batch
    assert interrupted_at % 7 == 0 and batches % 10 != 0 and batches < 120  # mid-epoch, mid-run

    resumed = cli(*fit_args(data_root, tmp_path / "killed", model, *extra, "--ckpt_path", str(last)), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(last, weights_only=True)
    assert got["global_step"] == expected["global_step"] == 120 * per_batch
    assert len(got["optimizer_states"]) == per_batch  # the AAE's discriminator optimizer is restored too
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    if model_args is COSINE or "cosine" in model_args:
        assert expected["lr_schedulers"] and expected["lr_schedulers"] == got["lr_schedulers"]
    best = [k for k in expected["callbacks"] if k.startswith("ModelCheckpoint")][0]
    assert torch.equal(expected["callbacks"][best]["best_model_score"], got["callbacks"][best]["best_model_score"])


@pytest.mark.slow  # a suite killed and run again, ~35 s: with the slow tests (CI runs both)
def test_interrupted_suite_keeps_finished_runs_and_resumes_the_interrupted_one(data_root, tmp_path):
    variants = [
        {"name": "short", "model": "Autoencoder", "trainer": {"max_epochs": 1}},
        {"name": "long", "model": "VariationalAutoencoder"},
    ]
    write_small_suite(
        tmp_path / "suite.yaml",
        data_root,
        "interrupted",
        variants,
        epochs=40,
        wandb_mode="disabled",
        checkpoint_every_n_steps=25,
    )
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    runner = subprocess.Popen(
        [sys.executable, "-m", "ae_lightning", "compare", "suite.yaml", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(out / "runs" / "long" / "seed0" / "checkpoints" / "last.ckpt", runner, timeout=300)
    time.sleep(0.5)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and its run die together, as in a node failure
    runner.wait()
    short_result = out / "runs" / "short" / "seed0" / "result.json"
    assert json.loads(short_result.read_text())["status"] == "done"
    assert not (out / "runs" / "long" / "seed0" / "result.json").exists()
    finished_at = short_result.stat().st_mtime_ns

    again = cli("compare", "suite.yaml", "--out", str(out), cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[1/2 short seed 0] already done, skipped" in again.stdout
    assert short_result.stat().st_mtime_ns == finished_at
    log = (out / "runs" / "long" / "seed0" / "log.txt").read_text()
    assert "resuming from" in log
    records = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in records] == ["done", "done"]
    report = (out / "report.md").read_text()
    # a row for each, whatever the mark: whether the resumed VAE collapses depends on where the kill landed
    assert has_row(report, "long") and has_row(report, "short")


def test_non_finite_loss_stops_at_once_naming_variant_step_and_term(data_root, tmp_path):
    args = fit_args(
        data_root,
        tmp_path / "run",
        "VariationalAutoencoder",
        "--model.learning_rate",
        "10",
        "--trainer.max_epochs",
        "3",
        "--resume_checkpoint.every_n_train_steps",
        "1",
    )
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ae-lightning: error: non-finite loss in VariationalAutoencoder at step ")
    assert "train/kl=inf" in message or "train/recon=nan" in message
    assert "Traceback" not in result.stderr
    # every checkpoint kept is from before the failure: finite weights only
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    step = int(message.split(" at step ")[1].split()[0])
    assert last["global_step"] == step - 1


def test_non_finite_batches_can_be_skipped_and_counted(data_root, tmp_path):
    import pytorch_lightning as pl

    from ae_lightning import Autoencoder, ImageDataModule

    class SometimesNaN(Autoencoder):
        def training_step(self, batch, batch_idx=0):
            terms = super().training_step(batch, batch_idx)
            if batch_idx % 3 == 0:  # every third batch: a broken loss
                terms = {k: v * float("nan") for k, v in terms.items()}
            return terms

    model = SometimesNaN(nonfinite="skip")
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["train/skipped_batches"].item() == 4  # batches 0, 3, 6, 9 of the last epoch
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.callback_metrics["val/mse"] < 0.05  # and it still learned from the other batches


def test_truncated_and_foreign_checkpoints_are_one_clear_error(data_root, tmp_path):
    run = cli_in_process(  # the fit that writes the checkpoints: in this process (what it prints is not tested)
        *fit_args(data_root, tmp_path / "run", "VariationalAutoencoder", "--trainer.max_epochs", "1"), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:5000])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(3000))
    base = ["test", "--data.name", "mnist", "--data.root", str(data_root), *SMALL_DATA]
    for path in (truncated, garbage):
        result = cli_in_process(*base, "--model", "VariationalAutoencoder", "--ckpt_path", str(path), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert (
            f"ckpt_path='{path}' is not a readable ae-lightning checkpoint (truncated or corrupted?)" in result.stderr
        )
    result = cli_in_process(*base, "--model", "Autoencoder", "--ckpt_path", str(last), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "was written by VariationalAutoencoder, but the model asked for is Autoencoder" in result.stderr
    missing = str(tmp_path / "missing.ckpt")
    result = cli_in_process(*base, "--model", "Autoencoder", "--ckpt_path", missing, cwd=tmp_path)
    assert result.returncode == 2 and "missing.ckpt': no such file" in result.stderr
    # the Python API refuses too
    from ae_lightning import Autoencoder
    from ae_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="written by VariationalAutoencoder, but the model is Autoencoder"):
        Autoencoder.load_from_checkpoint(last, weights_only=True)
    import pytorch_lightning as pl

    from ae_lightning import ImageDataModule, VariationalAutoencoder

    trainer = pl.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    trainer.fit(VariationalAutoencoder(), datamodule=dm)
    trainer.save_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(ConfigError, match="written by VariationalAutoencoder, but the model is Autoencoder"):
        Autoencoder.load_from_checkpoint(tmp_path / "plain.ckpt", weights_only=True)


def test_checkpoints_load_with_weights_only(data_root, tmp_path):
    run = cli_in_process(  # in this process: what is tested is the files it writes
        *fit_args(
            data_root,
            tmp_path / "run",
            "DenoisingAutoencoder",
            "--trainer.max_epochs",
            "1",
            "--data.noise",
            "{kind: masking, level: 0.2}",
        ),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    checkpoints = list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) >= 2, checkpoints  # last.ckpt and the best epoch's
    for path in checkpoints:
        checkpoint = torch.load(path, weights_only=True)  # plain data only: no pickled classes
        assert checkpoint["ae_lightning"]["variant"] == "DenoisingAutoencoder"


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous file, never a half one (Lightning saves through an fsspec
    transaction: a temporary file moved into place)."""
    import fsspec.implementations.local as local
    from lightning_fabric.utilities.cloud_io import _atomic_save

    target = tmp_path / "last.ckpt"
    _atomic_save({"version": 1}, target)

    def dies(self, data):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(local.LocalFileOpener, "write", dies)
    with pytest.raises(KeyboardInterrupt):
        _atomic_save({"version": 2, "payload": torch.zeros(1000)}, target)
    assert torch.load(target, weights_only=True) == {"version": 1}

    from ae_lightning.files import write_json_atomic

    summary = tmp_path / "summary.json"
    write_json_atomic(summary, {"runs": 1})
    monkeypatch.setattr(Path, "write_text", lambda self, text: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_json_atomic(summary, {"runs": 2})
    assert json.loads(summary.read_bytes()) == {"runs": 1}


def test_a_run_killed_by_the_kernel_is_reported_as_failed(tmp_path):
    from ae_lightning.suite.launch import describe_exit

    (tmp_path / "log.txt").write_text("epoch 1/3 ...\nRuntimeError: CUDA out of memory\n")
    assert describe_exit(-9, tmp_path / "log.txt") == "killed by signal 9 (out of memory?)"
    assert describe_exit(1, tmp_path / "log.txt") == "exit code 1: RuntimeError: CUDA out of memory"


def test_last_checkpoint_knows_the_best_checkpoint_of_its_epoch(data_root, tmp_path):
    """The resume checkpoint is written after ModelCheckpoint at epoch end, so a resumed (or finished and re-run)
    run finds the best checkpoint that really exists."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from ae_lightning import Autoencoder, ImageDataModule
    from ae_lightning.callbacks import ResumeCheckpoint

    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss")
    resume = ResumeCheckpoint(every_n_train_steps=1000, dirpath=str(tmp_path))
    with pytest.raises(Exception, match="must come after ModelCheckpoint"):
        pl.Trainer(max_epochs=1, logger=False, callbacks=[resume, best]).fit(Autoencoder(), datamodule=dm)
    trainer = pl.Trainer(
        max_epochs=4, logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[best, resume]
    )
    trainer.fit(Autoencoder(), datamodule=dm)
    state = torch.load(resume.path, weights_only=True)["callbacks"]
    (saved,) = [v for k, v in state.items() if k.startswith("ModelCheckpoint")]
    assert saved["best_model_path"] == best.best_model_path and Path(saved["best_model_path"]).is_file()
    assert trainer.checkpoint_callback is best


def test_preemption_signal_is_handled_at_the_end_of_the_step(data_root, tmp_path):
    """SLURM's SIGUSR1 lands mid-step; Lightning's handler (here a stand-in) must run only once the step is over:
    after the optimizer step and the step count, never between them."""
    import pytorch_lightning as pl

    from ae_lightning import Autoencoder, ImageDataModule
    from ae_lightning.callbacks import ResumeCheckpoint

    handled = []

    class SignalMidStep(pl.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            if trainer.global_step == 3:  # during the 4th step, before its backward pass and optimizer step
                os.kill(os.getpid(), signal.SIGUSR1)

    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    trainer = pl.Trainer(
        max_steps=6,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SignalMidStep(), ResumeCheckpoint(every_n_train_steps=1000, dirpath=str(tmp_path))],
    )

    def lightning_stand_in(signum, frame):
        handled.append(trainer.global_step)

    original = signal.signal(signal.SIGUSR1, lightning_stand_in)
    try:
        trainer.fit(Autoencoder(), datamodule=dm)
        assert handled == [4]  # once, with the 4th optimizer step done and counted
        assert signal.getsignal(signal.SIGUSR1) is lightning_stand_in and trainer.global_step == 6
    finally:
        signal.signal(signal.SIGUSR1, original)


def _write_many(path: str, tag: int, start) -> None:
    from ae_lightning.files import write_json_atomic

    start.wait()  # both processes write at the same time
    payload = list(range(20000))  # a write long enough for the two to overlap
    for index in range(300):
        write_json_atomic(path, {"writer": tag, "index": index, "payload": payload})


def test_processes_writing_one_file_at_once_never_fail(tmp_path):
    """Tuning workers start together and each writes OUT/suite.json: atomic writes from several processes to one
    path must all succeed, and leave a whole file and no partial."""
    import multiprocessing

    path = tmp_path / "suite.json"
    # forked: the workers only write files, and a spawned one would first import torch and Lightning (~6 s)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    workers = [context.Process(target=_write_many, args=(str(path), tag, start)) for tag in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert json.loads(path.read_text())["index"] == 299 and not list(tmp_path.glob("*.partial"))
