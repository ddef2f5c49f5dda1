"""One DDP fit on CPU processes (gloo), for tests/test_distributed.py:

    python tests/ddp_worker.py CONFIG.json

Lightning's launcher starts the other ranks by running this same command again. CONFIG says what to train and
what to do to one rank (a NaN batch, a SIGUSR1 mid-step); each rank writes what it saw to ``OUT/rank<r>.pt``:
its random state when training started and when the first batch arrived, the steps at which it ran the requeue
handler, and its final weights.

With ``"variants": [...]`` in CONFIG it fits each variant in turn instead (2 epochs each, the same process group:
the launcher starts the other rank once), and each rank writes every variant's global step and final weights.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from ae_lightning import VARIANTS, ImageDataModule
from ae_lightning.callbacks import ResumeCheckpoint

warnings.filterwarnings("ignore")


class Probe(pl.Callback):
    """Records the rank's random state at its first batch; breaks one rank's batch or signals one rank on request."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.rng_state_at_train_start: torch.Tensor | None = None
        self.first_rng_state: torch.Tensor | None = None

    def on_train_start(self, trainer, pl_module) -> None:  # callbacks' hooks run before the module's
        self.rng_state_at_train_start = torch.get_rng_state()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.first_rng_state is None:
            self.first_rng_state = torch.get_rng_state()
        on_this_rank = trainer.global_rank == self.config.get("rank", -1)
        if on_this_rank and trainer.global_step == self.config.get("nan_at_step"):
            batch.clean.fill_(float("nan"))  # this rank's loss and gradients become NaN
        if on_this_rank and trainer.global_step == self.config.get("signal_at_step"):
            os.kill(os.getpid(), signal.SIGUSR1)  # mid-step, on this rank only


def every_variant(config: dict) -> None:
    out = Path(config["out"])
    finished = {}
    for index, variant in enumerate(config["variants"]):
        pl.seed_everything(index, verbose=False)
        datamodule = ImageDataModule(
            name="mnist", root=config["data_root"], download=False, val_size=100, batch_size=25,
            **variant.get("data", {}),
        )  # fmt: skip
        model = VARIANTS[variant["model"]](input_shape=datamodule.image_shape, **variant.get("args", {}))
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=2,
            strategy="ddp",
            max_epochs=2,
            # no validation: its forward pass would broadcast rank 0's buffers (DDP's broadcast_buffers) and hide a
            # replica that drifted in the last training step
            limit_val_batches=0,
            default_root_dir=str(out / variant.get("name", variant["model"])),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=datamodule)
        state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        finished[variant.get("name", variant["model"])] = {
            "global_step": trainer.global_step,  # optimizer steps: two a batch for the adversarial AE
            "optimizers": len(trainer.optimizers),
            "state_dict": state,
        }
    torch.save(finished, out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    if "variants" in config:
        every_variant(config)
        return
    out = Path(config["out"])
    pl.seed_everything(0, verbose=False)
    noise = {"kind": "gaussian", "level": 0.3} if config["model"] == "DenoisingAutoencoder" else None
    datamodule = ImageDataModule(
        name="mnist", root=config["data_root"], download=False, val_size=100, batch_size=25, noise=noise
    )
    model = VARIANTS[config["model"]](input_shape=datamodule.image_shape, **config.get("model_args", {}))
    probe = Probe(config)
    resume = ResumeCheckpoint(
        config.get("checkpoint_every", 1000),
        dirpath=str(out / "checkpoints"),
        save_on_epoch_end=False,
        signal_sync_every_n_steps=config.get("signal_sync_every", 10),
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=config.get("devices", 2),
        strategy="ddp" if config.get("devices", 2) > 1 else "auto",
        max_epochs=config.get("epochs", 2),
        max_steps=config.get("max_steps", -1),
        default_root_dir=str(out),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[resume, probe],
    )
    handled: list[int] = []

    def requeue_like_lightning(signum, frame) -> None:
        # What Lightning's SLURM handler does: save a checkpoint (a collective: every rank must take part at the
        # same step) and end the job, which SLURM then requeues.
        trainer.save_checkpoint(out / "hpc_ckpt_1.ckpt")
        handled.append(trainer.global_step)
        trainer.should_stop = True

    signal.signal(signal.SIGUSR1, requeue_like_lightning)
    trainer.fit(model, datamodule=datamodule, ckpt_path=config.get("ckpt_path"), weights_only=True)
    torch.save(
        {
            "rng_state_at_train_start": probe.rng_state_at_train_start,
            "first_rng_state": probe.first_rng_state,
            "handled_at": handled,
            "global_step": trainer.global_step,
            "state_dict": model.state_dict(),
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
