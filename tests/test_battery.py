"""The evaluation battery's metrics against known answers."""

from __future__ import annotations

import torch

from ae_lightning import Autoencoder, VariationalAutoencoder
from ae_lightning.evaluation.battery import (
    EvaluationSettings,
    code_sparsity,
    importance_weighted_log_likelihood,
    linear_probe_accuracy,
    mean_jacobian_frobenius,
    reconstruction_metrics,
    vae_metrics,
)


def test_linear_probe_separable_vs_random_labels():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 4
    labels = torch.randint(0, 4, (800,), generator=generator)
    codes = centres[labels] + torch.randn(800, 8, generator=generator)
    assert linear_probe_accuracy(codes[:600], labels[:600], codes[600:], labels[600:]) > 0.95
    shuffled = labels[torch.randperm(800, generator=generator)]
    assert linear_probe_accuracy(codes[:600], shuffled[:600], codes[600:], shuffled[600:]) < 0.45


def test_code_sparsity_thresholds():
    codes = torch.tensor([[0.0, 1e-4, 0.5, -2.0], [0.01, 0.04, 0.9, 0.0]])
    assert code_sparsity(codes, sigmoid_codes=False) == 3 / 8
    assert code_sparsity(codes, sigmoid_codes=True) == 6 / 8  # z < 0.05


def test_reconstruction_metrics_of_a_perfect_and_a_constant_model():
    images = (torch.rand(20, 1, 28, 28) * 255).to(torch.uint8)

    class Identity(Autoencoder):
        def forward(self, x):
            return x

    perfect = reconstruction_metrics(Identity(), images, None, "", EvaluationSettings(batch_size=7))
    assert perfect["test/mse"] == 0 and perfect["test/ssim"] > 0.999
    noisy = torch.zeros(20, 1, 28, 28)
    from_zero = reconstruction_metrics(Identity(), images, noisy, "noisy_", EvaluationSettings(batch_size=7))
    expected_mse = (images.float() / 255).pow(2).mean().item()
    assert abs(from_zero["test/noisy_mse"] - expected_mse) < 1e-6
    assert abs(from_zero["test/noisy_psnr"] - 10 * torch.log10(torch.tensor(1 / expected_mse)).item()) < 1e-3


def test_jacobian_norm_of_a_linear_encoder():
    model = Autoencoder(input_shape=(1, 4, 4), hidden_dims=[], latent_dim=3)
    images = (torch.rand(10, 1, 4, 4) * 255).to(torch.uint8)
    weight = model.encoder[1].weight
    assert abs(mean_jacobian_frobenius(model, images, EvaluationSettings()) - weight.norm().item()) < 1e-5


def test_importance_weighting_tightens_the_bound_and_active_units_count():
    torch.manual_seed(0)
    model = VariationalAutoencoder(latent_dim=4, hidden_dims=[32])
    model.eval()
    images = (torch.rand(16, 1, 28, 28) * 255).to(torch.uint8)
    x = (images.float() / 255 > 0.5).float()
    with torch.no_grad():
        one = torch.stack([importance_weighted_log_likelihood(model, x, 1) for _ in range(50)]).mean()
        many = importance_weighted_log_likelihood(model, x, 500).mean()
    assert many > one  # log p̂_k rises with k towards log p(x) (Burda et al., theorem 1)
    # Active units: Var over data of E[z|x] > 0.01. Make two of four units of μ depend on x, two constant.
    with torch.no_grad():
        last = model.encoder[-1]
        last.weight[[2, 3]] = 0.0
        last.bias[[2, 3]] = 0.0
        last.weight[[0, 1]] *= 50
    metrics = vae_metrics(model, images, EvaluationSettings(iw_samples=10))
    assert metrics["test/active_units"] == 2.0
    assert metrics["test/nll_iw"] > 0 and metrics["test/elbo"] < 0
