"""No variant collapses silently: the battery flags degenerate codes (dead units, constant codes, posterior
collapse, top-k codes whose chosen units never change), healthy trained models are not flagged, and the report
marks a collapsed run wherever its variant appears."""

from __future__ import annotations

import json

import pytest
import torch

from ae_lightning import (
    Autoencoder,
    ImageDataModule,
    SparseAutoencoder,
    VariationalAutoencoder,
)
from ae_lightning.evaluation.battery import EvaluationSettings, collapse_reason, dead_units, evaluate

from conftest import quiet_trainer

SETTINGS = EvaluationSettings(probe_train_samples=200, jacobian_samples=20, iw_samples=5, iw_images=20)


def test_dead_units_are_those_never_active_or_constant():
    torch.manual_seed(0)
    codes = torch.randn(500, 6)
    codes[:, 0] = 0.0  # never active
    codes[:, 1] = 3.0  # constant
    codes[:, 2] = 3.0 + 1e-5 * torch.randn(500)  # a spread 1e-5 of the other units'; 1e-3 is the bar
    assert dead_units(codes, sigmoid_codes=False) == (3, 6)
    sigmoid = torch.rand(500, 4)
    sigmoid[:, :3] *= 0.04  # below the 0.05 a sigmoid unit needs to count as active, on every image
    assert dead_units(sigmoid, sigmoid_codes=True) == (3, 4)


def test_dead_units_are_judged_against_the_codes_own_scale():
    torch.manual_seed(0)
    informative = torch.randn(500, 8)
    # an L1 or contractive code shrunk 10⁵-fold while its decoder scales up: every unit still varies and carries
    # the input — not dead (an absolute |z| < 1e-3 called all 8 dead)
    assert dead_units(informative * 1e-5, sigmoid_codes=False) == (0, 8)
    shrunk = informative * 1e-5
    shrunk[:, :5] = 0.0  # five units truly never active, at any scale
    assert dead_units(shrunk, sigmoid_codes=False) == (5, 8)
    # a KL-sparse code with a sparser target ρ = 0.01: healthy units average 0.01 and rarely pass 0.05
    sparse = torch.distributions.Beta(0.5, 49.5).sample((500, 6))
    assert sparse.max() < 0.2 and dead_units(sparse, sigmoid_codes=True, target=0.01) == (0, 6)
    assert dead_units(sparse * 0.01, sigmoid_codes=True, target=0.01) == (6, 6)  # none ever reaches ρ: all dead


def test_the_reason_names_the_collapse_and_its_numbers():
    assert collapse_reason({"code/dead_units": 61.0, "code/units": 64.0}) == (
        "61 of 64 units dead (never active or constant on the test images)"
    )
    assert collapse_reason({"code/dead_units": 31.0, "code/units": 64.0}) is None  # under half: not collapsed
    vae = {"code/dead_units": 15.0, "code/units": 16.0, "test/active_units": 1.0}
    assert collapse_reason(vae).startswith("posterior collapse: 1 of 16 units active")
    # a VAE's unused units are its normal pruning: 5 active of 16 is not collapse
    assert collapse_reason({**vae, "test/active_units": 5.0}) is None


@pytest.fixture(scope="module")
def data(data_root):
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    dm.setup()
    return dm


def judged(model, dm) -> dict[str, float]:
    train, test = dm.splits["train"], dm.splits["test"]
    return evaluate(model, train.images, train.labels, test.images, test.labels, SETTINGS)


def last_linear(encoder: torch.nn.Module) -> torch.nn.Linear:
    return [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)][-1]


@torch.no_grad()
def test_models_built_to_collapse_are_flagged(data):
    all_dead = SparseAutoencoder(penalty="kl", latent_dim=16)
    last_linear(all_dead.encoder).bias.fill_(-20.0)  # every sigmoid unit ~0 on every image
    last_linear(all_dead.encoder).weight.mul_(1e-3)
    constant = Autoencoder(latent_dim=8)
    last_linear(constant.encoder).weight.zero_()  # the code is the bias: the same for every image
    ignored = VariationalAutoencoder(latent_dim=8)
    last_linear(ignored.encoder).weight.zero_()  # q(z|x) the same for every x: no unit active
    fixed_support = SparseAutoencoder(penalty="topk", k=2, latent_dim=16)
    last_linear(fixed_support.encoder).weight[:14].mul_(1e-3)
    last_linear(fixed_support.encoder).bias.copy_(torch.arange(16.0) * 10)  # units 14, 15 win on every image
    for model, expected in (
        (all_dead, "16 of 16 units dead"),
        (constant, "8 of 8 units dead"),
        (ignored, "posterior collapse: 0 of 8 units active"),
        (fixed_support, "14 of 16 units dead"),
    ):
        metrics = judged(model, data)
        assert metrics["code/collapsed"] == 1.0, (type(model).__name__, metrics)
        assert collapse_reason(metrics, SETTINGS).startswith(expected)


