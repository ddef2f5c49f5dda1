"""Callbacks for suite runs: a one-line progress report per epoch, what the fit cost, W&B image panels (rank 0
only) and the resume checkpoint."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from torchvision.utils import make_grid

from ae_lightning.devices import peak_memory_mb, synchronize
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.views import codes_figure
from ae_lightning.messages import warn
from ae_lightning.variants import AutoencoderBase
from ae_lightning.variants.base import Samples


class ValidationProbe(pl.Callback):
    """``val/probe_accuracy`` after every validation epoch: a linear probe (the battery's: logistic regression on
    standardised codes, its L2 chosen on a held-out fifth) fit on the codes of a seeded half of the labelled
    validation images and scored on the other half — never a training image, never the test split. An objective
    that can see what a regulariser is for (codes that separate the classes), where the clean reconstruction error
    rewards switching the regulariser off; added wherever it is the checkpoint's monitor (and so a tuning
    objective). Every rank computes it on the same weights and images, so it is logged without a reduction."""

    KEY = "val/probe_accuracy"

    def __init__(self, steps: int = 100, seed: int = 0) -> None:
        self.steps, self.seed = steps, seed

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: AutoencoderBase) -> None:
        from ae_lightning.evaluation.battery import linear_probe  # the battery's probe, imported when used

        if trainer.sanity_checking:
            return
        split = getattr(trainer.datamodule, "splits", {}).get("val")
        if split is None or len(split.labels) < 4 or not (split.labels >= 0).all():
            raise ConfigError(
                f"{self.KEY} needs labelled validation images (data.val_size > 0 of labelled data); this data's "
                "validation split has none: choose another objective (val/mse, val/loss)"
            )
        order = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(self.seed))
        fit, held_out = order[: len(order) // 2], order[len(order) // 2 :]
        with torch.no_grad():
            codes = torch.cat(
                [
                    pl_module.encode(chunk.to(pl_module.device).float() / 255).float()
                    for chunk in split.images.split(1000)
                ]
            )
        labels = split.labels.to(codes.device)
        accuracy, _ = linear_probe(
            codes[fit.to(codes.device)], labels[fit], codes[held_out.to(codes.device)], labels[held_out], self.steps
        )
        pl_module.log(self.KEY, accuracy, on_epoch=True, sync_dist=False)


class EpochLine(pl.Callback):
    """Prints ``epoch 3/10  train/loss 0.0213  val/mse 0.0198  (4.1 s)`` after each epoch, for logs and runners, and
    within a long epoch a line at most every ``progress_every_s`` seconds (``epoch 3/10  step 120/469  850 samples/s
    about 25 s left in the epoch``): a log file or a cluster job's output is never silent for long."""

    def __init__(self, progress_every_s: float = 30.0) -> None:
        self.progress_every_s = progress_every_s
        self.started = self.last_line = time.perf_counter()  # a run resumed mid-epoch starts no epoch
        self.samples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = self.last_line = time.perf_counter()
        self.samples = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        self.samples += len(batch.clean) if hasattr(batch, "clean") else 0
        now = time.perf_counter()
        if not trainer.is_global_zero or now - self.last_line < self.progress_every_s:
            return
        self.last_line = now
        elapsed, total = now - self.started, trainer.num_training_batches
        left = ""
        if isinstance(total, int) and total > 0:  # not for an endless (iterable) loader
            left = f"  about {elapsed / (batch_idx + 1) * (total - batch_idx - 1):.0f} s left in the epoch"
        print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {batch_idx + 1}/{total}  "
            f"{self.samples / elapsed:.0f} samples/s{left}",
            flush=True,
            file=sys.stdout,
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(
            f"{key} {float(metrics[key]):.4g}" for key in ("train/loss", "val/loss", "val/mse") if key in metrics
        )
        seconds = time.perf_counter() - self.started
        print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}  ({seconds:.1f} s)",
            flush=True,
            file=sys.stdout,
        )


