"""The evaluation battery: every variant judged on the same test set with the same metrics.

Keys (a public contract: W&B panels and the report use them):

    test/mse, test/psnr, test/ssim                 reconstruction h(g(x)) of clean test images; MSE per pixel, PSNR
                                                   and SSIM per image, averaged over images (not PSNR of the pooled MSE)
    test/noisy_mse, test/noisy_psnr, test/noisy_ssim  h(g(x̃)) against the clean x, x̃ the fixed evaluation corruption
    probe/accuracy                                 logistic regression on standardised frozen codes: its L2 strength
                                                   picked on a held-out fifth of the training codes, then refit on all
                                                   of them and scored once on the test codes
    probe/knn_accuracy                             k-nearest neighbours (k = 5) on the same standardised codes
    test/jacobian_fro                              mean over test images of ‖∂g(x)/∂x‖_F, the Frobenius norm (not
                                                   squared; the CAE's training penalty is λ·mean ‖J‖²_F), exact
    test/code_sparsity                             fraction of code units with |z| < 1e-3 (sigmoid codes: z < 0.05)
    test/elbo, test/nll_iw, test/active_units      VAE only: nats per image, on the test images exactly as the model
                                                   trained on them (data.binarize: binary for static, threshold and
                                                   dynamic — a real probability under a Bernoulli likelihood; grey
                                                   levels for none)
    test/codebook_usage, test/codebook_perplexity  models with a codebook (VQ-VAE): share of its entries the test
                                                   codes use, and exp of the entropy of their frequencies
    disentangle/mig, disentangle/dci_*             data with known factors (shapes): see disentanglement.py
    code/dead_units, code/units, code/dead_fraction  units of the test codes that no test image activates or that
                                                   are constant over them (EvaluationSettings: the thresholds)
    code/effective_dims                            participation ratio of the units' correlation eigenvalues: how
                                                   many units' worth of independent variation the code has
                                                   (reported, not a collapse flag: a briefly trained AE on simple
                                                   images measures ~1 and is not broken)
    code/collapsed                                 1 when the code is degenerate (collapse_reason says why: most
                                                   units dead, or a posterior with fewer than 2 active units)

The battery runs in one process on the full test split (never on a DDP shard), on the model's device, with no
collectives, and needs no Trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanSquaredError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ae_lightning import seeding
from ae_lightning.data.corruption import Noise
from ae_lightning.distances import standard_deviation
from ae_lightning.evaluation.anomaly import (
    AUPRO_KEY,
    PIXEL_KEY,
    anomaly_metrics,
    anomaly_scores,
    calibrated_metrics,
    pixel_aupro,
    pixel_auroc,
    pixel_threshold_metrics,
)
from ae_lightning.evaluation.anomaly import SCORES as ANOMALY_SCORES
from ae_lightning.evaluation.disentanglement import disentanglement_metrics
from ae_lightning.evaluation.generative import ClassifierSettings, domain_classifier, frechet_distance, inception_fid
from ae_lightning.evaluation.stages import Progress, Stages
from ae_lightning.variants import AutoencoderBase
from ae_lightning.variants.base import HasCodebook, HasPosterior, Samples
from ae_lightning.variants.contractive import jacobian_frobenius_exact
from ae_lightning.variants.vae import importance_weighted_log_likelihood, kl_to_standard_normal

RECONSTRUCTION_KEYS = (
    "test/mse",
    "test/psnr",
    "test/ssim",
    "test/noisy_mse",
    "test/noisy_psnr",
    "test/noisy_ssim",
    "probe/accuracy",
    "probe/knn_accuracy",
)
STRUCTURE_KEYS = (
    "test/jacobian_fro",
    "test/code_sparsity",
    "test/elbo",
    "test/nll_iw",
    "test/active_units",
    "test/codebook_usage",
    "test/codebook_perplexity",
)
GENERATIVE_KEYS = ("gen/fd_domain", "gen/fid_inception")
BATTERY_KEYS = RECONSTRUCTION_KEYS + STRUCTURE_KEYS + GENERATIVE_KEYS
# A test split smaller than this makes differences of a few tenths of a percent chance: the report flags it.
SMALL_TEST_SPLIT = 1000


@dataclass
class EvaluationSettings:
    """How much of the test set the costly metrics use (None = all of it)."""

    noise: Noise = Noise("gaussian", 0.3)  # the corruption for test/noisy_*: the suite's, else Gaussian σ = 0.3
    noise_seed: int = 0  # the test images' fixed corruption for test/noisy_* (a suite sets its data.seed)
    batch_size: int = 500
    probe_train_samples: int | None = None  # codes of this many train images fit the probe
    probe_steps: int = 200
    probe_l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # L2 strengths the probe chooses among
    probe_seed: int = 0  # seeds the held-out fifth of training codes on which the probe's L2 strength is chosen
    knn_neighbours: int = 5
    # probes are skipped where a class has fewer training images than this: a probe fit on a handful of examples of
    # a class measures which examples were drawn, not the code (0 computes them anyway)
    probe_min_per_class: int = 10
    sparsity_threshold: float = 1e-3  # test/code_sparsity: a unit |z| below this counts as inactive
    sigmoid_sparsity_threshold: float = 0.05  # … and a sigmoid code (in [0, 1]) below this
    # collapse (code/*): a unit is dead when it is never active on the test images (the thresholds above) or
    # constant on them (standard deviation below dead_unit_std × the units' mean); a run is collapsed when at
    # least max_dead_fraction of its units are dead, or — a model with a posterior — fewer than min_active_units
    # units are active (Burda's criterion, active_unit_variance)
    dead_unit_std: float = 1e-3
    max_dead_fraction: float = 0.5
    min_active_units: int = 2
    active_unit_variance: float = 0.01  # Burda et al.'s active unit: Var_x(E_q[z_j]) above this
    jacobian_samples: int | None = 1000
    iw_samples: int = 1000  # k importance samples per image for test/nll_iw
    iw_images: int | None = None
    device: str | None = None  # where the battery runs; None: the device the run trained on
    gen_samples: int = 5000  # prior samples (and test images) the Fréchet distances compare: they move with it
    # … and below this many the stage is skipped: a Fréchet distance estimates two 128-d covariances, and from fewer
    # than ~4× that many images its bias swamps the differences between models (0 computes it at any size)
    gen_min_images: int = 500
    fid_inception: bool = True  # try torchmetrics' Inception FID (skipped with one line where it cannot run)
    classifier_epochs: int = 3  # the domain classifier of gen/fd_domain: epochs over the training split …
    classifier_min_steps: int = 600  # … or more, until this many steps (small datasets)
    classifier_batch_size: int = 256
    classifier_learning_rate: float = 1e-3
    classifier_seed: int = 0
    # anomaly detection (data.normal_classes): which scores to compute (evaluation/anomaly.py), the k of the code
    # k-NN distance, and the importance samples of the iw_nll score (every test image is scored)
    anomaly_scores: tuple[str, ...] = ANOMALY_SCORES
    anomaly_knn: int = 5
    anomaly_iw_samples: int = 100
    # the target false-positive rate of each score's threshold, set on the calibration split (evaluation/anomaly.py)
    anomaly_fpr: float = 0.01


def battery_noise_generator(settings: EvaluationSettings) -> torch.Generator:
    """The generator of the test images' fixed corruption for test/noisy_* (the report's examples use it too)."""
    return seeding.generator(settings.noise_seed, "eval_noise", 3)


def classifier_settings(settings: EvaluationSettings) -> ClassifierSettings:
    return ClassifierSettings(
        epochs=settings.classifier_epochs,
        min_steps=settings.classifier_min_steps,
        batch_size=settings.classifier_batch_size,
        learning_rate=settings.classifier_learning_rate,
        seed=settings.classifier_seed,
    )


def batches(images: Tensor, batch_size: int, device: torch.device) -> Iterator[Tensor]:
    """uint8 [N, C, H, W] → float batches in [0, 1] on ``device``."""
    for chunk in images.split(batch_size):
        yield chunk.to(device).float().div_(255)


@torch.no_grad()
def codes_of(model: AutoencoderBase, images: Tensor, settings: EvaluationSettings) -> Tensor:
    return torch.cat([model.encode(x) for x in batches(images, settings.batch_size, model.device)])


@torch.no_grad()
def reconstruction_metrics(
    model: AutoencoderBase, images: Tensor, noisy: Tensor | None, prefix: str, settings: EvaluationSettings
) -> dict[str, float]:
    """MSE, PSNR and SSIM of h(g(input)) against the clean images (input = noisy when given)."""
    # One process judges the whole test set: never gather from other ranks, even where a process group exists.
    local = {"sync_on_compute": False}
    metrics = {
        "mse": MeanSquaredError(**local),
        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean", **local),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0, **local),
    }
    metrics = {name: metric.to(model.device) for name, metric in metrics.items()}
    for start, clean in zip(
        range(0, len(images), settings.batch_size), batches(images, settings.batch_size, model.device)
    ):
        inputs = clean if noisy is None else noisy[start : start + len(clean)].to(model.device)
        reconstruction = model(inputs)
        for metric in metrics.values():
            metric.update(reconstruction, clean)
    return {f"test/{prefix}{name}": metric.compute().item() for name, metric in metrics.items()}


def standardise(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    """Both scaled by the training features' mean and std (features constant on train are centred, not scaled)."""
    mean, std = train.mean(0), standard_deviation(train)
    return (train - mean) / std, (test - mean) / std


