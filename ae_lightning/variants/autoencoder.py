"""Plain autoencoder."""

from __future__ import annotations

from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.variants.base import AutoencoderBase


class Autoencoder(AutoencoderBase):
    """Plain autoencoder:  L = dist(x, h(g(x))).

    ``dist`` is ``mse`` or ``bce`` (``distance``); g and h are the networks ``network``/``hidden_dims`` name.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.encoder, self.decoder = self.make_networks()

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        recon = self.distance(self.decoder(self.encode(x)), x)
        return {"loss": recon, "recon": recon}
