from __future__ import annotations

import pytest
import torch
from torch import nn

from ae_lightning import (
    VARIANTS,
    ContractiveAutoencoder,
    DropoutAutoencoder,
    SparseAutoencoder,
    VariationalAutoencoder,
)
from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.contractive import (
    jacobian_frobenius_closed_form,
    jacobian_frobenius_estimate,
    jacobian_frobenius_exact,
)
from ae_lightning.variants.vae import kl_to_standard_normal


def batch_of(x: torch.Tensor, noisy: torch.Tensor | None = None) -> Batch:
    return Batch(x, x if noisy is None else noisy, torch.zeros(len(x), dtype=torch.long))


def random_batch(shape=(1, 28, 28), n=8, seed=0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=generator)
    return batch_of(x, (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(0, 1))


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_loss_is_finite_and_every_parameter_gets_a_gradient(name, shape):
    torch.manual_seed(0)
    model = VARIANTS[name](input_shape=shape, latent_dim=8)
    terms = model.training_step(random_batch(shape))
    assert "loss" in terms and "recon" in terms
    assert all(torch.isfinite(v) for v in terms.values())
    # the adversarial AE's discriminator learns from a term of its own (its second optimizer)
    (terms["loss"] + terms.get("discriminator", 0)).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    assert any(p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    x = random_batch(shape).clean
    model.eval()
    assert model(x).shape == x.shape and model.encode(x).shape == (8, 8)
    assert model.decode(model.encode(x)).min() >= 0 and model.decode(model.encode(x)).max() <= 1


def test_terms_per_variant():
    batch = random_batch()
    expected = {
        "Autoencoder": {"loss", "recon"},
        "DenoisingAutoencoder": {"loss", "recon"},
        "DropoutAutoencoder": {"loss", "recon"},
        "SparseAutoencoder": {"loss", "recon", "sparsity"},
        "ContractiveAutoencoder": {"loss", "recon", "contractive"},
        "VariationalAutoencoder": {"loss", "recon", "kl"},
        "ImportanceWeightedAutoencoder": {"loss", "recon", "kl"},
        "BetaTCVAE": {"loss", "recon", "mi", "tc", "dwkl"},
        "WassersteinAutoencoder": {"loss", "recon", "mmd"},
        "VectorQuantizedAutoencoder": {"loss", "recon", "codebook", "commitment"},
        "AdversarialAutoencoder": {"loss", "recon", "adversarial", "discriminator"},
        "DeepSVDD": {"loss", "recon"},  # pre-training; then {"loss", "svdd", "recon"} (tests/test_one_class.py)
        "MemoryAutoencoder": {"loss", "recon", "entropy"},
    }
    assert set(expected) == set(VARIANTS)
    for name, keys in expected.items():
        assert set(VARIANTS[name]().training_step(batch)) == keys, name


def test_denoising_reconstructs_the_clean_image_from_the_noisy_one():
    torch.manual_seed(0)
    model = VARIANTS["DenoisingAutoencoder"]()
    batch = random_batch()
    expected = nn.functional.mse_loss(model(batch.noisy), batch.clean)
    assert torch.allclose(model.training_step(batch)["loss"], expected)
    assert not torch.allclose(expected, nn.functional.mse_loss(model(batch.clean), batch.clean))


@pytest.mark.parametrize("distance", ["mse", "bce"])
def test_distance_is_selectable(distance):
    model = VARIANTS["Autoencoder"](distance=distance)
    batch = random_batch()
    logits = model.decoder(model.encode(batch.clean))
    reference = (
        nn.functional.mse_loss(torch.sigmoid(logits), batch.clean)
        if distance == "mse"
        else nn.functional.binary_cross_entropy(torch.sigmoid(logits), batch.clean)
    )
    assert torch.allclose(model.training_step(batch)["loss"], reference, atol=1e-5)


# --- penalties vanish with their weight ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        lambda: SparseAutoencoder(penalty="l1", sparsity_weight=0.0),
        lambda: SparseAutoencoder(penalty="kl", sparsity_weight=0.0),
        lambda: ContractiveAutoencoder(contractive_weight=0.0),
        lambda: VariationalAutoencoder(beta=0.0),
    ],
    ids=["l1", "kl", "contractive", "vae-kl"],
)
def test_penalty_is_zero_when_its_weight_is_zero(model):
    terms = model().training_step(random_batch())
    penalty = {k: v for k, v in terms.items() if k in ("sparsity", "contractive")}
    for value in penalty.values():
        assert value.item() == 0.0
    assert torch.equal(terms["loss"], terms["recon"]) or torch.allclose(terms["loss"], terms["recon"])


