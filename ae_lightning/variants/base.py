"""Plumbing every variant shares: hyperparameters, networks by name, the optimizer, logging and evaluation metrics.

No loss lives here. Each variant's ``training_step`` returns its loss terms as a dict — ``{"loss": L, "recon": …,
<its penalty>: …}`` — the uniform contract every evaluator relies on. This class logs those terms as
``train/<term>``; validation and test evaluate the same objective on their batches (``val/<term>``,
``test/<term>``) plus the comparable reconstruction error of the clean image, ``val/mse`` / ``test/mse``.
"""

from __future__ import annotations

import math
from typing import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

from ae_lightning.data.datamodule import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.nets import build_networks, resolve_network


def mse_distance(logits: Tensor, x: Tensor) -> Tensor:
    """Mean squared error between the reconstruction σ(logits) and x, averaged over pixels and batch."""
    return F.mse_loss(torch.sigmoid(logits), x)


def bce_distance(logits: Tensor, x: Tensor) -> Tensor:
    """Binary cross-entropy between the reconstruction σ(logits) and x (numerically stable, from logits)."""
    return F.binary_cross_entropy_with_logits(logits, x)


DISTANCES = {"mse": mse_distance, "bce": bce_distance}


class AutoencoderBase(pl.LightningModule):
    """Shared plumbing. Args common to every variant:

    Args:
        input_shape: (C, H, W) of the images; the CLI links it from ``data.image_shape``.
        latent_dim: size of the code z.
        hidden_dims: MLP layer widths or conv channels, encoder order (decoder mirrors); None = network default.
        network: ``auto`` (MLP for 1 channel, conv for 3), ``mlp`` or ``conv``.
        distance: reconstruction distance ``mse`` or ``bce``.
        learning_rate, weight_decay: AdamW settings.
    """

    sigmoid_codes = False  # True where codes live in (0, 1): the battery then counts z < 0.05 as inactive

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 32,
        hidden_dims: Sequence[int] | None = None,
        network: str = "auto",
        distance: str = "mse",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim={latent_dim} must be >= 1")
        if distance not in DISTANCES:
            raise ConfigError(f"model.distance={distance!r} is not known; allowed: {sorted(DISTANCES)}")
        if not learning_rate > 0:
            raise ConfigError(f"model.learning_rate={learning_rate} must be > 0")
        if hidden_dims is not None and any(h < 1 for h in hidden_dims):
            raise ConfigError(f"model.hidden_dims={list(hidden_dims)} must all be >= 1")
        if len(input_shape) != 3:
            raise ConfigError(f"model.input_shape={list(input_shape)} must be (channels, height, width)")
        resolve_network(network, input_shape)  # fails early on an unknown name
        self.save_hyperparameters()
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.distance = DISTANCES[distance]
        self.val_mse = torchmetrics.MeanSquaredError()
        self.test_mse = torchmetrics.MeanSquaredError()

    def make_networks(self, code_dim: int | None = None, **dropout: float) -> tuple[nn.Module, nn.Module]:
        """The encoder g (x → R^code_dim, default latent_dim) and decoder h (z → logits) these hparams describe."""
        hp = self.hparams
        return build_networks(hp.network, self.input_shape, code_dim or self.latent_dim, self.latent_dim,
                              hp.hidden_dims, **dropout)

    # --- the model: g, h and the reconstruction ---------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """z = g(x)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """x̂ = h(z), an image in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction h(g(x)), shaped like x."""
        return self.decode(self.encode(x))

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        raise NotImplementedError("each variant defines its loss in training_step")

    # --- logging --------------------------------------------------------------------------------------------
    def _log_terms(self, stage: str, terms: dict[str, Tensor], batch_size: int) -> None:
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/{name}": value.detach() for name, value in terms.items()},
            on_step=on_step, on_epoch=not on_step, sync_dist=not on_step, batch_size=batch_size,
        )

    def on_train_batch_end(self, outputs: dict[str, Tensor], batch: Batch, batch_idx: int) -> None:
        self._log_terms("train", outputs, len(batch.label))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # The variant's own objective on the validation batch, plus the error on clean images every variant shares.
        self._log_terms("val", self.training_step(batch, batch_idx), len(batch.label))
        self.val_mse(self(batch.clean), batch.clean)
        self.log("val/mse", self.val_mse, on_epoch=True, batch_size=len(batch.label))

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_terms("test", self.training_step(batch, batch_idx), len(batch.label))
        self.test_mse(self(batch.clean), batch.clean)
        self.log("test/mse", self.test_mse, on_epoch=True, batch_size=len(batch.label))

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        codes = self.encode(batch.clean)
        return {"codes": codes, "reconstructions": self.decode(codes), "labels": batch.label}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate,
                                 weight_decay=self.hparams.weight_decay)

    # --- checks -------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_shape = getattr(datamodule, "image_shape", None)
        if data_shape is not None and tuple(data_shape) != self.input_shape:
            raise ConfigError(
                f"model.input_shape={list(self.input_shape)} does not match the data: {datamodule.name} images are "
                f"{list(data_shape)} (leave input_shape unset and the CLI links it from the data)"
            )


def non_negative(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number >= 0, else fail naming the option."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"model.{name}={value} must be a finite number >= 0")
    return value
