"""Importance-weighted autoencoder (Burda, Grosse & Salakhutdinov 2015)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.vae import VariationalAutoencoder, log_importance_weights


class ImportanceWeightedAutoencoder(VariationalAutoencoder):
    """IWAE: the VAE's model and encoder trained on the k-sample importance-weighted bound

        L_k = −log (1/k) Σᵢ wᵢ,   wᵢ = p(x|zᵢ) p(zᵢ) / q(zᵢ|x),   zᵢ = μ + σ ⊙ εᵢ ~ q(z|x)

    (per image, mean over the batch). L_1 is the VAE's −ELBO estimated with one draw; L_k ≥ L_{k+1} ≥ −log p(x) in
    expectation, so a larger ``samples`` (k) trains on a tighter bound (at k times the decoder's cost). There is no
    β: weighting the prior term would break the bound. Logged beside it: ``recon`` = mean over draws of −log p(x|zᵢ)
    and ``kl`` = mean of log q(zᵢ|x) − log p(zᵢ) (their sum is the average single-draw −ELBO, ≥ L_k).
    """

    def __init__(self, samples: int = 5, **kwargs) -> None:
        for fixed, value in (("beta", 1.0), ("kl_warmup_steps", 0)):
            if kwargs.get(fixed, value) != value:
                raise ConfigError(
                    f"model.{fixed}={kwargs[fixed]} does not apply to ImportanceWeightedAutoencoder: its objective "
                    "is the importance-weighted bound, which a weighted prior term would break"
                )
        super().__init__(**kwargs)
        if samples < 1:
            raise ConfigError(f"model.samples={samples} must be >= 1 (the k of the importance-weighted bound)")
        self.samples = samples

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        eps = torch.randn(self.samples, len(x), self.latent_dim, device=x.device)
        log_w, nll, kl = log_importance_weights(self, x, eps)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.samples)  # log (1/k) Σ wᵢ, per image
        return {"loss": -bound.mean(), "recon": nll.mean(), "kl": kl.mean()}
