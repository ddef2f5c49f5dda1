"""The one-class members: Deep SVDD (Ruff et al. 2018) and the memory-augmented autoencoder (Gong et al. 2019),
checked against known answers, trained in one run, and scored through the same ``anomaly_score`` as every variant."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from ae_lightning import DeepSVDD, ImageDataModule, MemoryAutoencoder, load
from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.anomaly import applicable_scores
from ae_lightning.variants.memae import addressing_entropy, memory_weights

from conftest import quiet_trainer


def one_class_data(data_root, normal_classes=(0, 1, 2, 3, 4), **kwargs) -> ImageDataModule:
    # half the generated classes normal: ~250 training images, 5 batches an epoch
    return ImageDataModule(
        name="mnist",
        root=str(data_root),
        download=False,
        val_size=100,
        batch_size=50,
        normal_classes=list(normal_classes),
        **kwargs,
    )


# --- Deep SVDD -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("network", ["lenet", "mlp", "conv"])
def test_deep_svdd_networks_have_no_bias_terms(network):
    model = DeepSVDD(network=network, latent_dim=8)
    for module in model.encoder.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            assert module.bias is None, module
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            assert not module.affine, module  # an affine shift is a bias too
    # with no bias, the zero network maps every image to 0: nothing lets it reach a centre away from 0 for free
    for param in model.encoder.parameters():
        param.data.zero_()
    assert model.encode(torch.rand(4, 1, 28, 28)).abs().max() == 0


def test_deep_svdd_centre_is_the_mean_initial_code_with_small_coordinates_pushed_out():
    torch.manual_seed(0)
    model = DeepSVDD(network="mlp", hidden_dims=[32], latent_dim=6, center_eps=0.1)
    images = (torch.rand(30, 1, 28, 28) * 255).to(torch.uint8)
    model.train()  # the centre is taken in eval mode whatever the mode was, and the mode is given back
    center = model.initial_center(images, batch_size=7)
    assert model.training
    model.eval()
    mean = model.encode(images.float() / 255).mean(0)
    expected = torch.where(mean.abs() < 0.1, torch.where(mean < 0, -0.1, 0.1), mean)
    assert torch.allclose(center, expected, atol=1e-6)
    # a code that is exactly 0 on a coordinate gets +eps there
    with torch.no_grad():
        model.encoder[-1].weight[0].zero_()
    assert model.initial_center(images)[0] == 0.1


def test_deep_svdd_pretrains_then_fixes_the_centre_and_learns_to_pull_codes_in(data_root, tmp_path):
    pl.seed_everything(0)
    dm = one_class_data(data_root)
    # Ruff et al.'s learning rate (1e-4); the MLP here, the LeNet net on real data (benchmarks/REPRODUCTION.md)
    model = DeepSVDD(input_shape=dm.image_shape, network="mlp", latent_dim=8, pretrain_epochs=2, learning_rate=1e-4)
    trainer = pl.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=dm)
    assert bool(model.center_set)
    import csv

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    val = [row for row in rows if row.get("val/loss")]
    # pre-training epochs: val/loss is +inf so no pre-training checkpoint is chosen; then finite SVDD losses
    assert [math.isinf(float(row["val/loss"])) for row in val] == [True] * 2 + [False] * 6
    svdd = [float(row["val/svdd"]) for row in val if row.get("val/svdd")]
    assert svdd[-1] < 0.7 * svdd[0], svdd  # the normal codes move towards c (measured 0.0059 → 0.0026)
    # the best checkpoint is one of Deep SVDD proper, and it carries its centre
    best = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert best["epoch"] >= 2 and bool(best["state_dict"]["center_set"])
    loaded = load(trainer.checkpoint_callback.best_model_path)
    assert torch.equal(loaded.center, best["state_dict"]["center"])
    x = torch.rand(4, 1, 28, 28)  # a model loaded after the phase change trains Deep SVDD, not the pre-training AE
    assert "svdd" in loaded.training_step(Batch(x, x, torch.zeros(4, dtype=torch.long)))
    # the score: ‖φ(x) − c‖², through anomaly_score, and higher for the other classes than for the normal one
    dm.setup()
    test = dm.splits["test"]
    scores = loaded.anomaly_score(test.images, "center_distance")
    manual = (loaded.encode(test.images.float() / 255) - loaded.center).pow(2).sum(1)
    assert torch.allclose(scores, manual, rtol=1e-5)
    assert "center_distance" in applicable_scores(loaded, ("reconstruction", "center_distance"))
    normal = ~dm.test_is_anomaly
    assert scores[normal].mean() < scores[~normal].mean()
    # exported (TorchScript), the centre distance is the same score, flagged above its threshold
    from ae_lightning.export import Scorer, traceable

    threshold = float(scores.median())
    scorer = Scorer(loaded, "center_distance", threshold, None, 5).eval().requires_grad_(False)
    with traceable(loaded):
        traced = torch.jit.trace(scorer, test.images[:2], check_trace=False)
    exported, flags = traced(test.images)
    assert torch.allclose(exported, scores, rtol=1e-5) and torch.equal(flags, scores.double() > threshold)


def test_deep_svdd_resets_the_optimizer_moments_when_the_objective_changes(data_root):
    pl.seed_everything(0)
    dm = one_class_data(data_root)
    model = DeepSVDD(input_shape=dm.image_shape, latent_dim=8, pretrain_epochs=1)
    seen = {}

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 0:
                seen["moments_at_switch"] = len(trainer.optimizers[0].state)

    quiet_trainer(max_epochs=2, callbacks=[Spy()], num_sanity_val_steps=0).fit(model, datamodule=dm)
    assert seen["moments_at_switch"] == 0


def test_deep_svdd_bad_options_and_scores_it_cannot_give():
    with pytest.raises(ConfigError, match=r"model.pretrain_epochs=-1 must be >= 0"):
        DeepSVDD(pretrain_epochs=-1)
    with pytest.raises(ConfigError, match=r"model.center_eps=nan"):
        DeepSVDD(center_eps=float("nan"))
    from ae_lightning import Autoencoder

    with pytest.raises(ConfigError, match="center_distance.*Autoencoder has none"):
        Autoencoder().anomaly_score(torch.rand(2, 1, 28, 28), "center_distance")
    assert "center_distance" not in applicable_scores(Autoencoder(), ("reconstruction", "center_distance"))


# --- MemAE -----------------------------------------------------------------------------------------------------
def test_memory_addressing_weights_sum_to_one_and_follow_the_hard_shrinkage():
    torch.manual_seed(0)
    z, memory = torch.randn(5, 4), torch.randn(7, 4)
    softmax = torch.softmax(z @ memory.t(), dim=1)
    # no shrinkage: the softmax itself
    assert torch.allclose(memory_weights(z, memory, 0.0), softmax)
    threshold = 1 / 7
    weights = memory_weights(z, memory, threshold)
    assert torch.allclose(weights.sum(1), torch.ones(5))
    # by hand: weights at or below λ vanish, the others become w·(w − λ)/|w − λ| = w, then renormalised
    kept = torch.where(softmax > threshold, softmax, torch.zeros_like(softmax))
    assert torch.allclose(weights, kept / kept.sum(1, keepdim=True), atol=1e-6)
    assert ((weights == 0) == (softmax <= threshold)).all()


def test_addressing_entropy_matches_its_formula():
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected = (0.0 + math.log(2) + math.log(3)) / 3
    assert addressing_entropy(weights).item() == pytest.approx(expected, abs=1e-6)


def test_memae_reads_its_code_from_memory_and_every_part_learns():
    torch.manual_seed(0)
    model = MemoryAutoencoder(latent_dim=8, memory_size=20, hidden_dims=[32])
    x = torch.rand(16, 1, 28, 28)
    model.train()
    z_hat, weights = model.address(x)
    assert torch.allclose(z_hat, weights @ model.memory, atol=1e-6)
    terms = model.training_step(Batch(x, x, torch.zeros(16, dtype=torch.long)))
    assert set(terms) == {"loss", "recon", "entropy"}
    terms["loss"].backward()
    assert model.memory.grad.abs().sum() > 0 and model.encoder[-1].weight.grad.abs().sum() > 0


def test_memae_bad_options():
    with pytest.raises(ConfigError, match="model.memory_size=0 must be >= 1"):
        MemoryAutoencoder(memory_size=0)
    with pytest.raises(ConfigError, match=r"model.shrink_threshold=1.5 must be in \[0, 1\)"):
        MemoryAutoencoder(shrink_threshold=1.5)
    with pytest.raises(ConfigError, match="model.entropy_weight=-1"):
        MemoryAutoencoder(entropy_weight=-1)
