"""Short real fits of every variant on the generated data."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl

from ae_lightning import VARIANTS, DenoisingAutoencoder, ImageDataModule
from ae_lightning.errors import ConfigError

from conftest import quiet_trainer


def datamodule(data_root, **kwargs) -> ImageDataModule:
    return ImageDataModule(
        **{"name": "mnist", "root": str(data_root), "download": False, "val_size": 100, "batch_size": 50, **kwargs}
    )


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_short_fit_lowers_reconstruction_error(data_root, name):
    pl.seed_everything(0)
    noise = {"kind": "gaussian", "level": 0.2} if name == "DenoisingAutoencoder" else None
    dm = datamodule(data_root, noise=noise)
    model = VARIANTS[name](input_shape=dm.image_shape, latent_dim=16, learning_rate=3e-3)
    before = quiet_trainer().validate(model, datamodule=dm, verbose=False)[0]
    fit = quiet_trainer(max_epochs=10)
    fit.fit(model, datamodule=dm)
    assert {"train/loss", "train/recon"} <= set(fit.callback_metrics)
    after = fit.validate(model, datamodule=dm, verbose=False)[0]
    assert after["val/mse"] < 0.5 * before["val/mse"], (before, after)
    assert {"val/loss", "val/mse", "val/recon"} <= set(after)


def test_denoising_without_noise_refuses_to_fit(data_root):
    dm = datamodule(data_root)
    with pytest.raises(ConfigError, match="DenoisingAutoencoder needs corrupted inputs but data.noise is not set"):
        quiet_trainer(max_epochs=1).fit(DenoisingAutoencoder(), datamodule=dm)


def test_input_shape_must_match_data(data_root):
    dm = datamodule(data_root, name="cifar10")
    with pytest.raises(
        ConfigError, match=r"model.input_shape=\[1, 28, 28\] does not match the data: cifar10 images are \[3, 32, 32\]"
    ):
        quiet_trainer(max_epochs=1).fit(VARIANTS["Autoencoder"](input_shape=(1, 28, 28)), datamodule=dm)


def test_test_step_reports_test_mse(data_root):
    dm = datamodule(data_root)
    result = quiet_trainer().test(VARIANTS["VariationalAutoencoder"](), datamodule=dm, verbose=False)[0]
    assert {"test/loss", "test/mse", "test/recon", "test/kl"} <= set(result)
