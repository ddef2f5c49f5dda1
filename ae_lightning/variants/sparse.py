"""Sparse autoencoders: L1 on the code, KL to a target activation ρ (Ng, CS294A), k-sparse (Makhzani & Frey 2013)
with AuxK against dead latents (Gao et al. 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, non_negative


def l1_penalty(z: Tensor) -> Tensor:
    """mean over the batch of ‖z‖₁."""
    return z.abs().sum(dim=1).mean()


def kl_sparsity(z: Tensor, rho: float) -> Tensor:
    """Σⱼ KL(ρ ‖ ρ̂ⱼ) with ρ̂ⱼ the batch-mean activation of sigmoid code unit j.

    In float32 whatever z is: in half precision 1 − 1e-6 rounds to 1, and a saturated unit would give log 0."""
    rho_hat = z.float().mean(dim=0).clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def keep_top_k(z: Tensor, k: int) -> Tensor:
    """Zero all but the k largest units of each code (the k-sparse support)."""
    threshold = z.topk(k, dim=1).values[:, -1:]
    return z * (z >= threshold)


def top_k_of_dead(pre: Tensor, dead: Tensor, k_aux: int) -> Tensor:
    """Each code's ``k_aux`` largest pre-activations among the ``dead`` units (bool [latent]), zeros elsewhere —
    AuxK's z_aux (fewer where fewer units are dead)."""
    count = min(k_aux, int(dead.sum()))
    candidates = pre.masked_fill(~dead, float("-inf"))
    values, index = candidates.topk(count, dim=1)
    return torch.zeros_like(pre).scatter(1, index, values)


