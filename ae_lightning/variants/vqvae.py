"""Vector-quantised autoencoder, VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, non_negative


class VectorQuantizedAutoencoder(AutoencoderBase):
    """VQ-VAE: the code z_e = g(x) is cut into ``latent_dim / embedding_dim`` pieces, each replaced by its nearest
    of K codebook vectors e (``codebook_size``), and decoded with the straight-through estimator:

        z_q = e_{k*},  k* = argmin_k ‖z_e − e_k‖,   x̂ = h(z_e + sg[z_q − z_e])
        L = dist(x, x̂) + ‖sg[z_e] − z_q‖² + β ‖z_e − sg[z_q]‖²

    (sg = stop gradient, β = ``commitment_weight``). With ``ema_decay`` the codebook follows exponential moving
    averages of the pieces assigned to each code instead (the paper's appendix; the codebook term is then dropped).
    A code no piece has chosen for ``dead_code_steps`` steps is restarted at a random piece of the current batch.
    ``encode`` returns z_q; the codes in use are ``code_indices(x)``. No prior is learned over the codes, so the
    model does not sample.
    """

    def __init__(
        self,
        codebook_size: int = 128,
        embedding_dim: int = 4,
        commitment_weight: float = 0.25,
        ema_decay: float | None = None,
        dead_code_steps: int = 100,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if codebook_size < 2:
            raise ConfigError(f"model.codebook_size={codebook_size} must be >= 2")
        if embedding_dim < 1 or self.latent_dim % embedding_dim:
            raise ConfigError(
                f"model.embedding_dim={embedding_dim} must divide model.latent_dim={self.latent_dim} (each code is "
                "cut into latent_dim / embedding_dim pieces)"
            )
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ConfigError(f"model.ema_decay={ema_decay} must lie in (0, 1), or be null (codebook by gradient)")
        if dead_code_steps < 0:
            raise ConfigError(f"model.dead_code_steps={dead_code_steps} must be >= 0 (0: never restart)")
        self.commitment_weight = non_negative("commitment_weight", commitment_weight)
        self.embedding_dim, self.ema_decay, self.dead_code_steps = embedding_dim, ema_decay, dead_code_steps
        self.encoder, self.decoder = self.make_networks()
        codebook = torch.randn(codebook_size, embedding_dim) / embedding_dim**0.5
        if ema_decay is None:
            self.codebook = torch.nn.Parameter(codebook)
        else:  # moved by moving averages, not by the optimizer
            self.register_buffer("codebook", codebook)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))

    def pieces(self, z: Tensor) -> Tensor:
        return z.float().reshape(-1, self.embedding_dim)

    def nearest(self, pieces: Tensor) -> Tensor:
        """Index of the nearest codebook vector of each piece."""
        return torch.cdist(pieces, self.codebook.float()).argmin(1)

    def code_indices(self, x: Tensor) -> Tensor:
        """The codebook index of every piece of every image's code, [N, latent_dim / embedding_dim]."""
        return self.nearest(self.pieces(self.encoder(x))).view(len(x), -1)

    def encode(self, x: Tensor) -> Tensor:
        z_e = self.encoder(x)
        return self.codebook[self.nearest(self.pieces(z_e))].view_as(z_e).to(z_e.dtype)

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        z_e = self.encoder(x)
        pieces = self.pieces(z_e)
        indices = self.nearest(pieces)
        z_q = self.codebook[indices].float()
        recon = self.distance(self.decoder((pieces + (z_q - pieces).detach()).view_as(z_e)), x)
        codebook = F.mse_loss(z_q, pieces.detach()) if self.ema_decay is None else torch.zeros((), device=x.device)
        commitment = F.mse_loss(pieces, z_q.detach())
        if self.training:
            self.update_codebook(pieces.detach(), indices)
        return {
            "loss": recon + codebook + self.commitment_weight * commitment,
            "recon": recon,
            "codebook": codebook,
            "commitment": commitment,
        }

    @torch.no_grad()
    def update_codebook(self, pieces: Tensor, indices: Tensor) -> None:
        """EMA updates (with ``ema_decay``) and restarts of codes unused for ``dead_code_steps`` steps. Under DDP the
        counts and sums are summed over the ranks and restarts come from rank 0's batch, so every replica keeps the
        same codebook."""
        distributed = dist.is_available() and dist.is_initialized()
        counts = torch.bincount(indices, minlength=len(self.codebook)).float()
        if distributed:
            dist.all_reduce(counts)
        if self.ema_decay is not None:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, pieces)
            if distributed:
                dist.all_reduce(sums)
            self.ema_count.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
            self.ema_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
            total = self.ema_count.sum()  # Laplace smoothing keeps rarely used codes finite
            smoothed = (self.ema_count + 1e-5) / (total + len(self.codebook) * 1e-5) * total
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        if not self.dead_code_steps:
            return
        # Masks, not indices of the dead codes: no host sync in the training step (a candidate is drawn for every
        # code and kept only where the code is dead).
        dead = (self.steps_unused >= self.dead_code_steps)[:, None]
        chosen = pieces[torch.randint(len(pieces), (len(self.codebook),), device=pieces.device)]
        if distributed:
            dist.broadcast(chosen, src=0)
        self.codebook.data.copy_(torch.where(dead, chosen.to(self.codebook.dtype), self.codebook.data))
        if self.ema_decay is not None:
            self.ema_sum.copy_(torch.where(dead, chosen, self.ema_sum))
            self.ema_count.masked_fill_(dead[:, 0], 1.0)
        self.steps_unused.masked_fill_(dead[:, 0], 0)
