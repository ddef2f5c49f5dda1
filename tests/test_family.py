"""IWAE, β-TCVAE and WAE-MMD against closed forms and brute force: the bound and its k, the KL decomposition's
estimator on a Gaussian with a known answer, and the MMD estimator's bias."""

from __future__ import annotations

import math

import pytest
import torch

from ae_lightning import BetaTCVAE, ImportanceWeightedAutoencoder, VariationalAutoencoder, WassersteinAutoencoder
from ae_lightning.data.batch import Batch
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import HasPosterior, Samples
from ae_lightning.variants.tcvae import kl_decomposition
from ae_lightning.variants.vae import kl_to_standard_normal, log_standard_normal
from ae_lightning.variants.wae import imq_kernel, mmd_unbiased


def batch(n: int = 8, seed: int = 0) -> Batch:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return Batch(x, x, torch.zeros(n, dtype=torch.long))


def iwae_and_vae(samples: int) -> tuple[ImportanceWeightedAutoencoder, VariationalAutoencoder]:
    torch.manual_seed(0)
    iwae = ImportanceWeightedAutoencoder(samples=samples, latent_dim=4)
    vae = VariationalAutoencoder(latent_dim=4)
    vae.load_state_dict(iwae.state_dict())  # the same weights
    return iwae, vae