def fit_logistic_regression(
    x: Tensor, labels: Tensor, num_classes: int, l2: float, steps: int
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression, full-batch L-BFGS: (weight, bias)."""
    with torch.enable_grad():
        weight = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
        bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, labels) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return weight.detach(), bias.detach()


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def linear_probe(
    train_codes: Tensor,
    train_labels: Tensor,
    test_codes: Tensor,
    test_labels: Tensor,
    steps: int = 200,
    l2_grid: tuple[float, ...] = EvaluationSettings.probe_l2_grid,
    seed: int = EvaluationSettings.probe_seed,
) -> tuple[float, float]:
    """(test accuracy, chosen L2) of logistic regression on standardised frozen codes. The L2 strength is chosen
    on a held-out fifth of the training codes (seeded split); the probe is then refit on all training codes with it
    and scored once on the test codes, which never take part in the choice."""
    train_x, test_x = standardise(train_codes, test_codes)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    order = torch.randperm(len(train_x), generator=seeding.generator(seed, "probe_split")).to(train_x.device)
    held_out, fit_part = order[: len(order) // 5], order[len(order) // 5 :]
    scores = {}
    for l2 in l2_grid:
        weight, bias = fit_logistic_regression(train_x[fit_part], train_labels[fit_part], num_classes, l2, steps)
        scores[l2] = accuracy(train_x[held_out] @ weight + bias, train_labels[held_out])
    chosen = max(l2_grid, key=lambda l2: (scores[l2], l2))  # ties: the stronger regularisation
    weight, bias = fit_logistic_regression(train_x, train_labels, num_classes, chosen, steps)
    return accuracy(test_x @ weight + bias, test_labels), chosen


def knn_accuracy(
    train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor, k: int = 5
) -> float:
    """Accuracy of a k-nearest-neighbour vote (Euclidean, on standardised codes; ties go to the smallest label)."""
    train_x, test_x = standardise(train_codes, test_codes)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    correct = 0
    for start in range(0, len(test_x), 1000):
        distances = torch.cdist(test_x[start : start + 1000], train_x)
        neighbours = train_labels[distances.topk(k, dim=1, largest=False).indices]  # [chunk, k]
        votes = F.one_hot(neighbours, num_classes).sum(1)
        correct += (votes.argmax(1) == test_labels[start : start + 1000]).sum().item()
    return correct / len(test_x)


def code_sparsity(
    codes: Tensor,
    sigmoid_codes: bool,
    threshold: float = EvaluationSettings.sparsity_threshold,
    sigmoid_threshold: float = EvaluationSettings.sigmoid_sparsity_threshold,
) -> float:
    """Fraction of code entries that are inactive: |z| < ``threshold`` (sigmoid codes: z < ``sigmoid_threshold``)."""
    inactive = codes < sigmoid_threshold if sigmoid_codes else codes.abs() < threshold
    return inactive.float().mean().item()


def dead_units(
    codes: Tensor, sigmoid_codes: bool, settings: EvaluationSettings | None = None, target: float | None = None
) -> tuple[int, int]:
    """(dead units, units) of test ``codes`` [N, units]: a unit is dead when no test image activates it or it is
    constant over them — each judged against the code's own scale, so a code that an L1 or contractive penalty
    shrinks while its decoder scales up is not called dead: never active is |z| below ``sparsity_threshold`` × the
    largest |z| of the whole code (sigmoid codes: never reaching the target activation ρ, ``target``, where the
    model has one, else ``sigmoid_sparsity_threshold``); constant is a spread at most ``dead_unit_std`` × the units'
    mean spread (every unit, where none varies)."""
    settings = settings or EvaluationSettings()
    codes = codes.float()
    if sigmoid_codes:
        never_active = ~(codes >= (target or settings.sigmoid_sparsity_threshold)).any(0)
    else:
        magnitude = codes.abs()
        never_active = ~(magnitude >= settings.sparsity_threshold * magnitude.max()).any(0) | (magnitude.max() == 0)
    spread = codes.std(0)
    constant = spread <= settings.dead_unit_std * spread.mean()
    return int((never_active | constant).sum()), codes.shape[1]


def effective_dims(codes: Tensor) -> float:
    """Participation ratio (Σλ)² / Σλ² of the eigenvalues λ of the units' correlation matrix over the test codes:
    the number of units' worth of independent variation — 1 when every unit moves with the others, the number of
    units when all are uncorrelated. Constant units count as uncorrelated noise-free directions: none."""
    codes = codes.double()
    spread = codes.std(0)
    varying = codes[:, spread > 0]
    if varying.shape[1] < 2:
        return float(varying.shape[1])
    standardised = (varying - varying.mean(0)) / varying.std(0)
    eigenvalues = torch.linalg.eigvalsh(standardised.T @ standardised / (len(codes) - 1)).clamp_min(0)
    return float(eigenvalues.sum() ** 2 / eigenvalues.pow(2).sum())


def collapse_reason(metrics: dict[str, float], settings: EvaluationSettings | None = None) -> str | None:
    """Why a run's code is degenerate, from its battery metrics (``code/dead_units``, ``code/units``, and for a
    model with a posterior ``test/active_units``), or None when it is not."""
    settings = settings or EvaluationSettings()
    if "test/active_units" in metrics:  # a posterior: unused units are its normal pruning; too few is collapse
        active = int(metrics["test/active_units"])
        if active < min(settings.min_active_units, int(metrics["code/units"])):  # a 1-unit code needs its one
            return (
                f"posterior collapse: {active} of {int(metrics['code/units'])} units active "
                f"(Var_x E[z|x] > {settings.active_unit_variance:g}; the floor is {settings.min_active_units})"
            )
        return None
    dead, units = int(metrics["code/dead_units"]), int(metrics["code/units"])
    if units and dead / units >= settings.max_dead_fraction:
        return f"{dead} of {units} units dead (never active or constant on the test images)"
    return None


@torch.no_grad()
def codebook_metrics(model: HasCodebook, images: Tensor, settings: EvaluationSettings) -> dict[str, float]:
    """Over the test images' codes: the share of the K codebook entries used at least once, and the perplexity
    exp(H) of the entries' frequencies (K when all are used equally, 1 when one entry takes every piece)."""
    indices = torch.cat([model.code_indices(x).flatten() for x in batches(images, settings.batch_size, model.device)])
    frequencies = torch.bincount(indices, minlength=len(model.codebook)).double() / len(indices)
    used = frequencies[frequencies > 0]
    return {
        "test/codebook_usage": float((frequencies > 0).double().mean()),
        "test/codebook_perplexity": float(torch.exp(-(used * used.log()).sum())),
    }


