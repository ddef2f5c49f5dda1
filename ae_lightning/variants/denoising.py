"""Denoising autoencoder (Vincent et al. 2008, 2010)."""

from __future__ import annotations

from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase


class DenoisingAutoencoder(AutoencoderBase):
    """Denoising autoencoder:  x̃ ~ C(x̃ | x),  L = dist(h(g(x̃)), x).

    The corruption C is the data module's ``noise`` (Gaussian x̃ = x + ε, ε ~ N(0, σ²); masking; salt-and-pepper),
    drawn fresh every training step. Without noise this would silently be a plain autoencoder, so it refuses to fit.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.encoder, self.decoder = self.make_networks()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None and getattr(datamodule, "noise", None) is None:
            raise ConfigError(
                "DenoisingAutoencoder needs corrupted inputs but data.noise is not set; set it, e.g. "
                "--data.noise.kind gaussian --data.noise.level 0.3 (kinds: gaussian, masking, salt_pepper)"
            )

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x, x_tilde = batch.clean, batch.noisy
        recon = self.distance(self.decoder(self.encode(x_tilde)), x)
        return {"loss": recon, "recon": recon}
