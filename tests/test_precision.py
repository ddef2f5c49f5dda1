"""Mixed precision (bf16-mixed on the CPU) and compiled networks."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from ae_lightning import VARIANTS, ContractiveAutoencoder, ImageDataModule, VariationalAutoencoder
from ae_lightning.data.batch import Batch
from ae_lightning.evaluation.battery import EvaluationSettings, mean_jacobian_frobenius
from ae_lightning.variants.sparse import kl_sparsity

from conftest import quiet_trainer

SETTINGS = {
    "Autoencoder": {},
    "DenoisingAutoencoder": {},
    "SparseAutoencoder": {"penalty": "kl"},
    "DropoutAutoencoder": {},
    "ContractiveAutoencoder": {},
    "VariationalAutoencoder": {},
    "ImportanceWeightedAutoencoder": {},
    "BetaTCVAE": {},
    "WassersteinAutoencoder": {},
    "VectorQuantizedAutoencoder": {},
    "AdversarialAutoencoder": {},
    "DeepSVDD": {"pretrain_epochs": 0},  # the one-class objective from the first step
    "MemoryAutoencoder": {},
}


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_kl_sparsity_of_a_saturated_unit_is_finite_in_half_precision():
    # A unit that fires for every image: ρ̂ = 1. In bf16 the clamp's 1 − 1e-6 rounds to 1 and log(1 − ρ̂) = log 0.
    z = torch.ones(8, 4, dtype=torch.bfloat16)
    with bf16():
        penalty = kl_sparsity(z, 0.05)
    assert torch.isfinite(penalty) and penalty.dtype == torch.float32
    assert penalty.item() == pytest.approx(kl_sparsity(z.float(), 0.05).item())


def test_vae_terms_are_float32_under_autocast():
    torch.manual_seed(0)
    model = VariationalAutoencoder(latent_dim=4, hidden_dims=[32])
    x = torch.rand(6, 1, 28, 28)
    with bf16():
        terms = model.training_step(Batch(x, x, torch.zeros(6, dtype=torch.long)))
    assert {name: value.dtype for name, value in terms.items()} == dict.fromkeys(terms, torch.float32)
    assert all(torch.isfinite(value) for value in terms.values())


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_variant_fits_finite_under_bf16_mixed(name, data_root):
    pl.seed_everything(0)
    noise = {"kind": "gaussian", "level": 0.3} if name == "DenoisingAutoencoder" else None
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50, noise=noise)
    model = VARIANTS[name](input_shape=dm.image_shape, **SETTINGS[name])
    trainer = quiet_trainer(max_epochs=1, precision="bf16-mixed", log_every_n_steps=1)
    trainer.fit(model, datamodule=dm)
    # 10 batches; the adversarial AE's two optimizers each count a step (Lightning's manual optimisation)
    assert trainer.global_step == (20 if name == "AdversarialAutoencoder" else 10)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/mse"} <= set(metrics)
    assert all(torch.isfinite(value) for value in metrics.values()), dict(metrics)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow  # torch.compile's first compile on a fresh machine (10 s from a clean clone, 3.6 s with its cache)
def test_compiled_contractive_trains_and_its_battery_jacobian_matches_the_original(data_root):
    pl.seed_everything(0)
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    compiled = ContractiveAutoencoder(input_shape=dm.image_shape, jacobian="exact", compile_networks=True)
    quiet_trainer(max_steps=3, limit_val_batches=1).fit(compiled, datamodule=dm)
    assert compiled.encoder._compiled_call_impl is not None  # really compiled (torch's Module.compile)
    plain = ContractiveAutoencoder(input_shape=dm.image_shape, jacobian="exact")
    plain.load_state_dict(compiled.state_dict())  # same keys: compiling in place keeps them
    images = dm.splits["test"].images[:20]
    settings = EvaluationSettings(jacobian_samples=20)
    # torch.func over the compiled encoder (the battery's exact Jacobian) gives the uncompiled encoder's value
    assert mean_jacobian_frobenius(compiled, images, settings) == pytest.approx(
        mean_jacobian_frobenius(plain, images, settings), rel=1e-4
    )