def test_sparse_penalties_match_their_formulas():
    batch = random_batch()
    l1 = SparseAutoencoder(penalty="l1", sparsity_weight=0.5)
    z = l1.encode(batch.clean)
    assert torch.allclose(l1.training_step(batch)["sparsity"], 0.5 * z.abs().sum(1).mean())
    kl = SparseAutoencoder(penalty="kl", sparsity_weight=3.0, target_activation=0.1)
    z = kl.encode(batch.clean)
    assert z.min() >= 0 and z.max() <= 1
    rho, rho_hat = 0.1, z.mean(0)
    expected = 3.0 * (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
    assert torch.allclose(kl.training_step(batch)["sparsity"], expected, rtol=1e-5)


def test_top_k_keeps_exactly_k_units():
    model = SparseAutoencoder(penalty="topk", k=5, latent_dim=20)
    z = model.encode(random_batch().clean)
    assert ((z != 0).sum(dim=1) == 5).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"penalty": "l2"}, r"model.penalty='l2'.*allowed"),
        ({"penalty": "kl", "target_activation": 1.0}, r"model.target_activation=1.0.*\(0, 1\)"),
        ({"penalty": "kl", "target_activation": 0.0}, r"model.target_activation=0.0"),
        # options the chosen penalty would silently drop are refused
        ({"penalty": "topk", "sparsity_weight": 0.1}, r"model.sparsity_weight=0.1 is not used with penalty 'topk'"),
        ({"penalty": "l1", "k": 8}, r"model.k=8 is not used with penalty 'l1'; remove it, or choose penalty topk"),
        ({"penalty": "l1", "target_activation": 0.1}, r"model.target_activation=0.1 is not used with penalty 'l1'"),
        ({"penalty": "topk", "k": 0}, r"model.k=0.*\[1, latent_dim=32\]"),
        ({"penalty": "topk", "k": 33}, r"model.k=33"),
        ({"sparsity_weight": -1.0}, r"model.sparsity_weight=-1.0.*>= 0"),
        ({"latent_dim": 0}, r"model.latent_dim=0"),
    ],
)
def test_sparse_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SparseAutoencoder(**kwargs)


def test_vae_observation_std_needs_the_gaussian_likelihood():
    with pytest.raises(ConfigError, match=r"model.observation_std=0.3 is not used with likelihood 'bernoulli'"):
        VariationalAutoencoder(observation_std=0.3)
    assert VariationalAutoencoder(likelihood="gaussian", observation_std=0.3).observation_std == 0.3


def test_other_bad_options():
    with pytest.raises(ConfigError, match=r"model.beta=-0.5"):
        VariationalAutoencoder(beta=-0.5)
    with pytest.raises(ConfigError, match=r"model.contractive_weight=-1"):
        ContractiveAutoencoder(contractive_weight=-1)
    with pytest.raises(ConfigError, match=r"model.input_dropout=1.0"):
        DropoutAutoencoder(input_dropout=1.0)
    with pytest.raises(ConfigError, match=r"model.jacobian='closed_form' holds for a single sigmoid layer"):
        ContractiveAutoencoder(jacobian="closed_form")
    with pytest.raises(ConfigError, match=r"model.network='resnet'.*allowed"):
        VARIANTS["Autoencoder"](network="resnet")
    with pytest.raises(ConfigError, match=r"model.distance='l1'.*allowed"):
        VARIANTS["Autoencoder"](distance="l1")


# --- contractive: the penalty against brute force ------------------------------------------------------------------
def brute_force_frobenius(encode, x: torch.Tensor) -> torch.Tensor:
    out = []
    for sample in x:
        jacobian = torch.autograd.functional.jacobian(lambda s: encode(s.unsqueeze(0)).squeeze(0), sample)
        out.append(jacobian.pow(2).sum())
    return torch.stack(out)


def test_closed_form_and_exact_equal_brute_force_on_rifai_layer():
    torch.manual_seed(0)
    model = ContractiveAutoencoder(hidden_dims=[], latent_dim=16, input_shape=(1, 6, 6))
    assert model.jacobian == "closed_form"
    x = torch.rand(5, 1, 6, 6)
    expected = brute_force_frobenius(model.encode, x)
    closed = jacobian_frobenius_closed_form(model.encode(x), model.encoder[-2].weight)
    assert torch.allclose(closed, expected, rtol=1e-5)
    assert torch.allclose(jacobian_frobenius_exact(model.encode, x), expected, rtol=1e-5)


