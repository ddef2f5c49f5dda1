"""Input standardisation: ``data.standardize: none | pixel | channel``.

``pixel`` standardises every pixel by the training images' mean and spread at that pixel, as PyOD's detectors do
(``(x − mean) / (std + floor)``); ``channel`` by one mean and spread per colour channel, as torchvision's
``Normalize`` is used. The statistics come from the training split only — in anomaly detection its normal images
only — and travel with the model: :class:`Standardize` is the first layer of every encoder, its buffers are in the
checkpoint, so ``ae_lightning.load()``, ``prepare()``, ``ae-lightning score`` and ``predict`` apply the same
transform without reading the data again.

A standardised model reconstructs in the standardised space: its decoder's output is linear there, the loss and the
reconstruction anomaly score are squared errors there (:meth:`Standardize.error`), and ``decode`` maps back to an
image in [0, 1] (``output * scale + mean``, clipped) for every figure and image-space metric.

``floor`` is added to the spread, so a pixel that never changes in training (MNIST's border) does not divide by
zero: PyOD's floor is 1e-8, which makes one stray pixel in a constant region an enormous error; the default here is
a larger 0.01 (pixel values in [0, 1]), a setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

STANDARDIZE_MODES = ("none", "pixel", "channel")


def image_statistics(images: Tensor, mode: str, floor: float, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """(mean, scale = std + floor) of uint8 or [0, 1] images [N, C, H, W] for ``mode`` ``pixel`` or ``channel``,
    both shaped [C, H, W] (``channel`` broadcast over the pixels). Accumulated in float64, chunk by chunk, so a
    large split is never converted to float at once."""
    if mode not in ("pixel", "channel"):
        raise ValueError(f"mode {mode!r}: statistics are for 'pixel' or 'channel'")
    if len(images) < 2:
        raise ValueError(f"standardisation needs at least 2 training images, got {len(images)}")
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    squares = torch.zeros(images.shape[1:], dtype=torch.float64)
    for part in images.split(chunk):
        values = part.double().div(255) if part.dtype == torch.uint8 else part.double()
        total += values.sum(0)
        squares += values.pow(2).sum(0)
    count = len(images)
    if mode == "channel":
        total, squares = total.sum((1, 2), keepdim=True), squares.sum((1, 2), keepdim=True)
        count *= images.shape[2] * images.shape[3]
    mean = total / count
    variance = (squares / count - mean.pow(2)).clamp_min(0) * count / (count - 1)  # the sample variance
    shape = images.shape[1:]
    return mean.expand(shape).float().clone(), (variance.sqrt() + floor).expand(shape).float().clone()


class Standardize(nn.Module):
    """x → (x − mean) / scale, the identity until statistics are set (``data.standardize: none``).

    The statistics are buffers (in every checkpoint); ``active`` mirrors the ``enabled`` buffer as a plain bool so
    the per-step check costs no device sync.
    """

    def __init__(self, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(tuple(input_shape)))
        self.register_buffer("scale", torch.ones(tuple(input_shape)))
        self.register_buffer("enabled", torch.zeros((), dtype=torch.bool))
        self.active = False

    def set_statistics(self, mean: Tensor, scale: Tensor) -> None:
        if mean.shape != self.mean.shape or scale.shape != self.scale.shape:
            raise ValueError(f"statistics of shape {list(mean.shape)} for images of shape {list(self.mean.shape)}")
        if not (torch.isfinite(scale).all() and (scale > 0).all() and torch.isfinite(mean).all()):
            raise ValueError("standardisation statistics must be finite with a positive scale")
        self.mean.copy_(mean)
        self.scale.copy_(scale)
        self.enabled.fill_(True)
        self.active = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.active = bool(self.enabled)  # the checkpoint's setting, read once at load

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        return (x - self.mean) / self.scale

    def to_image(self, output: Tensor) -> Tensor:
        """The decoder's output as an image in [0, 1]: σ(logits) unstandardised; output·scale + mean, clipped,
        standardised."""
        if not self.active:
            return torch.sigmoid(output)
        return (output * self.scale + self.mean).clamp(0, 1)

    def error(self, images: Tensor, x: Tensor) -> Tensor:
        """Per-pixel squared error of reconstructed ``images`` (in [0, 1]) against x, in the standardised space —
        ((x̂ − x) / scale)² — or in image space where nothing is standardised."""
        difference = images.float() - x.float()
        if self.active:
            difference = difference / self.scale
        return difference.pow(2)

    def extra_repr(self) -> str:
        return "active" if self.active else "identity"
