"""β-TCVAE (Chen, Li, Grosse & Duvenaud 2018): the VAE's KL split into its three parts, the total correlation
weighted by β."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.vae import VariationalAutoencoder, log_standard_normal


def log_gaussian(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, exp(logvar)) elementwise (broadcasting)."""
    return log_standard_normal((z - mu) * torch.exp(-0.5 * logvar)) - 0.5 * logvar


def stratified_log_weights(batch_size: int, dataset_size: int, device: torch.device) -> Tensor:
    """log of Chen et al.'s minibatch stratified sampling weights [B, B]: row i weighs the codes' densities under
    every posterior of the batch so that, summed, they estimate q(zᵢ) = (1/N) Σₙ q(zᵢ|xₙ) over the whole data set
    of N images — 1/N on the image's own posterior, (N − M)/(N·M) on one stratum neighbour, 1/M on the others
    (M = B − 1)."""
    n, m = dataset_size, batch_size - 1
    weights = torch.full((batch_size, batch_size), 1 / m, device=device)
    weights.view(-1)[:: m + 1] = 1 / n
    weights.view(-1)[1 :: m + 1] = (n - m) / (n * m)
    weights[m - 1, 0] = (n - m) / (n * m)
    return weights.log()


def kl_decomposition(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The batch means of the three parts of E_x KL(q(z|x) ‖ p(z)) (Chen et al. 2018, eq. 2), for codes z ~ q(z|x):

        index-code MI = log q(z|x) − log q(z),   total correlation = log q(z) − Σⱼ log q(zⱼ),
        dimension-wise KL = Σⱼ log q(zⱼ) − log p(z)

    with q(z) and its marginals q(zⱼ) estimated from the batch by minibatch stratified sampling."""
    if len(z) < 2:
        raise ConfigError("β-TCVAE needs batches of at least 2 images (q(z) is estimated from the batch)")
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    log_q_given_x = log_gaussian(z, mu, logvar).sum(1)
    pairwise = log_gaussian(z[:, None], mu[None], logvar[None])  # [i, n, j]: log q(zᵢⱼ | xₙ)
    weights = stratified_log_weights(len(z), dataset_size, z.device)
    log_q = torch.logsumexp(weights + pairwise.sum(2), dim=1)
    log_marginals = torch.logsumexp(weights[:, :, None] + pairwise, dim=1).sum(1)
    log_prior = log_standard_normal(z).sum(1)
    mutual_information = (log_q_given_x - log_q).mean()
    total_correlation = (log_q - log_marginals).mean()
    dimension_wise_kl = (log_marginals - log_prior).mean()
    return mutual_information, total_correlation, dimension_wise_kl


class BetaTCVAE(VariationalAutoencoder):
    """β-TCVAE: the VAE with its KL decomposed and the total correlation weighted by β:

        L = −E_q[log p(x|z)] + I_q(x; z) + β · TC(q(z)) + Σⱼ KL(q(zⱼ) ‖ p(zⱼ))

    (``kl_decomposition``; β = 1 is the VAE's objective). ``beta`` (and its ``kl_warmup_steps``) weighs the total
    correlation only. ``dataset_size``: the N of the estimator; None = the training batches × batch size × ranks
    of the fit (outside a fit: the batch itself). Logged: ``recon``, ``mi``, ``tc``, ``dwkl``.
    """

    def __init__(self, beta: float = 6.0, dataset_size: int | None = None, **kwargs) -> None:
        super().__init__(beta=beta, **kwargs)
        if dataset_size is not None and dataset_size < 2:
            raise ConfigError(f"model.dataset_size={dataset_size} must be >= 2 (or None: from the trainer)")
        self.dataset_size = dataset_size

    def data_size(self, batch_size: int) -> int:
        if self.dataset_size is not None:
            return self.dataset_size
        trainer = self.attached_trainer
        if trainer is None or not math.isfinite(trainer.num_training_batches) or trainer.num_training_batches < 1:
            return batch_size  # outside a fit (test, validate alone): the batch stands for the data set
        return max(batch_size, int(trainer.num_training_batches) * batch_size * trainer.world_size)

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = self.negative_log_likelihood(self.decoder(z), x).mean()
        mi, tc, dwkl = kl_decomposition(z, mu, logvar, self.data_size(len(x)))
        return {"loss": recon + mi + self.beta_now() * tc + dwkl, "recon": recon, "mi": mi, "tc": tc, "dwkl": dwkl}
