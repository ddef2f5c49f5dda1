"""Deep SVDD (Ruff et al. 2018, "Deep One-Class Classification", ICML)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase


class DeepSVDD(AutoencoderBase):
    """One-class Deep SVDD:  min_W (1/n) Σᵢ ‖φ(xᵢ; W) − c‖²  (+ λ‖W‖², AdamW's ``weight_decay``)

    φ is the encoder, built without bias terms (with a bias, φ = c for every x is a trivial solution; batch norm
    without affine parameters for the same reason). Ruff et al.'s recipe in one run:

    1. ``pretrain_epochs`` epochs as an autoencoder, L = dist(x, h(φ(x))); ``val/loss`` is +inf meanwhile, so
       the checkpoint the battery judges is always one of Deep SVDD proper (``val/recon`` shows them).
    2. When pre-training ends: c = the mean of φ(x) over the training images (eval mode, no gradient), each
       coordinate with |c_j| < ``center_eps`` pushed to ±``center_eps`` (a coordinate at 0 is matched trivially by
       zero weights); fixed from then on, and kept in checkpoints. The optimizer's moments restart there, as Ruff
       et al. start a new optimizer.
    3. L = mean ‖φ(x) − c‖². The decoder keeps learning to reconstruct from the detached codes,
       dist(x, h(sg[φ(x)])) — it never moves φ, and keeps ``forward`` a reconstruction for figures and
       ``test/mse``.

    The anomaly score is ``center_distance``, ‖φ(x) − c‖² (``anomaly_score``). Defaults: the LeNet-type net of
    the paper (``network: lenet``).
    """

    def __init__(self, pretrain_epochs: int = 10, center_eps: float = 0.1, network: str = "lenet", **kwargs) -> None:
        super().__init__(network=network, **kwargs)
        if pretrain_epochs < 0:
            raise ConfigError(f"model.pretrain_epochs={pretrain_epochs} must be >= 0 (0: centre of the initial net)")
        if not (math.isfinite(center_eps) and center_eps >= 0):
            raise ConfigError(f"model.center_eps={center_eps} must be a finite number >= 0")
        self.pretrain_epochs, self.center_eps = pretrain_epochs, center_eps
        self.encoder, self.decoder = self.make_networks(bias=False)
        self.register_buffer("center", torch.zeros(self.latent_dim))
        self.register_buffer("center_set", torch.zeros((), dtype=torch.bool))
        self.center_ready = False  # mirrors center_set as a plain bool: no device sync per training step

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.center_ready = bool(self.center_set)  # the checkpoint's phase, read once at load

    @torch.no_grad()
    def initial_center(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """c from ``images`` (uint8 or [0, 1]): the mean code in eval mode, small coordinates pushed to ±eps."""
        was_training = self.training
        self.eval()
        try:
            total, count = torch.zeros(self.latent_dim, device=self.device, dtype=torch.float64), 0
            for chunk in images.split(batch_size):
                x = chunk.to(self.device)
                x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
                total += self.encode(x).double().sum(0)
                count += len(x)
        finally:
            self.train(was_training)
        center = (total / count).float()
        small = center.abs() < self.center_eps
        return torch.where(small, torch.where(center < 0, -self.center_eps, self.center_eps), center)

    def on_train_epoch_start(self) -> None:
        if self.current_epoch < self.pretrain_epochs or self.center_ready:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "evaluated_train_images"):
            raise ConfigError(
                "DeepSVDD computes its centre from the data module's training images: use ImageDataModule"
            )
        self.center.copy_(self.initial_center(datamodule.evaluated_train_images()))
        self.center_set.fill_(True)
        self.center_ready = True
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()  # a fresh start of the moments for the new objective

    def center_distance(self, x: Tensor) -> Tensor:
        """‖φ(x) − c‖² per image."""
        return (self.encode(x).float() - self.center).pow(2).sum(1)

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        z = self.encode(x)
        if not self.center_ready:  # pre-training as an autoencoder
            recon = self.distance(self.decoder(z), x)
            return {"loss": recon if self.training else torch.full_like(recon, math.inf), "recon": recon}
        svdd = (z.float() - self.center).pow(2).sum(1).mean()
        recon = self.distance(self.decoder(z.detach()), x)
        return {"loss": svdd + recon, "svdd": svdd, "recon": recon}
