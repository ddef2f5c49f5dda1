"""The recipes that make a member strong, each an option that can be compared: input standardisation, normalised
and residual conv nets and the one-class LeNet, top-k codes with AuxK, and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from ae_lightning import VARIANTS, Autoencoder, ImageDataModule, SparseAutoencoder, VariationalAutoencoder, load
from ae_lightning.data.batch import Batch
from ae_lightning.data.standardize import Standardize, image_statistics
from ae_lightning.errors import ConfigError
from ae_lightning.nets.conv import ResidualBlock
from ae_lightning.variants.base import warmup_cosine
from ae_lightning.variants.sparse import top_k_of_dead

from conftest import quiet_trainer


def data(data_root, **kwargs) -> ImageDataModule:
    return ImageDataModule(
        **{"name": "mnist", "root": str(data_root), "download": False, "val_size": 100, "batch_size": 50, **kwargs}
    )


# --- standardisation -------------------------------------------------------------------------------------------
def test_image_statistics_per_pixel_and_per_channel():
    torch.manual_seed(0)
    images = (torch.rand(40, 3, 5, 6) * 255).to(torch.uint8)
    x = images.double() / 255
    mean, scale = image_statistics(images, "pixel", floor=0.01, chunk=7)
    assert mean.shape == scale.shape == (3, 5, 6)
    assert torch.allclose(mean.double(), x.mean(0), atol=1e-6)
    assert torch.allclose(scale.double(), x.std(0) + 0.01, atol=1e-6)  # the sample spread plus the floor
    mean, scale = image_statistics(images, "channel", floor=0.01)
    per_channel = x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(mean[:, 0, 0].double(), per_channel.mean(1), atol=1e-6)
    assert torch.allclose(scale[:, 2, 3].double(), per_channel.std(1) + 0.01, atol=1e-6)
    assert (mean == mean[:, :1, :1]).all()  # one value per channel, broadcast over the pixels


def test_standardisation_statistics_come_from_the_normal_training_images_only(data_root):
    dm = data(data_root, standardize="pixel", normal_classes=[3])
    dm.setup()
    train = dm.splits["train"]
    assert set(train.labels.tolist()) == {3}
    expected = image_statistics(train.images, "pixel", 0.01)
    assert all(torch.equal(a, b) for a, b in zip(dm.input_statistics, expected))
    everything = data(data_root, standardize="pixel")
    everything.setup()
    assert not torch.allclose(everything.input_statistics[0], dm.input_statistics[0])  # not the other classes'
    assert data(data_root).input_statistics is None  # standardize: none (the default) computes nothing


def test_a_standardised_model_trains_in_that_space_and_carries_it_to_load_and_score(data_root, tmp_path):
    pl.seed_everything(0)
    dm = data(data_root, standardize="pixel", standardize_floor=0.05)
    model = Autoencoder(input_shape=dm.image_shape, latent_dim=8, hidden_dims=[64])
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    mean, scale = dm.input_statistics
    assert model.standardizer.active
    assert torch.equal(model.standardizer.mean, mean) and torch.equal(model.standardizer.scale, scale)
    x = dm.splits["test"].images[:20].float() / 255
    model.eval()
    with torch.no_grad():
        outputs = model.decoder(model.encode(x))
        # the encoder reads (x − mean)/scale; the loss is the MSE of the raw outputs against the standardised x
        assert torch.allclose(nn.Sequential(*list(model.encoder)[1:])((x - mean) / scale), model.encode(x))
        loss = model.training_step(Batch(x, x, torch.zeros(20, dtype=torch.long)))["recon"]
        assert loss.item() == pytest.approx(((outputs - (x - mean) / scale) ** 2).mean().item(), rel=1e-5)
        # figures and image metrics get images: output·scale + mean, in [0, 1]
        assert torch.allclose(model(x), (outputs * scale + mean).clamp(0, 1), atol=1e-6)
    # load(): the same transform from the checkpoint, with no data at hand
    loaded = load(trainer.checkpoint_callback.best_model_path)
    assert loaded.standardizer.active and torch.equal(loaded.standardizer.scale, scale)
    scores = loaded.anomaly_score(dm.splits["test"].images[:20], "reconstruction")
    with torch.no_grad():
        by_hand = ((loaded(x) - x) / scale).pow(2).flatten(1).mean(1)
    assert torch.allclose(scores, by_hand, rtol=1e-5)
    # an unstandardised model's state loaded into a fresh one stays the identity
    plain = Autoencoder(input_shape=dm.image_shape, latent_dim=8, hidden_dims=[64])
    plain.load_state_dict(Autoencoder(input_shape=dm.image_shape, latent_dim=8, hidden_dims=[64]).state_dict())
    assert not plain.standardizer.active


def test_standardisation_bad_values_are_one_message(data_root):
    with pytest.raises(ConfigError, match=r"data.standardize='zscore' is not known; allowed: \['none', 'pixel'"):
        data(data_root, standardize="zscore")
    with pytest.raises(ConfigError, match="data.standardize_floor=0.0 must be a finite number > 0"):
        data(data_root, standardize="pixel", standardize_floor=0.0)
    dm = data(data_root, standardize="pixel")
    with pytest.raises(ConfigError, match="VariationalAutoencoder's likelihood p\\(x\\|z\\) is over images in"):
        quiet_trainer(max_epochs=1).fit(VariationalAutoencoder(input_shape=(1, 28, 28)), datamodule=dm)
    with pytest.raises(ConfigError, match="model.distance='bce'.*does not apply"):
        quiet_trainer(max_epochs=1).fit(Autoencoder(distance="bce"), datamodule=dm)


def test_the_contractive_penalty_sees_the_standardisation():
    # g(x) = σ(W (x − m)/s + b): the closed form, the fused estimate's tangent and the exact Jacobian agree
    from ae_lightning import ContractiveAutoencoder
    from ae_lightning.variants.contractive import encode_with_jvp, jacobian_frobenius_exact

    torch.manual_seed(0)
    model = ContractiveAutoencoder(hidden_dims=[], latent_dim=5, input_shape=(1, 4, 4))
    model.standardizer.set_statistics(torch.rand(1, 4, 4), torch.rand(1, 4, 4) + 0.2)
    x = torch.rand(6, 1, 4, 4)
    _, closed = model.code_and_jacobian_frobenius(x)
    assert torch.allclose(closed, jacobian_frobenius_exact(model.encode, x), rtol=1e-4)
    v = torch.randn_like(x)
    _, tangent = encode_with_jvp(model.encoder, x, v)
    _, expected = torch.func.jvp(model.encoder, (x,), (v,))
    assert torch.allclose(tangent, expected, atol=1e-6)


def test_standardize_is_the_identity_until_set():
    layer = Standardize((1, 2, 2))
    x = torch.rand(3, 1, 2, 2)
    assert layer(x) is x and torch.allclose(layer.to_image(torch.zeros(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="positive scale"):
        layer.set_statistics(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))


# --- networks ----------------------------------------------------------------------------------------------------
NETWORK_CASES = {
    "lenet-28": ((1, 28, 28), {"network": "lenet"}),
    "lenet-32-colour": ((3, 32, 32), {"network": "lenet"}),
    "conv-batch-residual": ((3, 32, 32), {"network": "conv", "normalization": "batch", "residual": True}),
    "conv-group-leaky": ((1, 28, 28), {"network": "conv", "normalization": "group", "activation": "leaky_relu"}),
    "mlp-batch": ((1, 28, 28), {"network": "mlp", "normalization": "batch", "hidden_dims": [64, 32]}),
}


@pytest.mark.parametrize("case", sorted(NETWORK_CASES))
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_builds_and_learns_on_every_network(name, case):
    shape, net = NETWORK_CASES[case]
    torch.manual_seed(0)
    if (
        name == "ContractiveAutoencoder"
        and net.get("normalization", "batch" if net["network"] == "lenet" else "none") == "batch"
    ):
        with pytest.raises(ConfigError, match="not defined through batch normalisation"):
            VARIANTS[name](input_shape=shape, latent_dim=8, **net)
        net = {**net, "normalization": "group" if net["network"] != "mlp" else "none"}
    model = VARIANTS[name](input_shape=shape, latent_dim=8, **net)
    x = torch.rand(8, *shape)
    terms = model.training_step(Batch(x, (x + 0.1 * torch.randn_like(x)).clamp(0, 1), torch.zeros(8).long()))
    assert all(torch.isfinite(v) for v in terms.values()), terms
    (terms["loss"] + terms.get("discriminator", 0)).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    model.eval()
    assert model(x).shape == x.shape and model.encode(x).shape == (8, 8)


def test_lenet_is_ruff_et_al_s_net():
    encoder = Autoencoder(network="lenet", latent_dim=32).encoder
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 8, (5, 5)), (8, 4, (5, 5))]
    assert sum(isinstance(m, nn.MaxPool2d) for m in encoder) == 2
    assert any(isinstance(m, nn.BatchNorm2d) for m in encoder) and any(isinstance(m, nn.LeakyReLU) for m in encoder)
    assert encoder[-1].in_features == 4 * 7 * 7
    colour = Autoencoder(network="lenet", input_shape=(3, 32, 32), latent_dim=128).encoder
    assert [m.out_channels for m in colour.modules() if isinstance(m, nn.Conv2d)] == [32, 64, 128]


def test_normalisation_and_residual_stages_are_there_when_asked():
    plain = Autoencoder(network="conv", input_shape=(3, 32, 32))
    assert not any(isinstance(m, (nn.BatchNorm2d, ResidualBlock)) for m in plain.modules())
    rich = Autoencoder(network="conv", input_shape=(3, 32, 32), normalization="batch", residual=True)
    assert sum(isinstance(m, ResidualBlock) for m in rich.encoder) == 3
    assert sum(isinstance(m, ResidualBlock) for m in rich.decoder) == 2
    assert any(isinstance(m, nn.BatchNorm2d) for m in rich.encoder)
    mlp = Autoencoder(normalization="batch", hidden_dims=[64])
    kinds = [type(m).__name__ for m in mlp.encoder]
    assert kinds[kinds.index("Linear") : kinds.index("Linear") + 3] == ["Linear", "BatchNorm1d", "ReLU"]  # as PyOD


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normalization": "layer"}, r"model.normalization='layer' is not known; allowed: \['none', 'batch'"),
        ({"activation": "tanh"}, r"model.activation='tanh' is not known; allowed: \["),
        ({"normalization": "group"}, "'group' applies to the conv and lenet networks"),
        ({"residual": True}, "model.residual=true applies to the conv network, not 'mlp'"),
        ({"lr_schedule": "step"}, r"model.lr_schedule='step' is not known; allowed: \['constant', 'cosine'\]"),
        ({"warmup_steps": 10}, "used by lr_schedule 'cosine' only"),
    ],
)
def test_bad_network_and_schedule_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Autoencoder(**kwargs)


# --- AuxK ----------------------------------------------------------------------------------------------------------
def test_top_k_of_dead_keeps_the_largest_dead_pre_activations():
    pre = torch.tensor([[5.0, -1.0, 3.0, 2.0, 0.5], [0.1, 4.0, -2.0, -3.0, 1.0]])
    dead = torch.tensor([False, True, True, False, True])
    expected = torch.tensor([[0.0, 0.0, 3.0, 0.0, 0.5], [0.0, 4.0, 0.0, 0.0, 1.0]])
    assert torch.equal(top_k_of_dead(pre, dead, 2), expected)
    assert torch.equal(top_k_of_dead(pre, dead, 9), pre * dead)  # no more than are dead


def test_a_unit_is_dead_after_dead_after_samples_images_without_firing():
    model = SparseAutoencoder(penalty="topk", latent_dim=4, k=1, dead_after_samples=10, hidden_dims=[8])
    z = torch.tensor([[2.0, 0, 0, 0]] * 4)  # only unit 0 fires
    assert model.dead_units(z).tolist() == [False] * 4  # 4 images
    assert model.dead_units(z).tolist() == [False] * 4  # 8
    assert model.dead_units(z).tolist() == [False, True, True, True]  # 12 >= 10
    assert model.dead_units(torch.tensor([[0.0, 0, 3.0, 0]])).tolist() == [False, True, False, True]  # unit 2 fires


def test_auxk_sends_gradient_to_dead_units_and_only_while_training(data_root):
    torch.manual_seed(0)
    model = SparseAutoencoder(penalty="topk", latent_dim=8, k=2, hidden_dims=[32], dead_after_samples=1)
    linear = model.encoder[-1]
    with torch.no_grad():
        linear.bias[4:] = -100.0  # units 4..7 never make the top 2: dead after one batch
    dm = data(data_root)
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, datamodule=dm)  # attaches a trainer; the step marks units 4..7 dead
    assert model.samples_since_active[4:].min() >= 1 and (model.samples_since_active[:4] == 0).any()
    x = torch.rand(16, 1, 28, 28)
    batch = Batch(x, x, torch.zeros(16, dtype=torch.long))
    model.train()
    trainer.state.stage = "train"
    terms = model.training_step(batch)
    assert terms["dead_latents"] >= 4 and terms["auxk"] > 0
    terms["loss"].backward()
    assert linear.weight.grad[4:].abs().sum() > 0  # the dead units learn
    linear.weight.grad = None
    off = SparseAutoencoder(penalty="topk", latent_dim=8, k=2, hidden_dims=[32], k_aux=0)
    off.load_state_dict(model.state_dict())
    off.training_step(batch)["loss"].backward()
    assert off.encoder[-1].weight.grad[4:].abs().sum() == 0  # without AuxK nothing reaches them
    model.eval()
    assert set(model.training_step(batch)) == {"loss", "recon"}  # validation: the reconstruction only


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"penalty": "topk", "k_aux": 99}, r"model.k_aux=99 must be in \[0, latent_dim=32\]"),
        ({"penalty": "topk", "dead_after_samples": 0}, "model.dead_after_samples=0 must be >= 1"),
        ({"penalty": "l1", "k_aux": 4}, "model.k_aux=4 is not used with penalty 'l1'"),
        ({"penalty": "topk", "aux_weight": -1.0}, "model.aux_weight=-1.0 must be"),
    ],
)
def test_auxk_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SparseAutoencoder(**kwargs)


# --- learning-rate schedule ------------------------------------------------------------------------------------------
def test_warmup_cosine_factors():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=4, total_steps=14)
    factors = [schedule.lr_lambdas[0](step) for step in range(15)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.5) and factors[14] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


def test_the_cosine_schedule_runs_through_training_and_refuses_an_endless_one(data_root):
    pl.seed_everything(0)
    model = Autoencoder(hidden_dims=[32], latent_dim=4, learning_rate=1e-2, lr_schedule="cosine", warmup_steps=3)
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    quiet_trainer(max_steps=12, callbacks=[Spy()]).fit(model, datamodule=data(data_root))
    expected = [
        1e-2 * warmup_cosine(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 3, 12).lr_lambdas[0](s)
        for s in range(12)
    ]
    assert seen == pytest.approx(expected)
    with pytest.raises(ConfigError, match="set trainer.max_epochs or max_steps"):
        quiet_trainer(max_epochs=-1, max_time={"seconds": 5}).fit(
            Autoencoder(lr_schedule="cosine"), datamodule=data(data_root)
        )
    with pytest.raises(ConfigError, match="model.warmup_steps=50 must be fewer than the 5 optimizer steps"):
        quiet_trainer(max_steps=5).fit(Autoencoder(lr_schedule="cosine", warmup_steps=50), datamodule=data(data_root))
    assert math.isfinite(seen[-1])
