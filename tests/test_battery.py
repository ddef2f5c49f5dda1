"""The evaluation battery's metrics against known answers."""

from __future__ import annotations

import json

import torch

from ae_lightning import Autoencoder, VariationalAutoencoder
from ae_lightning.evaluation.battery import (
    EvaluationSettings,
    code_sparsity,
    importance_weighted_log_likelihood,
    knn_accuracy,
    linear_probe,
    mean_jacobian_frobenius,
    reconstruction_metrics,
    vae_metrics,
)
from ae_lightning.variants.vae import gaussian_nll, kl_to_standard_normal


def test_linear_probe_separable_vs_random_labels():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 4
    labels = torch.randint(0, 4, (800,), generator=generator)
    codes = centres[labels] + torch.randn(800, 8, generator=generator)
    assert linear_probe(codes[:600], labels[:600], codes[600:], labels[600:])[0] > 0.95
    shuffled = labels[torch.randperm(800, generator=generator)]
    assert linear_probe(codes[:600], shuffled[:600], codes[600:], shuffled[600:])[0] < 0.45
    assert knn_accuracy(codes[:600], labels[:600], codes[600:], labels[600:]) > 0.95
    assert knn_accuracy(codes[:600], shuffled[:600], codes[600:], shuffled[600:]) < 0.45


def test_probe_chooses_its_l2_on_training_codes_only():
    # 60 training points in 100 dimensions, 2 of them informative: the least regularised fit overfits the noise
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (560,), generator=generator)
    codes = torch.randn(560, 100, generator=generator)
    codes[:, :2] += 1.5 * (2 * labels[:, None] - 1)
    train, test = slice(0, 60), slice(60, None)
    accuracy, chosen = linear_probe(codes[train], labels[train], codes[test], labels[test])
    assert chosen > 1e-4  # the held-out fifth of the training codes asked for more regularisation
    # the test split takes no part in the choice: scrambled test labels change the score, never the chosen L2
    scrambled = labels[test][torch.randperm(500, generator=generator)]
    assert linear_probe(codes[train], labels[train], codes[test], scrambled)[1] == chosen
    assert accuracy > 0.75  # the two informative dimensions are found


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
    per_image_mse = (images.float() / 255).pow(2).flatten(1).mean(1)
    assert abs(from_zero["test/noisy_mse"] - per_image_mse.mean().item()) < 1e-6
    # PSNR is per image, then averaged: not the PSNR of the pooled MSE
    assert abs(from_zero["test/noisy_psnr"] - (-10 * per_image_mse.log10()).mean().item()) < 1e-3


def test_psnr_is_the_mean_over_images():
    clean = torch.full((2, 1, 16, 16), 128, dtype=torch.uint8)
    offsets = torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)  # per-image MSE 1e-2 and 1e-4: PSNR 20 and 40 dB

    class Identity(Autoencoder):
        def forward(self, x):
            return x

    noisy = clean.float() / 255 + offsets
    metrics = reconstruction_metrics(Identity(input_shape=(1, 16, 16)), clean, noisy, "", EvaluationSettings())
    assert abs(metrics["test/psnr"] - 30.0) < 1e-3  # the pooled MSE would give 22.97 dB
    assert abs(metrics["test/mse"] - (1e-2 + 1e-4) / 2) < 1e-7


def test_jacobian_norm_of_a_linear_encoder():
    model = Autoencoder(input_shape=(1, 4, 4), hidden_dims=[], latent_dim=3)
    images = (torch.rand(10, 1, 4, 4) * 255).to(torch.uint8)
    weight = model.encoder[2].weight  # [0] the standardisation, [1] Flatten
    assert abs(mean_jacobian_frobenius(model, images, EvaluationSettings()) - weight.norm().item()) < 1e-5


