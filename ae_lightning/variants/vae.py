"""Variational autoencoder (Kingma & Welling 2014) with β (Higgins et al. 2017) and optional KL warm-up."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, HasPosterior, non_negative

# The KL and the likelihoods are sums over units and pixels: computed in float32 also under mixed precision
# (``.float()`` is free on float32 tensors).


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """−log p(x | z) per sample, Bernoulli likelihood summed over pixels (x in [0, 1])."""
    return F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1).sum(dim=1)


def gaussian_nll(mean: Tensor, x: Tensor, std: float) -> Tensor:
    """−log N(x; mean, std²·I) per sample, summed over pixels."""
    squared = (x.float() - mean.float()).pow(2).flatten(1).sum(dim=1) / (2 * std**2)
    return squared + x[0].numel() * (math.log(std) + 0.5 * math.log(2 * math.pi))


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, 1) elementwise."""
    return -0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)


def log_importance_weights(model: HasPosterior, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For the draws zᵢ = μ + σ ⊙ εᵢ from q(z|x) (``eps`` [k, B, d]): (log wᵢ, −log p(x|zᵢ), log q(zᵢ|x) − log p(zᵢ)),
    each [k, B], where wᵢ = p(x|zᵢ) p(zᵢ) / q(zᵢ|x)."""
    mu, logvar = model.posterior(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)  # N(ε; 0, 1) / σ per unit
    log_prior = log_standard_normal(z).sum(-1)
    nll = model.negative_log_likelihood(model.decoder(z.flatten(0, 1)), x.repeat(len(eps), 1, 1, 1))
    nll = nll.view(len(eps), -1)
    return -nll + log_prior - log_q, nll, log_q - log_prior


def importance_weighted_log_likelihood(model: HasPosterior, x: Tensor, k: int) -> Tensor:
    """log p(x) ≈ log (1/k) Σᵢ p(x|zᵢ) p(zᵢ) / q(zᵢ|x),  zᵢ ~ q(z|x)  (per image; Burda et al. 2015)."""
    eps = torch.randn(k, len(x), model.latent_dim, device=x.device)
    log_w = log_importance_weights(model, x, eps)[0]
    return torch.logsumexp(log_w, dim=0) - math.log(k)


class VariationalAutoencoder(AutoencoderBase):
    """VAE:  q(z|x) = N(μ(x), diag σ²(x)),  z = μ + σ ⊙ ε,  ε ~ N(0, I),
             L = −E_q[log p(x|z)] + β_t · KL(q(z|x) ‖ N(0, I))   (per sample, mean over the batch)

    ``likelihood``: ``bernoulli`` (logits) or ``gaussian`` (mean σ(h(z)), fixed ``observation_std``); both summed
    over pixels. β_t = β · min(1, step / ``kl_warmup_steps``) (linear warm-up; 0 = no warm-up).
    ``encode`` returns μ, ``forward`` reconstructs from μ, ``sample(n)`` decodes draws from the prior.
    """

    def __init__(
        self,
        beta: float = 1.0,
        likelihood: str = "bernoulli",
        observation_std: float = 0.1,
        kl_warmup_steps: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(f"model.likelihood={likelihood!r} is not known; allowed: ['bernoulli', 'gaussian']")
        if not observation_std > 0:
            raise ConfigError(f"model.observation_std={observation_std} must be > 0")
        if likelihood == "bernoulli" and observation_std != 0.1:
            raise ConfigError(
                f"model.observation_std={observation_std} is not used with likelihood 'bernoulli'; remove it, or set "
                "likelihood 'gaussian'"
            )
        if kl_warmup_steps < 0:
            raise ConfigError(f"model.kl_warmup_steps={kl_warmup_steps} must be >= 0")
        self.beta = non_negative("beta", beta)
        self.likelihood, self.observation_std, self.kl_warmup_steps = likelihood, observation_std, kl_warmup_steps
        self.encoder, self.decoder = self.make_networks(code_dim=2 * self.latent_dim)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of q(z|x)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)  # float32 under mixed precision: z = μ + σε, KL
        return mu, logvar

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def check_standardizable(self, mode: str) -> None:
        raise ConfigError(
            f"data.standardize={mode!r}: {type(self).__name__}'s likelihood p(x|z) is over images in [0, 1] (its nats "
            "are comparable only there): use data.standardize none"
        )

    def negative_log_likelihood(self, logits: Tensor, x: Tensor) -> Tensor:
        if self.likelihood == "bernoulli":
            return bernoulli_nll(logits, x)
        return gaussian_nll(torch.sigmoid(logits), x, self.observation_std)

    def beta_now(self) -> float:
        if self.kl_warmup_steps == 0 or not self.training:
            return self.beta
        return self.beta * min(1.0, self.global_step / self.kl_warmup_steps)

    @torch.no_grad()
    def negative_elbo(self, x: Tensor) -> Tensor:
        """Per-image −ELBO = −log p(x|z) + KL(q(z|x) ‖ N(0, I)) with one draw z ~ q(z|x), in nats, [B]."""
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.negative_log_likelihood(self.decoder(z), x) + kl_to_standard_normal(mu, logvar)

    @torch.no_grad()
    def iw_nll(self, x: Tensor, samples: int) -> Tensor:
        """Per-image importance-weighted NLL with ``samples`` draws (Burda et al.), in nats, [B]."""
        return -importance_weighted_log_likelihood(self, x, samples)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n images decoded from z ~ N(0, I)."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.device))

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = self.negative_log_likelihood(self.decoder(z), x).mean()
        kl = kl_to_standard_normal(mu, logvar).mean()
        return {"loss": recon + self.beta_now() * kl, "recon": recon, "kl": kl}
