"""Input corruption for denoising (Vincent et al. 2008/2010): pure tensor functions, no Lightning.

Each function takes clean images in [0, 1] and returns corrupted images of the same shape in [0, 1]. They
draw from ``generator`` when one is given (deterministic evaluation noise) and from the tensor's device RNG
otherwise (fresh training noise every step), so they run wherever the batch lives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ae_lightning.errors import ConfigError


def gaussian(x: Tensor, noise_std: float, generator: torch.Generator | None = None) -> Tensor:
    """x̃ = clamp(x + ε, 0, 1), ε ~ N(0, σ²)."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise_std * noise).clamp_(0.0, 1.0)


def masking(x: Tensor, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero a fraction ν of the pixels, each independently (masking noise)."""
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= fraction
    return x * keep


def salt_pepper(x: Tensor, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Set a fraction ν of the pixels to 0 or 1, each with probability 1/2."""
    hit = torch.rand(x.shape, generator=generator, device=x.device) < fraction
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


CORRUPTIONS: dict[str, Callable[..., Tensor]] = {
    "gaussian": gaussian,
    "masking": masking,
    "salt_pepper": salt_pepper,
}


@dataclass(frozen=True)
class Noise:
    """Corruption of the input. ``kind`` and what ``level`` means for it:

    - ``gaussian``: x̃ = clip(x + ε, 0, 1), ε ~ N(0, σ²); ``level`` is σ (≥ 0, in pixel units of [0, 1] images).
    - ``masking``: each pixel set to 0 with probability ν; ``level`` is ν in [0, 1].
    - ``salt_pepper``: each pixel set to 0 or 1 (equally likely) with probability ν; ``level`` is ν in [0, 1].
    """

    kind: str  # gaussian | masking | salt_pepper (checked in __post_init__, one clear message)
    level: float

    def __post_init__(self) -> None:
        if self.kind not in CORRUPTIONS:
            raise ConfigError(f"noise.kind={self.kind!r} is not a known corruption; allowed: {sorted(CORRUPTIONS)}")
        if self.kind == "gaussian" and not self.level >= 0:
            raise ConfigError(f"noise.level={self.level} is a Gaussian std σ and must be >= 0")
        if self.kind != "gaussian" and not 0.0 <= self.level <= 1.0:
            raise ConfigError(f"noise.level={self.level} is the {self.kind} fraction ν and must be in [0, 1]")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return CORRUPTIONS[self.kind](x, self.level, generator=generator)


# --- binarisation (the VAE likelihood papers' protocols) --------------------------------------------------------
BINARIZE_MODES = ("none", "static", "threshold", "dynamic")


def sample_binary(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each pixel 1 with probability x (x in [0, 1]), else 0: Larochelle & Murray's stochastic binarisation."""
    return torch.bernoulli(x, generator=generator)


def binarize_images(images: Tensor, mode: str, generator: torch.Generator) -> Tensor:
    """uint8 images binarised once, as uint8 0/255: ``static`` (and ``dynamic``'s fixed evaluation draw) samples
    pixel ~ Bernoulli(x) from ``generator``; ``threshold`` keeps x > 0.5."""
    x = images.float().div_(255)
    binary = (x > 0.5).float() if mode == "threshold" else sample_binary(x, generator)
    return binary.mul_(255).to(torch.uint8)
