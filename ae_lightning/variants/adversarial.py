"""Adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, non_negative


def real_or_fake(logits: Tensor, real: bool) -> Tensor:
    """−log D (real) or −log(1 − D) (fake) from the discriminator's logits, mean over the batch."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class AdversarialAutoencoder(AutoencoderBase):
    """AAE: a deterministic encoder whose codes a discriminator D learns to tell from prior draws z̃ ~ N(0, I), and
    which learns to fool it while reconstructing:

        discriminator:  L_D = −log D(z̃) − log(1 − D(g(x)))
        autoencoder:    L   = Σ_pixels dist(x, h(g(x))) + λ · (−log D(g(x)))

    The reconstruction term is summed over pixels, on the scale of a likelihood, so λ = 1 weighs the two terms as
    the paper's phases do. λ = ``adversarial_weight``; D an MLP (``discriminator_dims``, leaky ReLU). Lightning's
    manual optimisation with two optimizers, the autoencoder's and the discriminator's, both in checkpoints. D
    learns slower (``discriminator_learning_rate`` 1e-4): measured on small images, a D at the autoencoder's 3e-3
    wins outright (its loss → 0) and the codes end up carrying nothing; at 1e-4 the two stay near equilibrium (D's
    loss ≈ 2 log 2). Each step computes both losses from one batch and updates both players at once (one backward:
    the codes reach D's loss detached, and the fooling term sees D's weights detached, so each player's gradient is
    its own). Lightning counts every optimizer's step in ``global_step``: it advances by 2 a batch. ``sample(n)``
    decodes prior draws.
    """

    def __init__(
        self,
        adversarial_weight: float = 1.0,
        discriminator_dims: tuple[int, ...] = (256, 256),
        discriminator_learning_rate: float = 1e-4,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not discriminator_dims or any(d < 1 for d in discriminator_dims):
            raise ConfigError(f"model.discriminator_dims={list(discriminator_dims)} must be widths >= 1")
        if not discriminator_learning_rate > 0:
            raise ConfigError(f"model.discriminator_learning_rate={discriminator_learning_rate} must be > 0")
        self.automatic_optimization = False
        self.adversarial_weight = non_negative("adversarial_weight", adversarial_weight)
        self.encoder, self.decoder = self.make_networks()
        layers, width = [], self.latent_dim
        for hidden in discriminator_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 1))

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        z = self.encode(x)
        prior = torch.randn_like(z)
        real, fake = self.discriminator(prior), self.discriminator(z.detach())
        discriminator = real_or_fake(real, True) + real_or_fake(fake, False)
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        fool = real_or_fake(functional_call(self.discriminator, frozen, (z,)), True)
        recon = self.distance(self.decoder(z), x) * x[0].numel()  # per image, summed over pixels
        loss = recon + self.adversarial_weight * fool
        trainer = self.attached_trainer
        if self.training and trainer is not None and trainer.training:  # validation and tests reuse the terms only
            autoencoder_optimizer, discriminator_optimizer = self.optimizers()
            autoencoder_optimizer.zero_grad()
            discriminator_optimizer.zero_grad()
            self.manual_backward(loss + discriminator)
            autoencoder_optimizer.step()
            discriminator_optimizer.step()
            for scheduler in self.lr_schedulers() or []:  # manual optimisation steps its schedules itself
                scheduler.step()
        return {"loss": loss, "recon": recon, "adversarial": fool, "discriminator": discriminator}

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n images decoded from z ~ N(0, I)."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.device))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        autoencoder = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        return self.with_schedule(
            torch.optim.AdamW(autoencoder, lr=hp.learning_rate, weight_decay=hp.weight_decay),
            torch.optim.AdamW(self.discriminator.parameters(), lr=hp.discriminator_learning_rate, weight_decay=0),
        )
