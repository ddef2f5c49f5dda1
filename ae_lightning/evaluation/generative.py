"""Generative quality of models that sample (the VAE): Fréchet distances between prior samples and test images.

- ``gen/fd_domain``: in the feature space (the 128-d penultimate layer) of a small classifier trained by
  ae-lightning on the same dataset's training split — trained once per dataset, cached under a hash of the training
  images and labels, its test accuracy written next to it (``classifier-<hash>.json``). Computed by torchmetrics'
  ``FrechetInceptionDistance`` with that classifier as its ``feature`` extractor.
- ``gen/fid_inception``: torchmetrics' Inception FID (images resized as torchmetrics does), when its weights can be
  had (``torch-fidelity`` installed, network or cache); otherwise skipped with one line — never a failure.

Both move with the number of samples (``EvaluationSettings.gen_samples``): compare them only at equal numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ae_lightning.files import atomic_path
from ae_lightning.messages import warn


class DomainClassifier(nn.Module):
    """Two conv stages and a 128-unit feature layer: ``features(x)`` is what the Fréchet distance compares."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class Features(nn.Module):
    """The classifier's feature layer as torchmetrics' ``feature`` extractor (float images in [0, 1])."""

    def __init__(self, classifier: DomainClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x.float())


def content_hash(images: Tensor, labels: Tensor) -> str:
    digest = hashlib.sha1(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ClassifierSettings:
    """How the domain classifier trains (``evaluation.classifier_*`` in a suite); part of its cache key."""

    epochs: int = 3
    min_steps: int = 600
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0


def train_classifier(
    train_images: Tensor,
    train_labels: Tensor,
    settings: ClassifierSettings = ClassifierSettings(),
    progress: Callable[..., None] | None = None,
) -> DomainClassifier:
    """Adam, cross-entropy, seeded shuffles: ``epochs`` epochs, or more until ``min_steps`` steps (small datasets).
    Its own generators, so the caller's random stream is untouched. ``progress(done, total, unit)``, if given, hears
    of every step."""
    steps_per_epoch = math.ceil(len(train_images) / settings.batch_size)
    total_steps = steps_per_epoch * max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        classifier = DomainClassifier(tuple(train_images.shape[1:]), int(train_labels.max()) + 1)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=settings.learning_rate)
    classifier.train()
    steps, epoch = 0, 0
    with torch.enable_grad():
        while epoch < settings.epochs or steps < settings.min_steps:
            for index in torch.randperm(len(train_images), generator=generator).split(settings.batch_size):
                loss = F.cross_entropy(classifier(train_images[index].float() / 255), train_labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                if progress is not None:
                    progress(steps, total_steps, "domain classifier steps")
            epoch += 1
    return classifier.eval()


@torch.no_grad()
def classifier_accuracy(classifier: DomainClassifier, images: Tensor, labels: Tensor) -> float:
    predictions = torch.cat([classifier(chunk.float() / 255).argmax(1) for chunk in images.split(1000)])
    return (predictions == labels).float().mean().item()


def domain_classifier(
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    cache_dir: Path,
    settings: ClassifierSettings = ClassifierSettings(),
    progress: Callable[..., None] | None = None,
) -> tuple[DomainClassifier, float]:
    """The dataset's classifier and its test accuracy: from the cache when these training images were seen before
    with these settings, else trained now and cached (state dict and ``.json`` with the accuracy, written
    atomically)."""
    key = content_hash(train_images, train_labels)
    if settings != ClassifierSettings():  # the defaults keep the key they always had
        key = hashlib.sha1(f"{key}{sorted(asdict(settings).items())}".encode()).hexdigest()[:16]
    weights, info = cache_dir / f"classifier-{key}.pt", cache_dir / f"classifier-{key}.json"
    classifier = DomainClassifier(tuple(train_images.shape[1:]), int(train_labels.max()) + 1)
    if weights.is_file() and info.is_file():
        classifier.load_state_dict(torch.load(weights, weights_only=True))
        return classifier.eval(), json.loads(info.read_text())["test_accuracy"]
    classifier = train_classifier(train_images, train_labels, settings, progress)
    accuracy = classifier_accuracy(classifier, test_images, test_labels)
    try:
        with atomic_path(weights) as partial:
            torch.save(classifier.state_dict(), partial)
        with atomic_path(info) as partial:
            partial.write_text(json.dumps({"test_accuracy": accuracy, "train_images": len(train_images)}, indent=2))
    except OSError as err:
        warn(f"domain classifier not cached in {cache_dir}: {err}")
    return classifier, accuracy


@torch.no_grad()
def frechet_distance(real: Tensor, fake: Tensor, classifier: DomainClassifier, batch_size: int = 500) -> float:
    """Fréchet distance between two sets of float images in [0, 1] in the classifier's feature space."""
    classifier = classifier.to(real.device)
    metric = FrechetInceptionDistance(
        feature=Features(classifier), input_img_size=tuple(real.shape[1:]), normalize=True, sync_on_compute=False
    ).to(real.device)
    for chunk in real.split(batch_size):
        metric.update(chunk, real=True)
    for chunk in fake.split(batch_size):
        metric.update(chunk, real=False)
    return metric.compute().item()


@torch.no_grad()
def inception_fid(real: Tensor, fake: Tensor, batch_size: int = 100) -> float | None:
    """torchmetrics' Inception FID of float images in [0, 1] (grey images repeated to RGB); None, with one line
    saying why, when its weights cannot be had."""
    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=True, sync_on_compute=False).to(real.device)
    except (ImportError, OSError) as err:
        # The weights cannot be had: torch-fidelity is not installed (ModuleNotFoundError, an ImportError) or its
        # download fails offline (URLError and socket errors are OSErrors). Anything else is a real error: raised.
        # Expected wherever torch-fidelity is not installed: a line in the run's log, not a warning on every run.
        print(
            f"gen/fid_inception skipped, its weights are not available: {type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}",
            flush=True,
        )
        return None
    for images, is_real in ((real, True), (fake, False)):
        for chunk in images.split(batch_size):
            metric.update(chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk, real=is_real)
    return metric.compute().item()