class LinearGaussianVAE(VariationalAutoencoder):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I): log p(x) = log N(x; b, WWᵀ + σ²I) in closed form. W's columns are
    orthogonal, so the true posterior N(m, S), S = (I + WᵀW/σ²)⁻¹, m = S Wᵀ(x − b)/σ², is diagonal: q(z|x) can equal
    it exactly (``shift`` = 0) or be moved off it by ``shift`` posterior standard deviations."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, std: float, shift: float = 0.0) -> None:
        super().__init__(input_shape=(1, 2, 3), latent_dim=weight.shape[1], likelihood="gaussian", observation_std=std)
        self.weight, self.bias, self.std, self.shift = weight, bias, std, shift
        self.posterior_var = 1 / (1 + weight.pow(2).sum(0) / std**2)
        self.decoder = LinearDecoder(weight, bias)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x.flatten(1) - self.bias) @ self.weight * self.posterior_var / self.std**2
        mean = mean + self.shift * self.posterior_var.sqrt()
        return mean, self.posterior_var.log().expand_as(mean)

    def negative_log_likelihood(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return gaussian_nll(mean, x, self.std)  # the mean is linear in z (no sigmoid)

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        covariance = self.weight @ self.weight.T + self.std**2 * torch.eye(len(self.bias), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.bias, covariance).log_prob(x.flatten(1))


class LinearDecoder(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.weight.T + self.bias).view(-1, 1, 2, 3)


def linear_gaussian(shift: float = 0.0) -> tuple[LinearGaussianVAE, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 2, generator=generator, dtype=torch.float64))
    weight = basis * torch.tensor([1.5, 0.7], dtype=torch.float64)  # orthogonal columns of different lengths
    bias = torch.randn(6, generator=generator, dtype=torch.float64)
    model = LinearGaussianVAE(weight, bias, std=0.5, shift=shift).double()
    z = torch.randn(8, 2, generator=generator, dtype=torch.float64)
    x = model.decoder(z) + 0.5 * torch.randn(8, 1, 2, 3, generator=generator, dtype=torch.float64)
    return model, x


def test_iw_nll_is_exact_when_q_is_the_true_posterior():
    model, x = linear_gaussian()
    exact = model.exact_log_likelihood(x)
    torch.manual_seed(0)
    for k in (1, 50):  # every importance weight p(x, z)/q(z|x) equals p(x): the estimate is exact for any k
        assert torch.allclose(importance_weighted_log_likelihood(model, x, k), exact, atol=1e-9)


def test_iw_nll_converges_to_log_px_from_a_wrong_posterior():
    model, x = linear_gaussian(shift=1.0)
    exact = model.exact_log_likelihood(x)
    torch.manual_seed(0)
    one = torch.stack([importance_weighted_log_likelihood(model, x, 1) for _ in range(2000)]).mean(0)
    # k = 1 is the ELBO: below log p(x) by KL(q ‖ p(z|x)) = ½ Σⱼ shift² = 1 nat (Monte Carlo over 2000 draws)
    assert abs((exact - one).mean().item() - 1.0) < 0.05
    assert torch.allclose(exact - one, torch.ones_like(exact), atol=0.15)
    many = importance_weighted_log_likelihood(model, x, 5000)
    # Burda et al.: log p̂_k → log p(x) as k grows; with these weights' variance (e² − 1) the k = 5000 estimate is
    # within ~0.04 nats per image
    assert (exact - many).abs().max() < 0.12 and abs((exact - many).mean().item()) < 0.04


def test_active_units_count_the_units_whose_mean_moves_with_x():
    torch.manual_seed(0)
    model = VariationalAutoencoder(latent_dim=4, hidden_dims=[32])
    model.eval()
    images = (torch.rand(16, 1, 28, 28) * 255).to(torch.uint8)
    # Active units: Var over data of E[z|x] > 0.01. Make two of four units of μ depend on x, two constant.
    with torch.no_grad():
        last = model.encoder[-1]
        last.weight[[2, 3]] = 0.0
        last.bias[[2, 3]] = 0.0
        last.weight[[0, 1]] *= 50
    metrics = vae_metrics(model, images, EvaluationSettings(iw_samples=10))
    assert metrics["test/active_units"] == 2.0
    assert metrics["test/nll_iw"] > 0 and metrics["test/elbo"] < 0