class LogEveryEpoch(pl.Callback):
    """Where the user left ``log_every_n_steps`` unset, Lightning logs training metrics every 50 optimizer steps: an
    epoch of fewer steps (a small folder: 8) would log none, its curves would stay empty and the epoch line would
    repeat a stale loss. This lowers the interval to the steps of one epoch where they are fewer."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        batches = len(trainer.datamodule.train_dataloader())  # this rank's share under DDP
        limit = trainer.limit_train_batches
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * (limit if limit is not None else 1))
        steps = max(1, batches // max(1, trainer.accumulate_grad_batches))
        trainer.log_every_n_steps = min(trainer.log_every_n_steps, steps)


class FitMeter(pl.Callback):
    """What the fit cost, measured where it happened: the device it trained on, the samples trained in this
    process's segment (a resumed run counts only what it trained itself) over the seconds it took, and the peak
    memory of that device — read at the end of training, before Lightning's teardown moves the module to the CPU.

    ``samples`` counts every rank's batches (this rank's batch size × world size: DDP shares are equal).
    """

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.samples, self.seconds, self.peak_mem_mb = 0, 0.0, 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.device = trainer.strategy.root_device
        self.samples = 0
        synchronize(self.device)
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.samples += len(batch.label) * trainer.world_size  # a shape, no device sync

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.started
        self.peak_mem_mb = peak_memory_mb(self.device)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


class ImagePanels(pl.Callback):
    """Every ``every_n_epochs`` epochs, logs to W&B from a fixed validation batch: clean | corrupted |
    reconstruction; for a VAE, prior samples and latent interpolations; and a 2-D view of the codes."""

    def __init__(self, every_n_epochs: int = 1, num_images: int = 16, num_codes: int = 2000) -> None:
        self.every_n_epochs, self.num_images, self.num_codes = every_n_epochs, num_images, num_codes

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: AutoencoderBase) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers or not trainer.is_global_zero or trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        # Prior samples draw random numbers: on a forked stream, so logging images never changes the training run
        # (a run with W&B on is the run `fit --config` reproduces).
        devices = [pl_module.device.index or 0] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self._log_panels(trainer, pl_module, loggers)

    def _log_panels(self, trainer: pl.Trainer, pl_module: AutoencoderBase, loggers: list[WandbLogger]) -> None:
        split = trainer.datamodule.splits["val"]
        if len(split.labels) == 0:
            return
        clean = split.images[: self.num_images].to(pl_module.device).float() / 255
        noisy = clean if split.noisy is None else split.noisy[: self.num_images].to(pl_module.device)
        images = {"images/reconstruction": make_grid(torch.cat([clean, noisy, pl_module(noisy)]), nrow=len(clean))}
        codes = (
            torch.cat(
                [
                    pl_module.encode(x.to(pl_module.device).float() / 255)
                    for x in split.images[: self.num_codes].split(500)
                ]
            )
            .float()
            .cpu()
        )
        if isinstance(pl_module, Samples):
            images["images/prior_samples"] = make_grid(pl_module.sample(64), nrow=8)
            start, end = codes[0], codes[1]
            steps = torch.linspace(0, 1, 10).unsqueeze(1)
            path = ((1 - steps) * start + steps * end).to(pl_module.device)
            images["images/interpolation"] = make_grid(pl_module.decode(path), nrow=10)
        names = getattr(trainer.datamodule, "class_names", None)
        figure = codes_figure(codes, split.labels[: self.num_codes], f"{type(pl_module).__name__} codes", names)
        for logger in loggers:
            try:
                logger.log_image("images/codes_2d", images=[figure], step=trainer.global_step)
                for key, grid in images.items():
                    logger.log_image(key, images=[grid.clamp(0, 1).cpu()], step=trainer.global_step)
            except Exception as err:  # W&B problems never fail a training run
                warn(f"W&B image logging failed: {err}")
        plt.close(figure)


# How often last.ckpt is rewritten, for `ae-lightning fit` and for every suite run alike: at most this many steps
# are lost to a kill; a checkpoint of these models costs milliseconds.
CHECKPOINT_EVERY_N_STEPS = 200


class ResumeCheckpoint(Checkpoint):
    """Keeps ``<dirpath>/last.ckpt`` current: every ``every_n_train_steps`` steps and at every epoch end, so a killed
    or preempted run loses at most that many steps. Resuming from it (``--ckpt_path …/last.ckpt``) is exact: the
    data order, the position in the epoch and the random state are in the checkpoint. Lightning writes checkpoints
    through an fsspec transaction (a temporary file renamed into place), so a kill mid-write leaves the previous
    ``last.ckpt`` intact.

    It also moves SLURM's pre-emption warning (SIGUSR1) to a step boundary. Lightning's handler saves its
    ``hpc_ckpt`` and requeues the job from inside the signal handler, i.e. at whatever point of a step the signal
    lands — after the batch was counted but before the optimizer step, or half-way through the optimizer's update of
    the parameters — so the resumed run could skip or repeat a batch. Here the handler only records the signal, and
    Lightning's handler runs at the end of the current training step, where the checkpoint is consistent.

    Under DDP the ranks get the signal at different moments (or only some of them get it), while the handler saves a
    checkpoint, which every rank must enter at the same step. So the ranks agree: every
    ``signal_sync_every_n_steps`` steps (and at the end of training) they all-reduce "has any rank been signalled?"
    and, if so, all run the handler at that same step. One tiny collective every N steps; nothing in one process.
    """

    def __init__(
        self,
        every_n_train_steps: int = CHECKPOINT_EVERY_N_STEPS,
        dirpath: str | None = None,
        save_on_epoch_end: bool = True,
        signal_sync_every_n_steps: int = 10,
    ) -> None:
        if every_n_train_steps < 1:
            raise ConfigError(f"resume_checkpoint.every_n_train_steps={every_n_train_steps} must be >= 1")
        if signal_sync_every_n_steps < 1:
            raise ConfigError(f"resume_checkpoint.signal_sync_every_n_steps={signal_sync_every_n_steps} must be >= 1")
        self.every_n_train_steps, self.dirpath, self.save_on_epoch_end = every_n_train_steps, dirpath, save_on_epoch_end
        self.signal_sync_every_n_steps = signal_sync_every_n_steps
        self._deferred_signal: int | None = None  # SIGUSR1 received during the current step
        self._requeue_handler = None  # the SIGUSR1 handler it was taken from (Lightning's), run at the step's end

    @property
    def path(self) -> str:
        return os.path.join(self.dirpath, "last.ckpt")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        best_checkpoints = [i for i, c in enumerate(trainer.callbacks) if isinstance(c, ModelCheckpoint)]
        if best_checkpoints and trainer.callbacks.index(self) < max(best_checkpoints):
            # Its epoch-end checkpoint must record the best checkpoint ModelCheckpoint has just written.
            raise ConfigError("ResumeCheckpoint must come after ModelCheckpoint in the trainer's callbacks")
        if self.dirpath is None:
            best = trainer.checkpoint_callback
            base = getattr(best, "dirpath", None) or os.path.join(
                trainer.log_dir or trainer.default_root_dir, "checkpoints"
            )
            self.dirpath = base

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._deferred_signal, self._requeue_handler = None, None
        if not hasattr(signal, "SIGUSR1") or threading.current_thread() is not threading.main_thread():
            return
        installed = signal.getsignal(signal.SIGUSR1)
        if callable(installed):  # Lightning's auto-requeue handler (under SLURM), or whatever the user installed
            self._requeue_handler = installed
            signal.signal(signal.SIGUSR1, self._defer_signal)

    def _defer_signal(self, signum: int, frame) -> None:
        self._deferred_signal = signum

    def _run_deferred_signal(self, trainer: pl.Trainer, at_end: bool = False) -> None:
        if self._requeue_handler is None:  # the same on every rank: no handler, nothing to agree on
            return
        received = self._deferred_signal is not None
        if trainer.world_size > 1:
            if not at_end and trainer.global_step % self.signal_sync_every_n_steps:
                return
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        if received:
            signum, self._deferred_signal = self._deferred_signal or signal.SIGUSR1, None
            self._requeue_handler(signum, None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_deferred_signal(trainer, at_end=True)  # a signal after the last step still gets its checkpoint
        if self._requeue_handler is not None:
            signal.signal(signal.SIGUSR1, self._requeue_handler)  # Lightning restores its originals at teardown
            self._requeue_handler = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._run_deferred_signal(trainer)
        if trainer.global_step % self.every_n_train_steps == 0:
            if isinstance(pl_module, AutoencoderBase):
                pl_module.check_finite(outputs, sync=True)  # never overwrite a good checkpoint with a broken one
            trainer.save_checkpoint(self.path, weights_only=False)  # full: optimizer, loops, RNG

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A Checkpoint subclass, so Lightning runs it after ModelCheckpoint: the state saved here knows this
        # epoch's best checkpoint.
        if self.save_on_epoch_end:
            trainer.save_checkpoint(self.path, weights_only=False)  # full: optimizer, loops, RNG
