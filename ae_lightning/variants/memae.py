"""Memory-augmented autoencoder (Gong et al. 2019, "Memorizing Normality to Detect Anomaly", ICCV)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, non_negative


def memory_weights(z: Tensor, memory: Tensor, shrink_threshold: float, eps: float = 1e-12) -> Tensor:
    """The addressing weights ŵ [N, M] of codes z [N, C] into ``memory`` [M, C]:
    wᵢ = softmax over i of d(z, mᵢ) = z·mᵢ; hard shrinkage ŵᵢ = max(wᵢ − λ, 0)·wᵢ / (|wᵢ − λ| + ε); ŵ renormalised
    to sum to 1 (λ = ``shrink_threshold``; 0: no shrinkage).

    The paper writes d as the cosine similarity; the authors' code uses the dot product, as here: a softmax of
    cosines (in [−1, 1]) over M items is nearly uniform, and ẑ is then close to the mean of the memory for every
    image (measured here, without the batch norm below: reconstructions no better than the mean image)."""
    weights = F.softmax(z @ memory.t(), dim=1)
    if shrink_threshold > 0:
        weights = F.relu(weights - shrink_threshold) * weights / ((weights - shrink_threshold).abs() + eps)
        weights = weights / weights.sum(1, keepdim=True).clamp_min(eps)
    return weights


def addressing_entropy(weights: Tensor, eps: float = 1e-12) -> Tensor:
    """mean over the batch of Σᵢ −ŵᵢ log ŵᵢ (0 where ŵᵢ = 0)."""
    return -(weights * torch.log(weights + eps)).sum(1).mean()


class MemoryAutoencoder(AutoencoderBase):
    """MemAE:  z = g(x),  ẑ = ŵ(z)ᵀ M,  x̂ = h(ẑ),  L = dist(x, x̂) + α · mean Σᵢ −ŵᵢ log ŵᵢ

    M is a learned memory of ``memory_size`` items of the code's size; ŵ addresses it (``memory_weights``: softmax
    of z·mᵢ, hard shrinkage at λ = ``shrink_threshold``, renormalised) — so a code is a sparse mixture of a few
    normal patterns, and an anomaly is reconstructed from normal ones. α = ``entropy_weight`` (their 0.0002)
    favours sparse addressing further. Gong et al. take λ in [1/M, 3/M]; the default is 1/M, the one value that
    can never shrink every weight away (the largest softmax weight is at least the mean, 1/M).

    One departure, measured: z is batch-normalised (no affine parameters; running statistics at evaluation)
    before addressing. Without it the MLP encoder's codes share one large common direction, every image addresses
    the same item, and the softmax saturates so the encoder gets no gradient (on the generated test digits: one
    item for all images, reconstruction no better than the mean image; with it, 0.50 of the mean image's error and
    13 distinct items). ``encode`` returns ẑ, the code the decoder reads. The anomaly score is the reconstruction
    error (``reconstruction``).
    """

    def __init__(
        self,
        memory_size: int = 100,
        shrink_threshold: float | None = None,
        entropy_weight: float = 2e-4,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if memory_size < 1:
            raise ConfigError(f"model.memory_size={memory_size} must be >= 1")
        threshold = 1 / memory_size if shrink_threshold is None else shrink_threshold
        if not (math.isfinite(threshold) and 0 <= threshold < 1):
            raise ConfigError(f"model.shrink_threshold={shrink_threshold} must be in [0, 1) (0: no shrinkage)")
        self.shrink_threshold = threshold
        self.entropy_weight = non_negative("entropy_weight", entropy_weight)
        self.encoder, self.decoder = self.make_networks()
        bound = 1 / math.sqrt(self.latent_dim)  # their initialisation: uniform(−1/√C, 1/√C)
        self.memory = nn.Parameter(torch.empty(memory_size, self.latent_dim).uniform_(-bound, bound))
        self.code_norm = nn.BatchNorm1d(self.latent_dim, affine=False)

    def address(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(ẑ, ŵ) for images x."""
        weights = memory_weights(self.code_norm(self.encoder(x).float()), self.memory.float(), self.shrink_threshold)
        return weights @ self.memory.float(), weights

    def encode(self, x: Tensor) -> Tensor:
        return self.address(x)[0]

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        z_hat, weights = self.address(x)
        recon = self.distance(self.decoder(z_hat), x)
        entropy = self.entropy_weight * addressing_entropy(weights)
        return {"loss": recon + entropy, "recon": recon, "entropy": entropy}