def test_vae_nats_are_computed_on_the_images_as_given():
    # No thresholding inside the battery: grey images are scored as grey, binary ones as binary.
    torch.manual_seed(0)
    model = VariationalAutoencoder(latent_dim=4, hidden_dims=[32])
    model.eval()
    images = (torch.rand(8, 1, 28, 28) * 255).to(torch.uint8)
    settings = EvaluationSettings(iw_samples=1, batch_size=100)
    torch.manual_seed(1)
    metrics = vae_metrics(model, images, settings)
    torch.manual_seed(1)
    x = images.float() / 255
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        elbo = -model.negative_log_likelihood(model.decoder(z), x) - kl_to_standard_normal(mu, logvar)
    assert abs(metrics["test/elbo"] - elbo.mean().item()) < 1e-4


def test_pixel_baseline_is_cached_by_content_and_its_failures_reported(tmp_path, capsys):
    from ae_lightning.evaluation.baseline import compute_pixel_baseline, write_pixel_baseline

    from datasets import write_mnist_like

    data_root = tmp_path / "data"
    write_mnist_like(data_root / "MNIST" / "raw", n_train=400)
    data = {"name": "mnist", "root": str(data_root), "download": False, "val_size": 100}
    evaluation = {"probe_train_samples": 200}
    cache = data_root / ".ae_lightning_cache"
    first = compute_pixel_baseline(data, evaluation)
    (entry,) = cache.glob("pixel-baseline-*.json")
    assert json.loads(entry.read_text()) == first and 0 < first["probe/accuracy"] <= 1
    assert compute_pixel_baseline(data, evaluation) == first and len(list(cache.glob("pixel-baseline-*"))) == 1
    compute_pixel_baseline({**data, "val_size": 150}, evaluation)  # other training images: computed again
    assert len(list(cache.glob("pixel-baseline-*.json"))) == 2
    # a failure is written where the report reads it, and said on the console
    suite = {"data": {**data, "root": str(tmp_path / "missing")}, "evaluation": evaluation}
    written = write_pixel_baseline(tmp_path, suite)
    assert "error" in written and json.loads((tmp_path / "pixel_baseline.json").read_text()) == written
    assert "error: pixel-space probe baseline not computed: " in capsys.readouterr().out


def test_probes_are_skipped_where_a_class_has_too_few_training_images():
    from ae_lightning import Autoencoder
    from ae_lightning.evaluation.battery import EvaluationSettings, evaluate, pixel_baseline

    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(60, 1, 8, 8, generator=generator) * 255).to(torch.uint8)
    labels = torch.tensor([0] * 30 + [1] * 25 + [2] * 5)  # the rarest class: 5 training images
    settings = EvaluationSettings(jacobian_samples=5, probe_steps=5)
    model = Autoencoder(input_shape=(1, 8, 8), latent_dim=4)
    skipped = evaluate(model, images, labels, images[:20], labels[:20], settings)
    assert skipped["eval/probe_skipped_min_class"] == 5 and "probe/accuracy" not in skipped
    assert pixel_baseline(images, labels, images[:20], labels[:20], settings) == {}
    forced = EvaluationSettings(jacobian_samples=5, probe_steps=5, probe_min_per_class=0)
    probed = evaluate(model, images, labels, images[:20], labels[:20], forced)
    assert "probe/accuracy" in probed and "eval/probe_skipped_min_class" not in probed
    enough = evaluate(model, images, torch.tensor([0, 1] * 30), images[:20], labels[:20], settings)  # 30 each
    assert "probe/accuracy" in enough