def mean_jacobian_frobenius(model: AutoencoderBase, images: Tensor, settings: EvaluationSettings) -> float:
    norms = []
    for x in batches(images[: settings.jacobian_samples], 100, model.device):
        with torch.enable_grad():
            norms.append(jacobian_frobenius_exact(model.encode, x).detach().sqrt())
    return torch.cat(norms).mean().item()


@torch.no_grad()
def vae_metrics(
    model: HasPosterior, images: Tensor, settings: EvaluationSettings, progress: Progress | None = None
) -> dict[str, float]:
    """ELBO and Burda et al.'s importance-weighted NLL estimate (nats per image) and active units.

    Computed on ``images`` as given — the test split as the data module prepared it, binarised or not by
    ``data.binarize`` — so the nats are of the data the model was trained and validated on.
    """
    elbos, nlls, means = [], [], []
    iw_images = images[: settings.iw_images]
    for x in batches(images, settings.batch_size, model.device):
        mu, logvar = model.posterior(x)
        means.append(mu)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        elbo = -model.negative_log_likelihood(model.decoder(z), x) - kl_to_standard_normal(mu, logvar)
        elbos.append(elbo)
    for x in batches(iw_images, max(1, settings.batch_size // 50), model.device):
        nlls.append(-importance_weighted_log_likelihood(model, x, settings.iw_samples))
        if progress is not None:
            progress(sum(len(n) for n in nlls), len(iw_images))
    active = torch.cat(means).var(dim=0) > settings.active_unit_variance
    return {
        "test/elbo": torch.cat(elbos).mean().item(),
        "test/nll_iw": torch.cat(nlls).mean().item(),
        "test/active_units": float(active.sum().item()),
    }


def has_labels(labels: Tensor) -> bool:
    """False for data without labels (label −1 throughout): the probes are then skipped, never failed."""
    return bool((labels >= 0).any())


def probe_metrics(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    settings: EvaluationSettings,
) -> dict[str, float]:
    """probe/accuracy (and the L2 it chose, probe/l2) and probe/knn_accuracy of these features."""
    device = train_features.device
    train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    linear, l2 = linear_probe(
        train_features,
        train_labels,
        test_features,
        test_labels,
        settings.probe_steps,
        settings.probe_l2_grid,
        settings.probe_seed,
    )
    knn = knn_accuracy(train_features, train_labels, test_features, test_labels, settings.knn_neighbours)
    return {"probe/accuracy": linear, "probe/l2": l2, "probe/knn_accuracy": knn}


def smallest_class(labels: Tensor) -> int:
    """The number of training images of the rarest class present."""
    counts = torch.bincount(labels[labels >= 0].long().cpu())
    return int(counts[counts > 0].min()) if len(counts) else 0


def pixel_baseline(
    train_images: Tensor, train_labels: Tensor, test_images: Tensor, test_labels: Tensor, settings: EvaluationSettings
) -> dict[str, float]:
    """The same probes on raw pixels: what the codes add (or lose) over the images themselves (nothing where the
    probes are skipped: a class with fewer than ``probe_min_per_class`` training images)."""
    if smallest_class(train_labels[: settings.probe_train_samples]) < settings.probe_min_per_class:
        return {}
    train_pixels = train_images[: settings.probe_train_samples].flatten(1).float() / 255
    return probe_metrics(
        train_pixels,
        train_labels[: settings.probe_train_samples],
        test_images.flatten(1).float() / 255,
        test_labels,
        settings,
    )


def evaluate(
    model: AutoencoderBase,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    settings: EvaluationSettings,
    classifier_cache: Path | None = None,
    test_is_anomaly: Tensor | None = None,
    anomaly_out: dict[str, Tensor] | None = None,
    test_masks: Tensor | None = None,
    test_factors: Tensor | None = None,
    stages: Stages | None = None,
    calibration_images: Tensor | None = None,
    calibration_out: dict[str, Tensor] | None = None,
    maps_out: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Every battery metric that applies to ``model`` (the VAE keys only for VAEs; the generative ones for models
        that sample, with the domain classifier cached in ``classifier_cache``; the anomaly keys where
        ``test_is_anomaly`` says which test images are anomalous — their per-image scores then go into
        ``anomaly_out`` — and the pixel AUROC where ``test_masks`` mark the defects; MIG and DCI where
        ``test_factors`` give the test images' generative factors); with ``calibration_images`` (normal images
        neither trained nor tested on) each score's threshold for ``settings.anomaly_fpr`` and the test split's
        rates at it, their scores into ``calibration_out`` (and, with masks, the pixel threshold; the test
        images' anomaly maps into ``maps_out``). Each stage is announced and timed by ``stages``
    (silent when None) into ``eval/<stage>_seconds``; ``eval/test_images``, ``eval/probe_train_samples``,
    ``eval/iw_images`` and ``eval/gen_samples`` record how many images the metrics actually used."""
    stages = stages or Stages(quiet=True)
    model.eval()
    results: dict[str, float] = {"eval/test_images": float(len(test_images))}
    with stages("reconstruction", f"reconstruction of {len(test_images)} clean and corrupted test images"):
        generator = battery_noise_generator(settings)
        noisy = torch.cat(
            [settings.noise(x, generator=generator) for x in batches(test_images, 1000, torch.device("cpu"))]
        )
        results |= reconstruction_metrics(model, test_images, None, "", settings)
        results |= reconstruction_metrics(model, test_images, noisy, "noisy_", settings)
    probe_images, probe_labels = (
        train_images[: settings.probe_train_samples],
        train_labels[: settings.probe_train_samples],
    )
    needs_probe_codes = has_labels(train_labels) or test_is_anomaly is not None
    with stages(
        "codes", "codes of the test" + (f" and {len(probe_images)} training images" if needs_probe_codes else " images")
    ):
        test_codes = codes_of(model, test_images, settings)
        probe_codes = codes_of(model, probe_images, settings) if needs_probe_codes else None
    # no probes on data without labels (the report says so), nor in anomaly detection (train: normal classes only),
    # nor where a class has too few training images to fit a probe on (recorded: the report says why)
    fewest = smallest_class(probe_labels) if has_labels(train_labels) and test_is_anomaly is None else None
    if fewest is not None and fewest < settings.probe_min_per_class:
        results["eval/probe_skipped_min_class"] = float(fewest)
    elif fewest is not None:
        with stages("probes", f"linear and {settings.knn_neighbours}-NN probes on {len(probe_images)} training codes"):
            results |= probe_metrics(probe_codes, probe_labels, test_codes, test_labels, settings)
        results["eval/probe_train_samples"] = float(len(probe_images))
    if test_is_anomaly is not None:
        with stages("anomaly", f"anomaly scores {list(settings.anomaly_scores)} of {len(test_images)} test images"):
            scores = anomaly_scores(
                model,
                probe_codes,
                test_images,
                tuple(settings.anomaly_scores),
                settings.anomaly_knn,
                settings.anomaly_iw_samples,
                settings.batch_size,
            )
            results |= anomaly_metrics(scores, test_is_anomaly)
            if calibration_images is not None and len(calibration_images):
                calibration = anomaly_scores(
                    model,
                    probe_codes,
                    calibration_images,
                    tuple(scores),
                    settings.anomaly_knn,
                    settings.anomaly_iw_samples,
                    settings.batch_size,
                )
                results |= calibrated_metrics(scores, calibration, test_is_anomaly, settings.anomaly_fpr)
                results["eval/calibration_images"] = float(len(calibration_images))
                if calibration_out is not None:
                    calibration_out.update(calibration)
            if test_masks is not None and "reconstruction" in scores:
                maps = model.anomaly_map(test_images, settings.batch_size).cpu()
                results[PIXEL_KEY] = pixel_auroc(maps, test_masks)
                results[AUPRO_KEY] = pixel_aupro(maps, test_masks)
                if calibration_images is not None and len(calibration_images):
                    calibration_maps = model.anomaly_map(calibration_images, settings.batch_size).cpu()
                    results |= pixel_threshold_metrics(maps, test_masks, calibration_maps, settings.anomaly_fpr)
                if maps_out is not None:
                    maps_out["maps"] = maps
        if anomaly_out is not None:
            anomaly_out.update(scores)
    if test_factors is not None:
        with stages("disentanglement", "MIG and DCI against the known factors"):
            results |= disentanglement_metrics(test_codes, test_factors)
    results["test/code_sparsity"] = code_sparsity(
        test_codes, model.sigmoid_codes, settings.sparsity_threshold, settings.sigmoid_sparsity_threshold
    )
    target = model.hparams.get("target_activation") if model.sigmoid_codes else None  # ρ of a KL-sparse code
    dead, units = dead_units(test_codes, model.sigmoid_codes, settings, target)
    results |= {"code/dead_units": float(dead), "code/units": float(units), "code/dead_fraction": dead / units}
    results["code/effective_dims"] = effective_dims(test_codes)
    jacobian_images = test_images[: settings.jacobian_samples]
    with stages("jacobian", f"encoder Jacobians of {len(jacobian_images)} test images"):
        results["test/jacobian_fro"] = mean_jacobian_frobenius(model, jacobian_images, settings)
    if isinstance(model, HasPosterior):
        iw_images = len(test_images[: settings.iw_images])
        what = f"ELBO, active units and importance-weighted NLL ({iw_images} images × {settings.iw_samples} samples)"
        with stages("likelihood", what, unit="images") as progress:
            results |= vae_metrics(model, test_images, settings, progress)
        results["eval/iw_images"] = float(iw_images)
    if isinstance(model, HasCodebook):
        with stages("codebook", "codebook usage"):
            results |= codebook_metrics(model, test_images, settings)
    # no generative metrics in anomaly detection: the domain classifier would know the normal classes only
    samples = min(settings.gen_samples, len(test_images))
    if isinstance(model, Samples) and classifier_cache is not None and test_is_anomaly is None:
        if samples < settings.gen_min_images:  # recorded, so the report says why there is no generative section
            results["eval/gen_skipped_images"] = float(samples)
        else:
            what = f"Fréchet distances of {samples} prior samples to {samples} test images"
            with stages("generative", what) as progress:
                results |= generative_metrics(
                    model, train_images, train_labels, test_images, test_labels, settings, classifier_cache, progress
                )
    results["code/collapsed"] = float(collapse_reason(results, settings) is not None)
    return results | stages.metrics()


@torch.no_grad()
def generative_metrics(
    model: Samples,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    settings: EvaluationSettings,
    classifier_cache: Path,
    progress: Progress | None = None,
) -> dict[str, float]:
    """gen/fd_domain (and gen/fid_inception where it can run) of ``gen_samples`` prior samples against as many
    test images; gen/classifier_accuracy is the domain classifier's test accuracy. Nothing without labels (the
    classifier needs them)."""
    if not has_labels(train_labels):
        return {}
    classifier, accuracy = domain_classifier(
        train_images, train_labels, test_images, test_labels, classifier_cache, classifier_settings(settings), progress
    )
    real = test_images[: settings.gen_samples].to(model.device).float() / 255
    fake = torch.cat([model.sample(len(chunk)) for chunk in real.split(settings.batch_size)])
    results = {
        "gen/fd_domain": frechet_distance(real, fake, classifier),
        "gen/classifier_accuracy": accuracy,
        "eval/gen_samples": float(len(real)),
    }
    if settings.fid_inception:
        fid = inception_fid(real, fake)
        if fid is not None:
            results["gen/fid_inception"] = fid
    return results
