"""Dropout autoencoder."""

from __future__ import annotations

from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase


class DropoutAutoencoder(AutoencoderBase):
    """Dropout autoencoder:  L = dist(x, h_drop(g_drop(x))).

    While training, each input pixel is dropped with probability ``input_dropout`` and each hidden unit of g and h
    with probability ``hidden_dropout`` (survivors scaled by 1/(1-p)); at evaluation nothing is dropped.
    """

    def __init__(self, input_dropout: float = 0.2, hidden_dropout: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        for name, rate in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"model.{name}={rate} is a dropout rate and must be in [0, 1)")
        self.encoder, self.decoder = self.make_networks(input_dropout=input_dropout, hidden_dropout=hidden_dropout)

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        recon = self.distance(self.decoder(self.encode(x)), x)  # dropout is active in train mode only
        return {"loss": recon, "recon": recon}
