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
from torchvision.utils import make_grid

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


def codes_figure(codes: Tensor, labels: Tensor, title: str, class_names: list[str] | None = None) -> plt.Figure:
    """2-D view of the codes (first two principal components, each with its share of the codes' variance),
    coloured by label and named from the dataset where it has class names (grey without labels)."""
    centred = codes - codes.mean(0)
    _, singular, components = torch.pca_lowrank(centred, q=min(2, codes.shape[1]), center=False)
    projected = (centred @ components).numpy()
    explained = (singular**2 / centred.pow(2).sum().clamp_min(1e-12)).tolist()
    figure, axis = plt.subplots(figsize=(5.6, 5))
    y = projected[:, 1] if projected.shape[1] > 1 else projected[:, 0] * 0
    if (labels >= 0).any():
        for label in labels.unique().tolist():
            chosen = (labels == label).numpy()
            name = class_names[label] if class_names and label < len(class_names) else str(label)
            axis.scatter(projected[chosen, 0], y[chosen], color=f"C{label % 10}", s=4, label=name)
        axis.legend(fontsize=6, loc="best", title="class", markerscale=2)
    else:
        axis.scatter(projected[:, 0], y, c="grey", s=4)
    second = f"PC 2 ({explained[1]:.0%} of the variance)" if len(explained) > 1 else "–"
    axis.set(title=title, xlabel=f"PC 1 ({explained[0]:.0%} of the variance)", ylabel=second)
    figure.tight_layout()
    return figure


def grid_figure(images: Tensor, columns: list[str], rows: list[str], title: str) -> plt.Figure:
    """Decoded images in a labelled grid (rows × columns), large enough to see: one mosaic in one axes, the column
    names above it and the row names beside it (an axes per image took ~0.8 s a figure, in every run)."""
    gap = 2  # white pixels between the images
    count, width = len(rows), len(columns)
    mosaic = make_grid(images.detach().clamp(0, 1).float().cpu(), nrow=width, padding=gap, pad_value=1.0)
    height, breadth = images.shape[-2:]
    figure, axis = plt.subplots(figsize=(0.9 * width + 1.2, 0.9 * count + 0.9))
    axis.imshow(mosaic.permute(1, 2, 0).numpy(), vmin=0, vmax=1)
    axis.set_xticks([gap + c * (breadth + gap) + (breadth - 1) / 2 for c in range(width)], columns, fontsize=7)
    axis.set_yticks([gap + r * (height + gap) + (height - 1) / 2 for r in range(count)], rows, fontsize=7)
    axis.xaxis.tick_top()
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


@torch.no_grad()
def write_latent_views(
    model: AutoencoderBase, images: Tensor, labels: Tensor, out: Path, class_names: list[str] | None = None
) -> dict[str, Path]:
    """The PNGs above for ``model`` from uint8 test ``images``; returns {W&B key: file}."""
    model.eval()
    x = images[:2000].to(model.device).float() / 255
    written = {}
    name = type(model).__name__
    pairs = min(6, len(x) // 2)
    steps = 10
    strip = interpolations(model, x[:pairs], x[pairs : 2 * pairs], steps)
    figure = grid_figure(
        strip,
        [f"t = {t:.2g}" for t in torch.linspace(0, 1, steps).tolist()],
        [f"pair {i + 1}" for i in range(pairs)],
        f"{name}: decodes along z = (1 − t)·g(a) + t·g(b) between test images a (t = 0) and b (t = 1)",
    )
    figure.savefig(out / "interpolation.png", dpi=110)
    plt.close(figure)
    written["views/interpolation"] = out / "interpolation.png"
    if isinstance(model, HasPosterior):
        means = model.posterior(x)[0]
        units = most_active_units(means, min(8, means.shape[1])).tolist()
        figure = grid_figure(
            traversal(model, x),
            [f"{offset:+g}σ" for offset in torch.linspace(-3, 3, 9).tolist()],
            [f"unit {unit}" for unit in units],
            f"{name}: each of the most active units swept over its mean ± 3σ (σ over the test images), "
            "the others at their mean",
        )
        figure.savefig(out / "latent_traversal.png", dpi=110)
        plt.close(figure)
        written["views/latent_traversal"] = out / "latent_traversal.png"
    codes = torch.cat([model.encode(chunk) for chunk in x.split(500)]).float().cpu()
    figure = codes_figure(codes, labels[: len(codes)].cpu(), f"{name}: test codes", class_names)
    figure.savefig(out / "codes_2d.png", dpi=110)
    plt.close(figure)
    written["views/codes_2d"] = out / "codes_2d.png"
    return written