@pytest.mark.parametrize("input_shape,latent_dim", [((1, 6, 6), 4), ((1, 2, 2), 12)], ids=["rows", "columns"])
def test_exact_equals_brute_force_on_a_deep_encoder(input_shape, latent_dim):
    # rows: fewer code units than inputs (vmap over VJPs); columns: fewer inputs (vmap over JVPs)
    torch.manual_seed(0)
    model = ContractiveAutoencoder(
        hidden_dims=[16, 8], latent_dim=latent_dim, input_shape=input_shape, jacobian="exact"
    )
    x = torch.rand(5, *input_shape)
    assert torch.allclose(model.jacobian_frobenius(x), brute_force_frobenius(model.encode, x), rtol=1e-4)


def test_exact_penalty_gradient_equals_closed_form_gradient():
    torch.manual_seed(0)
    model = ContractiveAutoencoder(hidden_dims=[], latent_dim=8, input_shape=(1, 5, 5))
    x = torch.rand(4, 1, 5, 5)
    grads = []
    for compute in (
        lambda: jacobian_frobenius_closed_form(model.encode(x), model.encoder[-2].weight),
        lambda: jacobian_frobenius_exact(model.encode, x),
    ):
        model.zero_grad()
        compute().sum().backward()
        grads.append(model.encoder[-2].weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_estimate_is_unbiased():
    torch.manual_seed(0)
    model = ContractiveAutoencoder(hidden_dims=[32], latent_dim=6, input_shape=(1, 4, 4), jacobian="estimate")
    x = torch.rand(3, 1, 4, 4)
    exact = brute_force_frobenius(model.encode, x)
    with torch.no_grad():
        draws = torch.stack([jacobian_frobenius_estimate(model.encode, x) for _ in range(4000)])
    assert torch.allclose(draws.mean(0), exact, rtol=0.05)
    assert draws.std(0).min() > 0  # really random, not the exact value


@pytest.mark.parametrize("jacobian", ["closed_form", "exact", "estimate"])
def test_contractive_penalty_under_inference_mode(jacobian):
    hidden = [] if jacobian == "closed_form" else None
    model = ContractiveAutoencoder(hidden_dims=hidden, jacobian=jacobian, contractive_weight=1.0)
    model.eval()
    with torch.inference_mode():
        terms = model.training_step(random_batch())
    assert terms["contractive"].item() > 0 and torch.isfinite(terms["loss"])


# --- VAE -----------------------------------------------------------------------------------------------------------
def test_vae_kl_equals_the_analytic_formula():
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    assert torch.allclose(kl_to_standard_normal(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1), rtol=1e-5)


def test_vae_terms_and_sampling():
    torch.manual_seed(0)
    model = VariationalAutoencoder(latent_dim=4)
    batch = random_batch()
    mu, logvar = model.posterior(batch.clean)
    terms = model.training_step(batch)
    assert torch.allclose(terms["kl"], kl_to_standard_normal(mu, logvar).mean())
    assert torch.allclose(terms["loss"], terms["recon"] + terms["kl"])
    assert terms["recon"] > 0
    samples = model.sample(7)
    assert samples.shape == (7, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    gaussian = VariationalAutoencoder(latent_dim=4, likelihood="gaussian", observation_std=0.5)
    x = batch.clean
    mean = torch.sigmoid(gaussian.decoder(gaussian.encode(x)))
    nll = -torch.distributions.Normal(mean, 0.5).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian.negative_log_likelihood(gaussian.decoder(gaussian.encode(x)), x), nll, rtol=1e-5)


def test_vae_kl_warmup_is_linear():
    model = VariationalAutoencoder(beta=2.0, kl_warmup_steps=100)
    model.train()
    model._global_step = 0
    type(model).global_step = property(lambda self: self._global_step)
    try:
        assert model.beta_now() == 0.0
        model._global_step = 50
        assert model.beta_now() == 1.0
        model._global_step = 500
        assert model.beta_now() == 2.0
        model.eval()
        model._global_step = 10
        assert model.beta_now() == 2.0  # evaluation always uses the full β
    finally:
        del type(model).global_step


# --- dropout -------------------------------------------------------------------------------------------------------
def test_dropout_active_while_training_only():
    model = DropoutAutoencoder(input_dropout=0.5, hidden_dropout=0.5)
    x = random_batch().clean
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    assert DropoutAutoencoder(input_dropout=0.0, hidden_dropout=0.0).encoder.__len__() < len(model.encoder)