def test_iwae_with_one_sample_is_the_vae_elbo_on_the_same_weights_and_draws():
    iwae, vae = iwae_and_vae(samples=1)
    x = batch().clean
    torch.manual_seed(1)
    loss = iwae.training_step(batch())["loss"]
    torch.manual_seed(1)  # the same ε, by hand: −log p(x|z) + log q(z|x) − log p(z) at z = μ + σε
    eps = torch.randn(1, len(x), 4)[0]
    mu, logvar = vae.posterior(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q = (log_standard_normal(eps) - 0.5 * logvar).sum(1)
    single_draw_elbo = vae.negative_log_likelihood(vae.decoder(z), x) + log_q - log_standard_normal(z).sum(1)
    assert loss.item() == pytest.approx(single_draw_elbo.mean().item(), rel=1e-5)
    # and in expectation the VAE's own −ELBO, whose KL is in closed form
    with torch.no_grad():
        draws = torch.stack([iwae.training_step(batch())["loss"] for _ in range(400)])
        recon = torch.stack([vae.training_step(batch())["recon"] for _ in range(400)]).mean()
    analytic = recon + kl_to_standard_normal(mu, logvar).mean()
    assert draws.mean().item() == pytest.approx(analytic.item(), abs=4 * draws.std().item() / 20)


def test_the_iwae_bound_tightens_with_k_on_a_fixed_model():
    torch.manual_seed(0)
    model = ImportanceWeightedAutoencoder(latent_dim=4)
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a posterior away from the prior and narrower: the draws' weights then differ
        last.bias[:4] += 1.5
        last.bias[4:] -= 2.0
    means = []
    with torch.no_grad():
        for k in (1, 2, 8, 32):
            model.samples = k
            values = torch.stack([model.training_step(batch())["loss"] for _ in range(100)])
            means.append((values.mean().item(), values.std().item() / 10))
    for (looser, looser_se), (tighter, tighter_se) in zip(means, means[1:]):
        assert looser - tighter > 2 * math.hypot(looser_se, tighter_se), means  # L_k > L_{k+1}, beyond noise


def test_iwae_refuses_what_would_break_its_bound():
    with pytest.raises(ConfigError, match="model.beta=4.0 does not apply to ImportanceWeightedAutoencoder"):
        ImportanceWeightedAutoencoder(beta=4.0)
    with pytest.raises(ConfigError, match="model.samples=0 must be >= 1"):
        ImportanceWeightedAutoencoder(samples=0)


def gaussian_codes(covariance: torch.Tensor, spread: float, batch_size: int, seed: int):
    """A batch of codes from an aggregate posterior with a known answer: q(z|xₙ) = N(μₙ, spread² I), μₙ ~ N(0, Σ)
    over N = 50 000 images, so q(z) = N(0, Σ + spread² I)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(50_000, 2, generator=generator) @ torch.linalg.cholesky(covariance).T
    mu = centres[torch.randint(0, 50_000, (batch_size,), generator=generator)]
    z = mu + spread * torch.randn(batch_size, 2, generator=generator)
    return z, mu, torch.full_like(mu, 2 * math.log(spread))


@pytest.mark.parametrize("correlation", [0.8, 0.0])
def test_the_kl_decomposition_estimates_a_gaussian_with_a_known_answer(correlation):
    spread = 0.3
    covariance = torch.tensor([[1.0, correlation], [correlation, 1.0]])
    aggregate = covariance + spread**2 * torch.eye(2)
    variances = torch.diag(aggregate)
    expected = {
        "mi": 0.5 * torch.logdet(aggregate).item() - 2 * math.log(spread),  # H(q(z)) − H(q(z|x))
        "tc": 0.5 * (variances.log().sum() - torch.logdet(aggregate)).item(),  # of a Gaussian
        "dwkl": sum(0.5 * (v - 1 - math.log(v)) for v in variances.tolist()),  # KL(N(0, v) ‖ N(0, 1)) per unit
    }
    estimates = torch.stack(
        [torch.stack(kl_decomposition(*gaussian_codes(covariance, spread, 2000, seed), 50_000)) for seed in range(4)]
    ).mean(0)
    assert estimates[0].item() == pytest.approx(expected["mi"], abs=0.08)
    assert estimates[1].item() == pytest.approx(expected["tc"], abs=0.03)
    assert estimates[2].item() == pytest.approx(expected["dwkl"], abs=0.02)
    if correlation == 0.0:
        assert abs(estimates[1].item()) < 0.03  # independent units: no total correlation
    else:
        assert estimates[1].item() > 0.3


def test_the_three_parts_sum_to_the_single_draw_kl_and_beta_one_is_the_vae_objective():
    z, mu, logvar = gaussian_codes(torch.eye(2), 0.5, 64, seed=0)
    parts = kl_decomposition(z, mu, logvar, 1000)
    single_draw_kl = log_standard_normal((z - mu) / 0.5).sum(1) - 2 * math.log(0.5) - log_standard_normal(z).sum(1)
    assert sum(parts).item() == pytest.approx(single_draw_kl.mean().item(), abs=1e-4)
    torch.manual_seed(0)
    model = BetaTCVAE(beta=1.0, latent_dim=4, dataset_size=1000)
    torch.manual_seed(1)
    terms = model.training_step(batch())
    assert terms["loss"].item() == pytest.approx((terms["recon"] + terms["mi"] + terms["tc"] + terms["dwkl"]).item())
    heavy = BetaTCVAE(beta=6.0, latent_dim=4, dataset_size=1000)
    heavy.load_state_dict(model.state_dict())
    torch.manual_seed(1)  # the same draws
    heavy_terms = heavy.training_step(batch())
    assert heavy_terms["loss"].item() == pytest.approx((terms["loss"] + 5 * terms["tc"]).item(), rel=1e-5)


def test_mmd_is_zero_for_the_prior_positive_for_a_shift_and_unbiased():
    generator = torch.Generator().manual_seed(0)
    scale = 2 * 8 * 1.0  # 2 · d · σ², d = 8

    def draws(shift: float = 0.0) -> torch.Tensor:
        return torch.randn(64, 8, generator=generator) + shift

    same = torch.stack([mmd_unbiased(draws(), draws(), scale) for _ in range(300)])
    shifted = torch.stack([mmd_unbiased(draws(1.0), draws(), scale) for _ in range(20)])
    standard_error = same.std() / math.sqrt(len(same))
    assert abs(same.mean()) < 3 * standard_error  # unbiased: E = 0 when q = p
    assert shifted.mean() > 20 * same.std() and (shifted > same.max()).all()

    def biased(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # the V-statistic keeps the diagonal
        return imq_kernel(a, a, scale).mean() + imq_kernel(b, b, scale).mean() - 2 * imq_kernel(a, b, scale).mean()

    v_statistic = torch.stack([biased(draws(), draws()) for _ in range(300)])
    assert v_statistic.mean() > 10 * standard_error  # what "unbiased" is checked against: this one is not


def test_capabilities_of_the_new_variants():
    assert isinstance(ImportanceWeightedAutoencoder(), HasPosterior) and isinstance(BetaTCVAE(), HasPosterior)
    assert not isinstance(WassersteinAutoencoder(), HasPosterior)
    for model in (ImportanceWeightedAutoencoder(), BetaTCVAE(), WassersteinAutoencoder(latent_dim=6)):
        assert isinstance(model, Samples)
        assert model.sample(3).shape == (3, 1, 28, 28)
    wae = WassersteinAutoencoder(latent_dim=6, prior_std=2.0)
    terms = wae.training_step(batch())
    assert set(terms) == {"loss", "recon", "mmd"}
    assert terms["loss"].item() == pytest.approx((terms["recon"] + 10 * terms["mmd"]).item())
    with pytest.raises(ConfigError, match="at least 2 images"):
        wae.training_step(batch(1))
    with pytest.raises(ConfigError, match="model.prior_std=0 must be > 0"):
        WassersteinAutoencoder(prior_std=0)


def test_vq_vae_loss_is_its_equation_with_the_nearest_codes_by_brute_force():
    from ae_lightning import VectorQuantizedAutoencoder

    torch.manual_seed(0)
    model = VectorQuantizedAutoencoder(codebook_size=16, embedding_dim=4, commitment_weight=0.25, latent_dim=8)
    x = batch().clean
    model.eval()  # no codebook update in this step
    terms = model.training_step(batch())
    z_e = model.encoder(x).detach().reshape(-1, 4)
    nearest = torch.tensor([min(range(16), key=lambda k: (piece - model.codebook[k]).pow(2).sum()) for piece in z_e])
    z_q = model.codebook.detach()[nearest]
    assert torch.equal(model.code_indices(x).flatten(), nearest)
    assert terms["codebook"].item() == pytest.approx((z_q - z_e).pow(2).mean().item(), rel=1e-5)
    assert terms["commitment"].item() == pytest.approx((z_q - z_e).pow(2).mean().item(), rel=1e-5)
    recon = torch.nn.functional.mse_loss(torch.sigmoid(model.decoder(z_q.view(len(x), 8))), x)
    assert terms["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((recon + 1.25 * (z_q - z_e).pow(2).mean()).item(), rel=1e-5)
    assert torch.equal(model.encode(x), z_q.view(len(x), 8))


def test_vq_vae_passes_the_decoder_gradient_straight_through_to_the_encoder():
    from ae_lightning import VectorQuantizedAutoencoder

    torch.manual_seed(0)
    model = VectorQuantizedAutoencoder(codebook_size=16, embedding_dim=4, latent_dim=8, commitment_weight=0.0).eval()
    seen = {}

    def keep_output(module, args, output):
        output.retain_grad()
        seen["z_e"] = output

    def keep_input(module, args):
        args[0].retain_grad()
        seen["decoder_input"] = args[0]

    model.encoder.register_forward_hook(keep_output)
    model.decoder.register_forward_pre_hook(keep_input)
    model.training_step(batch())["recon"].backward()
    assert not torch.equal(seen["z_e"], seen["decoder_input"])  # the decoder saw z_q …
    assert torch.allclose(seen["z_e"].grad, seen["decoder_input"].grad)  # … and its gradient reached z_e unchanged
    assert model.codebook.grad is None  # the codebook learns from its own term only


def test_vq_vae_ema_update_and_dead_code_restart():
    from ae_lightning import VectorQuantizedAutoencoder

    torch.manual_seed(0)
    model = VectorQuantizedAutoencoder(codebook_size=8, embedding_dim=2, latent_dim=2, ema_decay=0.9, dead_code_steps=3)
    assert "codebook" not in dict(model.named_parameters())  # EMA: a buffer, moved by averages
    pieces = torch.tensor([[0.5, 0.5], [0.7, 0.3], [-1.0, 2.0]])
    indices = torch.tensor([1, 1, 4])
    count, total = model.ema_count.clone(), model.ema_sum.clone()
    model.update_codebook(pieces, indices)
    expected_count = 0.9 * count + 0.1 * torch.tensor([0, 2, 0, 0, 1, 0, 0, 0.0])
    assert torch.allclose(model.ema_count, expected_count)
    expected_sum_1 = 0.9 * total[1] + 0.1 * (pieces[0] + pieces[1])
    n = expected_count.sum()
    smoothed = (expected_count[1] + 1e-5) / (n + 8e-5) * n
    assert torch.allclose(model.codebook[1], expected_sum_1 / smoothed, atol=1e-6)
    for _ in range(2):  # codes other than 1 and 4 unused for 3 steps: restarted at pieces of the batch
        model.update_codebook(pieces, indices)
    restarted = [k for k in range(8) if k not in (1, 4)]
    for k in restarted:
        assert any(torch.allclose(model.codebook[k], piece) for piece in pieces), k
    assert model.steps_unused.tolist() == [0] * 8


def test_codebook_metrics_have_their_known_answers():
    from types import SimpleNamespace

    from ae_lightning.evaluation.battery import EvaluationSettings, codebook_metrics

    model = SimpleNamespace(
        codebook=torch.zeros(8, 2),
        device=torch.device("cpu"),
        code_indices=lambda x: torch.arange(len(x)).remainder(4)[:, None].repeat(1, 2),  # 4 of 8 used equally
    )
    metrics = codebook_metrics(model, torch.zeros(40, 1, 2, 2, dtype=torch.uint8), EvaluationSettings())
    assert metrics == {"test/codebook_usage": 0.5, "test/codebook_perplexity": pytest.approx(4.0)}
    model.code_indices = lambda x: torch.zeros(len(x), 2, dtype=torch.long)  # collapsed onto one code
    metrics = codebook_metrics(model, torch.zeros(40, 1, 2, 2, dtype=torch.uint8), EvaluationSettings())
    assert metrics == {"test/codebook_usage": 0.125, "test/codebook_perplexity": pytest.approx(1.0)}


def test_vq_vae_capabilities_and_settings():
    from ae_lightning import VectorQuantizedAutoencoder
    from ae_lightning.variants.base import HasCodebook

    model = VectorQuantizedAutoencoder()
    assert isinstance(model, HasCodebook) and not isinstance(model, Samples) and not isinstance(model, HasPosterior)
    assert {"codebook", "steps_unused"} <= set(model.state_dict())  # restored with checkpoints
    assert {"ema_count", "ema_sum"} <= set(VectorQuantizedAutoencoder(ema_decay=0.99).state_dict())
    with pytest.raises(ConfigError, match="model.embedding_dim=5 must divide model.latent_dim=32"):
        VectorQuantizedAutoencoder(embedding_dim=5)
    with pytest.raises(ConfigError, match=r"model.ema_decay=1.5 must lie in \(0, 1\)"):
        VectorQuantizedAutoencoder(ema_decay=1.5)


def test_shapes_are_drawn_once_with_every_combination_of_their_factors(tmp_path):
    from ae_lightning import ImageDataModule
    from ae_lightning.data.shapes import SIZES, load_shapes

    train_images, train_labels, train_factors = load_shapes(tmp_path, train=True)
    test_images, _, test_factors = load_shapes(tmp_path, train=False)
    assert len(train_images) + len(test_images) == math.prod(SIZES) and len(test_images) == math.prod(SIZES) // 5
    every = torch.cat([train_factors, test_factors])
    assert len(torch.unique(every, dim=0)) == math.prod(SIZES)  # each combination once
    assert torch.equal(train_labels, train_factors[:, 0])  # the label is the shape
    assert train_images.dtype == torch.uint8 and train_images.shape[1:] == (1, 32, 32)
    assert (train_images.flatten(1).max(1).values == 255).all()  # every image shows its shape
    again = load_shapes(tmp_path, train=False)[0]  # from the cache: the same images
    assert torch.equal(again, test_images)
    dm = ImageDataModule(name="shapes", root=str(tmp_path), val_size=500, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.image_shape == (1, 32, 32) and torch.equal(dm.test_factors, test_factors)
    # a bigger scale level draws a bigger shape, whatever else
    sizes = train_images.flatten(1).float().sum(1)
    small, large = sizes[train_factors[:, 1] == 0].mean(), sizes[train_factors[:, 1] == 5].mean()
    assert large > 2 * small


def test_mig_and_dci_have_their_known_answers(tmp_path):
    from ae_lightning.data.shapes import load_shapes
    from ae_lightning.evaluation.disentanglement import disentanglement_metrics, importance_matrix

    factors = load_shapes(tmp_path, train=False)[2]
    generator = torch.Generator().manual_seed(0)
    standard = (factors.float() - factors.float().mean(0)) / factors.float().std(0)
    faithful = disentanglement_metrics(standard + 0.01 * torch.randn(standard.shape, generator=generator), factors)
    assert all(value > 0.95 for value in faithful.values()), faithful  # each factor in a unit of its own
    independent = disentanglement_metrics(torch.randn(len(factors), 10, generator=generator), factors)
    assert independent["disentangle/mig"] < 0.05 and independent["disentangle/dci_disentanglement"] < 0.3
    assert independent["disentangle/dci_informativeness"] < 0.05  # a random code predicts no factor
    # the shape also copied into a second unit: no gap for that factor (MIG ≈ 4/5), though DCI's importances stay
    duplicated = torch.cat([standard, standard[:, :1]], 1) + 0.01 * torch.randn(len(factors), 6, generator=generator)
    assert disentanglement_metrics(duplicated, factors)["disentangle/mig"] == pytest.approx(0.8, abs=0.03)
    rotation = torch.linalg.qr(torch.randn(5, 5, generator=generator))[0]
    mixed = disentanglement_metrics(standard @ rotation, factors)  # every factor in every unit: informative, tangled
    assert mixed["disentangle/mig"] < 0.3 and mixed["disentangle/dci_disentanglement"] < 0.5  # faithful: > 0.95
    assert mixed["disentangle/dci_informativeness"] > 0.8  # … and the factors can still be read from it
    # the scale encoded in one unit, non-monotonically (cos): the trees find it there; a linear regression's
    # weights gave that unit almost no importance for it
    bent = standard.clone()
    bent[:, 1] = torch.cos(2.5 * standard[:, 1])
    bent += 0.01 * torch.randn(bent.shape, generator=generator)
    importance, explained = importance_matrix(bent, factors)
    assert int(importance[:, 1].argmax()) == 1 and importance[1, 1] > 0.9 * importance[:, 1].sum()
    assert explained[1] > 0.8  # (cos folds two of the six scales nearly together)
    scores = disentanglement_metrics(bent, factors)
    assert scores["disentangle/dci_disentanglement"] > 0.95 and scores["disentangle/dci_completeness"] > 0.95


def test_adversarial_autoencoder_players_get_their_own_gradients():
    from ae_lightning import AdversarialAutoencoder

    torch.manual_seed(0)
    model = AdversarialAutoencoder(latent_dim=4, discriminator_dims=(16,))
    x = batch().clean
    torch.manual_seed(1)
    terms = model.training_step(batch())  # outside a fit: terms only, no optimizer step
    torch.manual_seed(1)  # the same prior draw, by hand: the discriminator's and the autoencoder's losses
    z = model.encode(x)
    prior = torch.randn_like(z)
    d = model.discriminator
    by_hand = -torch.log(torch.sigmoid(d(prior))).mean() - torch.log(1 - torch.sigmoid(d(z))).mean()
    assert terms["discriminator"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert terms["adversarial"].item() == pytest.approx(-torch.log(torch.sigmoid(d(z))).mean().item(), rel=1e-5)
    (terms["loss"] + terms["discriminator"]).backward()
    joint = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(1)
    model.training_step(batch())["discriminator"].backward()  # the discriminator's gradient: from its term alone
    for name, p in model.discriminator.named_parameters():
        assert torch.allclose(joint[f"discriminator.{name}"], p.grad, atol=1e-6), name
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())  # codes detached
    model.zero_grad()
    torch.manual_seed(1)
    model.training_step(batch())["loss"].backward()  # the autoencoder's: from its own loss alone
    for name, p in model.encoder.named_parameters():
        assert torch.allclose(joint[f"encoder.{name}"], p.grad, atol=1e-6), name
    assert all(p.grad is None for p in model.discriminator.parameters())  # D's weights frozen in the fooling term


def test_adversarial_autoencoder_trains_both_players_and_checkpoints_both_optimizers(data_root, tmp_path):
    import pytorch_lightning as pl

    from ae_lightning import AdversarialAutoencoder, ImageDataModule

    from conftest import quiet_trainer

    pl.seed_everything(0)
    dm = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
    model = AdversarialAutoencoder(latent_dim=8, discriminator_learning_rate=5e-4)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = quiet_trainer(max_epochs=1, default_root_dir=str(tmp_path), enable_checkpointing=True)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * 10  # 10 batches, two optimizer steps each
    for prefix in ("encoder.", "decoder.", "discriminator."):
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n.startswith(prefix))
    (checkpoint,) = tmp_path.rglob("*.ckpt")
    states = torch.load(checkpoint, weights_only=True)["optimizer_states"]
    assert len(states) == 2 and states[1]["param_groups"][0]["lr"] == 5e-4
    assert isinstance(model, Samples) and model.sample(2).shape == (2, 1, 28, 28)