class SparseAutoencoder(AutoencoderBase):
    """Sparse autoencoder, ``penalty`` one of:

    - ``l1``:   z = g(x),            L = dist(h(z), x) + λ·mean‖z‖₁
    - ``kl``:   z = σ(g(x)),         L = dist(h(z), x) + β·Σⱼ KL(ρ ‖ ρ̂ⱼ),  ρ̂ⱼ = mean over the batch of zⱼ
    - ``topk``: z = top_k(g(x)),     L = dist(h(z), x) + α·dist(h(sg[z] + z_aux), x)
      (sparsity is structural: only k units are non-zero). The second term is AuxK (Gao et al. 2024, "Scaling and
      evaluating sparse autoencoders"): a unit is dead when it was in no code's top k for ``dead_after_samples``
      training images; z_aux keeps the ``k_aux`` largest pre-activations of the dead units, which must then
      reconstruct what the live code leaves (the residual: with Gao's linear decoder, ‖e − W z_aux‖² with
      e = x − x̂ detached is exactly this term; here the decoder is not linear, so the dead units are added to the
      detached code). α = ``aux_weight``, 1/4 by default: Gao's 1/32 (set for a linear decoder on language-model
      activations) left 6–11 of 64 units dead on Fashion-MNIST's validation split at three epochs' budget (top-8, lr
      1e-3 and 1e-2), 1/4 left 0–4 in each of six runs (lr 1e-3, 1e-2 × 3 seeds) at a validation MSE within 3 % of
      it. Only while training: validation and test losses are the
      reconstruction. ``k_aux=0`` turns it off. ``train/dead_latents`` counts the dead units.

    λ and β are ``sparsity_weight`` (l1, kl); ρ is ``target_activation`` (kl); k is ``k`` (topk, default
    latent_dim // 4). ``k_schedule_steps`` (topk): Makhzani & Frey (2013)'s scheduling of the sparsity level against
    dead units — training starts with every unit kept and k falls linearly to ``k`` over these steps (0: ``k`` from
    the start). An option the chosen penalty does not use, set to anything but its default, is refused rather than
    silently dropped.
    """

    def __init__(
        self,
        penalty: str = "l1",
        sparsity_weight: float = 1e-3,
        target_activation: float = 0.05,
        k: int | None = None,
        k_schedule_steps: int = 0,
        k_aux: int | None = None,
        aux_weight: float = 0.25,
        dead_after_samples: int = 1_000,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if penalty not in ("l1", "kl", "topk"):
            raise ConfigError(f"model.penalty={penalty!r} is not a sparsity penalty; allowed: ['kl', 'l1', 'topk']")
        ignored = {  # option: (its value, set but unused by this penalty?, the penalties that use it)
            "sparsity_weight": (sparsity_weight, penalty == "topk" and sparsity_weight != 1e-3, "l1 or kl"),
            "target_activation": (target_activation, penalty != "kl" and target_activation != 0.05, "kl"),
            "k": (k, penalty != "topk" and k is not None, "topk"),
            "k_schedule_steps": (k_schedule_steps, penalty != "topk" and k_schedule_steps != 0, "topk"),
            "k_aux": (k_aux, penalty != "topk" and k_aux is not None, "topk"),
            "aux_weight": (aux_weight, penalty != "topk" and aux_weight != 0.25, "topk"),
            "dead_after_samples": (dead_after_samples, penalty != "topk" and dead_after_samples != 1_000, "topk"),
        }
        for name, (value, unused, used_by) in ignored.items():
            if unused:
                raise ConfigError(
                    f"model.{name}={value} is not used with penalty {penalty!r}; remove it, or choose penalty {used_by}"
                )
        if not 0.0 < target_activation < 1.0:
            raise ConfigError(f"model.target_activation={target_activation} is ρ and must be in (0, 1)")
        self.k = k if k is not None else max(1, self.latent_dim // 4)
        if not 1 <= self.k <= self.latent_dim:
            raise ConfigError(f"model.k={k} must be in [1, latent_dim={self.latent_dim}]")
        if k_schedule_steps < 0:
            raise ConfigError(f"model.k_schedule_steps={k_schedule_steps} must be >= 0 (0: no schedule)")
        self.k_schedule_steps = k_schedule_steps
        self.k_aux = max(1, self.latent_dim // 2) if k_aux is None else k_aux  # Gao: about half the code
        if not 0 <= self.k_aux <= self.latent_dim:
            raise ConfigError(f"model.k_aux={k_aux} must be in [0, latent_dim={self.latent_dim}] (0: no AuxK)")
        if dead_after_samples < 1:
            raise ConfigError(f"model.dead_after_samples={dead_after_samples} must be >= 1")
        self.aux_weight = non_negative("aux_weight", aux_weight)
        self.dead_after_samples = dead_after_samples
        # training images since each unit was last in a top-k support (in checkpoints: a resumed run knows its dead)
        self.register_buffer("samples_since_active", torch.zeros(self.latent_dim, dtype=torch.long))
        self.penalty = penalty
        self.sigmoid_codes = penalty == "kl"
        self.sparsity_weight = non_negative("sparsity_weight", sparsity_weight)
        self.target_activation = target_activation
        self.encoder, self.decoder = self.make_networks()

    def encode(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        if self.penalty == "kl":
            return torch.sigmoid(z)
        if self.penalty == "topk":
            return keep_top_k(z, self.k)
        return z

    def scheduled_k(self) -> int:
        """k at this training step: from latent_dim down to ``k`` over ``k_schedule_steps`` steps, then ``k``; always
        ``k`` outside training (validation, test: the model as it will be used, so checkpoints compare alike)."""
        step = self.global_step if self.attached_trainer is not None else self.k_schedule_steps
        if not self.training or step >= self.k_schedule_steps:
            return self.k
        return round(self.latent_dim - (self.latent_dim - self.k) * step / self.k_schedule_steps)

    def dead_units(self, z: Tensor) -> Tensor:
        """Bool [latent]: the units dead after this training batch (none in a top-k support for
        ``dead_after_samples`` images). Under DDP every rank counts every rank's batch, so all agree."""
        fired, images = (z != 0).any(dim=0).float(), len(z)
        trainer = self.attached_trainer
        if trainer is not None and trainer.world_size > 1:
            fired = trainer.strategy.reduce(fired, reduce_op="sum")
            images *= trainer.world_size
        self.samples_since_active.add_(images).masked_fill_(fired > 0, 0)
        return self.samples_since_active >= self.dead_after_samples

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        if self.penalty == "topk":
            pre = self.encoder(x)
            z = keep_top_k(pre, self.scheduled_k())
            recon = self.distance(self.decoder(z), x)
            trainer = self.attached_trainer
            if not (self.k_aux and self.training and trainer is not None and trainer.training):
                return {"loss": recon, "recon": recon}
            dead = self.dead_units(z.detach())
            auxk = recon.new_zeros(())
            if dead.any():
                z_aux = top_k_of_dead(pre, dead, self.k_aux)
                auxk = self.aux_weight * self.distance(self.decoder(z.detach() + z_aux), x)
            return {"loss": recon + auxk, "recon": recon, "auxk": auxk, "dead_latents": dead.sum().float()}
        z = self.encode(x)
        recon = self.distance(self.decoder(z), x)
        if self.penalty == "l1":
            sparsity = self.sparsity_weight * l1_penalty(z)
        else:
            sparsity = self.sparsity_weight * kl_sparsity(z, self.target_activation)
        return {"loss": recon + sparsity, "recon": recon, "sparsity": sparsity}
