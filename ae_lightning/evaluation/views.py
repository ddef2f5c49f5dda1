"""Views of a trained model's latent space, written to its run directory (and to W&B):

- ``interpolation.png`` (every variant): decodes of the straight line between the codes of pairs of test images;
- ``latent_traversal.png`` (models with a posterior, the VAE): the most active units — largest variance over test
  images of E[z|x] — each swept over ±3 of its standard deviation around the mean code, one row per unit;
- ``codes_2d.png`` (every variant): test codes projected on their first two principal components, coloured by label.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor
from torchvision.utils import save_image

from ae_lightning.variants import AutoencoderBase
from ae_lightning.variants.base import HasPosterior


def most_active_units(means: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` units whose posterior mean varies most over the data (Burda's activity)."""
    return means.var(dim=0).argsort(descending=True)[:count]


@torch.no_grad()
def traversal(model: AutoencoderBase, images: Tensor, units: int = 8, steps: int = 9) -> Tensor:
    """[units × steps] decodes: row i sweeps the i-th most active unit over mean ± 3 std, the others at the mean."""
    means = model.posterior(images)[0] if isinstance(model, HasPosterior) else model.encode(images)
    chosen = most_active_units(means, min(units, means.shape[1]))
    centre, spread = means.mean(0), means.std(0)
    offsets = torch.linspace(-3, 3, steps, device=means.device)
    codes = centre.repeat(len(chosen), steps, 1)  # [units, steps, latent]
    for row, unit in enumerate(chosen):
        codes[row, :, unit] = centre[unit] + offsets * spread[unit]
    return model.decode(codes.flatten(0, 1))


@torch.no_grad()
def interpolations(model: AutoencoderBase, starts: Tensor, ends: Tensor, steps: int = 10) -> Tensor:
    """[pairs × steps] decodes along z = (1 − t)·g(a) + t·g(b), t from 0 to 1."""
    a, b = model.encode(starts), model.encode(ends)
    t = torch.linspace(0, 1, steps, device=a.device).view(1, steps, 1)
    codes = (1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)
    return model.decode(codes.flatten(0, 1))


def codes_figure(codes: Tensor, labels: Tensor, title: str) -> plt.Figure:
    """2-D view of the codes (first two principal components), coloured by label (grey without labels)."""
    centred = codes - codes.mean(0)
    _, _, components = torch.pca_lowrank(centred, q=min(2, codes.shape[1]), center=False)
    projected = (centred @ components).numpy()
    figure, axis = plt.subplots(figsize=(5, 5))
    y = projected[:, 1] if projected.shape[1] > 1 else projected[:, 0] * 0
    if (labels >= 0).any():
        scatter = axis.scatter(projected[:, 0], y, c=labels.numpy(), cmap="tab10", s=4)
        axis.legend(*scatter.legend_elements(), fontsize=6, loc="best", title="label")
    else:
        axis.scatter(projected[:, 0], y, c="grey", s=4)
    axis.set(title=title, xlabel="PC 1", ylabel="PC 2")
    figure.tight_layout()
    return figure


@torch.no_grad()
def write_latent_views(model: AutoencoderBase, images: Tensor, labels: Tensor, out: Path) -> dict[str, Path]:
    """The PNGs above for ``model`` from uint8 test ``images``; returns {W&B key: file}."""
    model.eval()
    x = images[:2000].to(model.device).float() / 255
    written = {}
    pairs = min(6, len(x) // 2)
    strip = interpolations(model, x[:pairs], x[pairs : 2 * pairs])
    save_image(strip.clamp(0, 1), out / "interpolation.png", nrow=10, padding=2, pad_value=1.0)
    written["views/interpolation"] = out / "interpolation.png"
    if isinstance(model, HasPosterior):
        grid = traversal(model, x)
        save_image(grid.clamp(0, 1), out / "latent_traversal.png", nrow=9, padding=2, pad_value=1.0)
        written["views/latent_traversal"] = out / "latent_traversal.png"
    codes = torch.cat([model.encode(chunk) for chunk in x.split(500)]).float().cpu()
    figure = codes_figure(codes, labels[: len(codes)].cpu(), f"{type(model).__name__}: test codes")
    figure.savefig(out / "codes_2d.png", dpi=110)
    plt.close(figure)
    written["views/codes_2d"] = out / "codes_2d.png"
    return written