def test_healthy_trained_models_are_not_flagged(data):
    for build in (
        lambda: Autoencoder(latent_dim=8),
        lambda: SparseAutoencoder(penalty="kl", latent_dim=16, sparsity_weight=0.01),
        # A Gaussian likelihood: under a Bernoulli one, on these low-contrast generated images, the VAE keeps at
        # most one active unit at any β from 0.001 to 1 (measured), which the battery rightly calls collapse. This
        # one kept 2, 5 and 3 active units of 8 with seeds 0, 1, 2.
        lambda: VariationalAutoencoder(latent_dim=8, beta=0.1, likelihood="gaussian"),
    ):
        torch.manual_seed(1)
        model = build()
        quiet_trainer(max_epochs=10).fit(model, datamodule=data)
        metrics = judged(model, data)
        assert metrics["code/collapsed"] == 0.0, (type(model).__name__, collapse_reason(metrics, SETTINGS))
        assert metrics["code/dead_fraction"] < 0.5


def test_the_report_marks_a_collapsed_variant_everywhere(tmp_path):
    from ae_lightning.evaluation.report import write_report

    records = []
    for variant, mse in (("AE", 0.010), ("SparseAE-KL", 0.030)):
        for seed in (0, 1, 2):
            collapsed = variant == "SparseAE-KL" and seed < 2
            records.append(
                {
                    "variant": variant,
                    "model": "Autoencoder",
                    "seed": seed,
                    "status": "done",
                    "error": None,
                    "trained_on": "cpu",
                    "collapse": "61 of 64 units dead (never active or constant on the test images)"
                    if collapsed
                    else None,
                    "run_dir": str(tmp_path / variant / str(seed)),
                    "metrics": {"test/mse": mse + 0.001 * seed * (1 + len(variant) % 3), "code/collapsed": 1.0},
                }
            )
    suite = {
        "name": "collapse",
        "data": {"name": "mnist"},
        "trainer": {"max_epochs": 1},
        "evaluation": {"noise": {"kind": "gaussian", "level": 0.3}},
        "variants": [{"name": v, "model": "Autoencoder", "data": {}} for v in ("AE", "SparseAE-KL")],
        "wandb": {"mode": "disabled"},
    }
    write_report(tmp_path, suite, records)
    report = (tmp_path / "report.md").read_text()
    brief = report.split("## In brief", 1)[1].split("**", 1)[0]
    assert "SparseAE-KL † collapsed on 2 of 3 runs: 61 of 64 units dead" in brief
    assert "| SparseAE-KL † |" in report and "| AE |" in report
    sentences = report.split("**Reconstruction, denoising, linear probe.**", 1)[1].split("Data: ", 1)[0]
    assert "SparseAE-KL †" in sentences  # named with its mark in the sentences too
    assert json.loads((tmp_path / "comparison.json").read_text())["test/mse"]["best"] == "AE"


def test_effective_dimensions_count_independent_directions():
    from ae_lightning.evaluation.battery import effective_dims

    torch.manual_seed(0)
    signal = torch.randn(2000, 1)
    together = signal * torch.rand(1, 64) + 1e-3 * torch.randn(2000, 64)  # 64 units, one direction
    assert effective_dims(together) < 1.1
    assert effective_dims(torch.randn(2000, 16)) > 14  # independent units: nearly all of them
    assert effective_dims(torch.zeros(100, 4)) == 0.0  # no varying unit: no dimension


def test_the_top_k_schedule_keeps_every_unit_first_and_k_at_evaluation(data):
    seen = []

    class Watched(SparseAutoencoder):
        def on_train_batch_start(self, batch, batch_idx):
            seen.append(self.scheduled_k())

        def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
            seen.append(("val", self.scheduled_k()))

    model = Watched(penalty="topk", k=8, latent_dim=64, k_schedule_steps=4)
    kept = []  # units the decoder receives, per training batch: the schedule really reaches the loss
    model.decoder.register_forward_pre_hook(
        lambda module, inputs: kept.append(int((inputs[0] != 0).sum(1).max())) if model.training else None
    )
    fit = quiet_trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=1, num_sanity_val_steps=0)
    fit.fit(model, datamodule=data)
    train_ks = [k for k in seen if not isinstance(k, tuple)]
    assert train_ks == [64, 50, 36, 22, 8]  # every unit at step 0, linearly down to k at step 4
    assert kept == train_ks
    assert all(k == ("val", 8) for k in seen if isinstance(k, tuple))  # validation: the target k
    assert SparseAutoencoder(penalty="topk", k=8, latent_dim=64).scheduled_k() == 8
