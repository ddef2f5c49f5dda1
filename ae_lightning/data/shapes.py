"""``shapes``: a procedurally drawn dSprites-like data set with known generative factors (Matthey et al. 2017's
dSprites, redrawn here so nothing is downloaded): white shapes on black, 32 × 32, one image for every combination of

    shape (square, ellipse, triangle) × scale (6) × orientation (8) × x position (8) × y position (8) = 9 216 images.

Drawn on first use (rank 0's ``prepare_data``, or ``setup`` if that was skipped: the drawing is deterministic) and
cached in ``root/shapes/``. A fixed fifth of the combinations, chosen by a seeded permutation, is the test split.
Labels are the shape (3 classes, for the probes); ``factors`` gives all five factors of each image as integers
(for MIG and DCI in the battery).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ae_lightning.files import atomic_path

FOLDER = "shapes"
VERSION = 1  # part of the cache's name: a change in the drawing draws again
FACTORS = ("shape", "scale", "orientation", "x", "y")
SIZES = (3, 6, 8, 8, 8)
IMAGE_SIZE, SUPERSAMPLE = 32, 4


def factor_grid() -> Tensor:
    """Every combination of the factors' levels, [9216, 5], in lexicographic order."""
    return torch.cartesian_prod(*(torch.arange(n) for n in SIZES))


def draw(factors: Tensor) -> Tensor:
    """uint8 images [N, 1, 32, 32] of the shapes these factor levels describe (anti-aliased by supersampling)."""
    size = IMAGE_SIZE * SUPERSAMPLE
    coordinates = (torch.arange(size) + 0.5) / size  # pixel centres in [0, 1]
    y, x = torch.meshgrid(coordinates, coordinates, indexing="ij")
    shape, scale, orientation, pos_x, pos_y = (factors[:, i, None, None].float() for i in range(5))
    radius = 0.09 + 0.03 * scale  # half-size of the shape, as a share of the image
    angle = orientation * (2 * math.pi / SIZES[2])
    centre_x, centre_y = 0.2 + pos_x * (0.6 / (SIZES[3] - 1)), 0.2 + pos_y * (0.6 / (SIZES[4] - 1))
    dx, dy = x - centre_x, y - centre_y
    u = (torch.cos(angle) * dx + torch.sin(angle) * dy) / radius  # the image in the shape's own frame
    v = (-torch.sin(angle) * dx + torch.cos(angle) * dy) / radius
    square = torch.maximum(u.abs(), v.abs()) <= 0.85
    ellipse = u.pow(2) + (v / 0.5).pow(2) <= 1.0
    triangle = (v >= -0.5) & (v <= 1.0 - math.sqrt(3) * u.abs() * 1.0) & (v <= 1.0)
    inside = torch.where(shape == 0, square, torch.where(shape == 1, ellipse, triangle)).float()
    pooled = F.avg_pool2d(inside[:, None], SUPERSAMPLE)
    return (pooled * 255).round().to(torch.uint8)


def load_shapes(root: str | Path, train: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One split: (uint8 images [N, 1, 32, 32], shape labels [N], factors [N, 5]); drawn and cached on first use."""
    cache = Path(root).expanduser() / FOLDER / f"shapes-v{VERSION}.pt"
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
    else:
        factors = factor_grid()
        images = torch.cat([draw(part) for part in factors.split(1024)])
        test = torch.randperm(len(factors), generator=torch.Generator().manual_seed(VERSION))[: len(factors) // 5]
        is_test = torch.zeros(len(factors), dtype=torch.bool)
        is_test[test] = True
        saved = {"images": images, "factors": factors, "is_test": is_test}
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as partial:
            torch.save(saved, partial)
    keep = saved["is_test"] != train
    factors = saved["factors"][keep]
    return saved["images"][keep], factors[:, 0].clone(), factors
