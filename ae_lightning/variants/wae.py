"""Wasserstein autoencoder with the MMD penalty (Tolstikhin, Bousquet, Gelly & Schölkopf 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, non_negative

# Tolstikhin et al.'s code sums the IMQ kernel over these multiples of its base scale C = 2 · d · σ²_prior: one scale
# alone is blind to differences much wider or narrower than it.
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_kernel(a: Tensor, b: Tensor, base_scale: float) -> Tensor:
    """k(a, b) = Σ_s C_s / (C_s + ‖a − b‖²), C_s = s · ``base_scale`` over IMQ_SCALES, as a [len(a), len(b)] matrix."""
    squared = torch.cdist(a.float(), b.float()).pow(2)
    return sum(s * base_scale / (s * base_scale + squared) for s in IMQ_SCALES)


def mmd_unbiased(z: Tensor, prior: Tensor, base_scale: float) -> Tensor:
    """The unbiased estimate of MMD²(q, p) from n codes ``z`` ~ q and n draws ``prior`` ~ p (the paper's Algorithm 2):
    1/(n(n−1)) Σ_{i≠j} [k(zᵢ, zⱼ) + k(z̃ᵢ, z̃ⱼ)] − 2/n² Σ_{i,j} k(zᵢ, z̃ⱼ). Its expectation is 0 when q = p, so a single
    estimate may be slightly negative."""
    n = len(z)
    off_diagonal = 1 - torch.eye(n, device=z.device)
    within = (imq_kernel(z, z, base_scale) + imq_kernel(prior, prior, base_scale)) * off_diagonal
    return within.sum() / (n * (n - 1)) - 2 * imq_kernel(z, prior, base_scale).mean()


class WassersteinAutoencoder(AutoencoderBase):
    """WAE-MMD: a deterministic encoder whose aggregate code distribution q(z) = E_x[δ_g(x)] is pulled to the prior
    p(z) = N(0, σ²I):

        L = E_x ‖x − h(g(x))‖² + λ · MMD²(q(z), p(z))

    with the squared error summed over pixels (the paper's cost c(x, y) = ‖x − y‖²), MMD² estimated without bias on
    each batch against as many prior draws with the inverse multiquadratic kernel (``imq_kernel``), λ =
    ``mmd_weight``, σ = ``prior_std``. ``sample(n)`` decodes prior draws.
    """

    def __init__(self, mmd_weight: float = 10.0, prior_std: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not prior_std > 0:
            raise ConfigError(f"model.prior_std={prior_std} must be > 0")
        self.mmd_weight, self.prior_std = non_negative("mmd_weight", mmd_weight), prior_std
        self.encoder, self.decoder = self.make_networks()

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        if len(x) < 2:
            raise ConfigError("WassersteinAutoencoder needs batches of at least 2 images (the MMD compares codes)")
        z = self.encode(x)
        recon = self.distance(self.decoder(z), x) * x[0].numel()  # ‖x − h(z)‖² per image, mean over the batch
        prior = torch.randn_like(z, dtype=torch.float32) * self.prior_std
        mmd = mmd_unbiased(z.float(), prior, base_scale=2 * self.latent_dim * self.prior_std**2)
        return {"loss": recon + self.mmd_weight * mmd, "recon": recon, "mmd": mmd}

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n images decoded from z ~ N(0, σ²I)."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.device) * self.prior_std)
