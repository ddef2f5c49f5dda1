"""Latent-space views: the most active units, traversals, interpolations and the PNGs of a run."""

from __future__ import annotations

import torch
from PIL import Image

from ae_lightning import Autoencoder, VariationalAutoencoder
from ae_lightning.evaluation.views import interpolations, most_active_units, traversal, write_latent_views


def test_most_active_units_rank_by_variance_of_the_posterior_mean():
    means = torch.zeros(100, 5)
    means[:, 3] = torch.linspace(-2, 2, 100)  # the most active
    means[:, 1] = torch.linspace(-1, 1, 100)
    means[:, 4] = 0.01 * torch.randn(100)
    assert most_active_units(means, 2).tolist() == [3, 1]


def test_traversal_sweeps_one_unit_per_row_and_interpolation_ends_at_the_images():
    torch.manual_seed(0)
    vae = VariationalAutoencoder(latent_dim=4, hidden_dims=[32]).eval()
    images = torch.rand(50, 1, 28, 28)
    grid = traversal(vae, images, units=3, steps=5)
    assert grid.shape == (15, 1, 28, 28)
    rows = grid.view(3, 5, -1)
    assert all(not torch.allclose(rows[r, 0], rows[r, -1]) for r in range(3))  # each row moves along its unit
    assert torch.allclose(rows[0, 2], rows[1, 2], atol=1e-6)  # the middle column is the mean code in every row
    strip = interpolations(vae, images[:2], images[2:4], steps=6).view(2, 6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(strip[:, 0], vae(images[:2]), atol=1e-6)
        assert torch.allclose(strip[:, -1], vae(images[2:4]), atol=1e-6)


def test_a_run_directory_gets_its_pngs(tmp_path):
    images, labels = (torch.rand(40, 1, 28, 28) * 255).to(torch.uint8), torch.randint(0, 3, (40,))
    (tmp_path / "vae").mkdir()
    (tmp_path / "ae").mkdir()
    vae = write_latent_views(VariationalAutoencoder(latent_dim=4), images, labels, tmp_path / "vae")
    ae = write_latent_views(Autoencoder(latent_dim=4), images, -torch.ones(40, dtype=torch.long), tmp_path / "ae")
    assert set(vae) == {"views/interpolation", "views/latent_traversal", "views/codes_2d"}
    assert set(ae) == {"views/interpolation", "views/codes_2d"}  # no posterior: no traversal
    for path in [*vae.values(), *ae.values()]:
        with Image.open(path) as image:
            assert image.size[0] > 100 and image.size[1] > 30


def test_a_grids_labels_sit_on_their_images():
    """Row r, column c of the mosaic is image r × columns + c, and the tick labelled with their names is at its
    centre (one image per cell, each a grey level of its own)."""
    import matplotlib.pyplot as plt

    from ae_lightning.evaluation.views import grid_figure

    rows, columns = ["a", "b", "c"], ["t0", "t1", "t2", "t3"]
    levels = torch.linspace(0.1, 0.9, 12)
    images = levels.view(12, 1, 1, 1).expand(12, 1, 7, 5).clone()  # not square: rows and columns cannot swap
    figure = grid_figure(images, columns, rows, "levels")
    axis = figure.axes[0]
    mosaic = axis.images[0].get_array()
    assert [t.get_text() for t in axis.get_xticklabels()] == columns
    assert [t.get_text() for t in axis.get_yticklabels()] == rows
    for r, y in enumerate(axis.get_yticks()):
        for c, x in enumerate(axis.get_xticks()):
            pixel = mosaic[int(round(y)), int(round(x))]
            assert abs(float(pixel[0]) - float(levels[r * len(columns) + c])) < 1e-6, (r, c)
    plt.close(figure)
