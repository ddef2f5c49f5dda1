"""The battery's probes on raw pixels: what a reader compares the codes' probe accuracies with.

Computed where the runs are made (``compare`` and ``tune``, before the report), once per content: the result is
cached beside the data under a hash of the very images and labels it was computed on and the probe settings, so a
second suite on the same data, or a re-run into another folder, reuses it, and changed data is computed again. The
suite's copy is ``OUT/pixel_baseline.json``; a failure is written there as ``{"error": …}`` and reported, never
swallowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ae_lightning.data import ImageDataModule
from ae_lightning.distances import knn_distance
from ae_lightning.evaluation.anomaly import detection_metrics
from ae_lightning.evaluation.battery import EvaluationSettings, has_labels, pixel_baseline
from ae_lightning.files import atomic_path

PROBE_SETTINGS = ("probe_train_samples", "probe_steps", "probe_l2_grid", "knn_neighbours", "probe_seed", "anomaly_knn")
PCA_COMPONENTS = 32  # the PCA baseline's components: the size of a default code


def anomaly_baselines(train_images, test_images, is_anomaly, knn: int) -> dict[str, float]:
    """Anomaly detection without learning, on the same split: the k-NN distance in pixel space and the
    reconstruction error of a PCA with as many components as a default code (fit on the normal training images)."""
    train = train_images.flatten(1).float() / 255
    test = test_images.flatten(1).float() / 255
    mean = train.mean(0)
    components = min(PCA_COMPONENTS, *train.shape)
    _, _, basis = torch.linalg.svd(train - mean, full_matrices=False)
    basis = basis[:components]  # [components, pixels]
    projected = (test - mean) @ basis.T @ basis + mean
    pca_error = (test - projected).pow(2).mean(1)
    results = {}
    for name, scores in (("pixel_knn", knn_distance(train, test, knn)), ("pca", pca_error)):
        results |= {
            f"anomaly/{name}/{metric}": value for metric, value in detection_metrics(scores, is_anomaly).items()
        }
    return results


def content_key(*tensors, settings: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def compute_pixel_baseline(data: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """The pixel-space probes of this data (``data``: the suite's data section), from the content cache or computed
    now; None for data without labels. Raises what goes wrong."""
    settings = EvaluationSettings(**{k: v for k, v in evaluation.items() if k in PROBE_SETTINGS})
    datamodule = ImageDataModule(**data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train, test = datamodule.splits["train"], datamodule.splits["test"]
    train = train._replace(images=datamodule.evaluated_train_images())
    if not has_labels(train.labels):
        return None  # (normal_classes needs labels: the data module has already said so)
    train_images = train.images[: settings.probe_train_samples]
    train_labels = train.labels[: settings.probe_train_samples]
    used = {key: getattr(settings, key) for key in PROBE_SETTINGS}
    used["normal_classes"] = datamodule.normal_classes
    used["probe_l2_grid"] = list(used["probe_l2_grid"])
    key = content_key(train_images, train_labels, test.images, test.labels, settings=used)
    root = Path(datamodule.root).expanduser()
    cache = (root if root.is_dir() else root.parent) / ".ae_lightning_cache" / f"pixel-baseline-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    if datamodule.test_is_anomaly is not None:  # anomaly detection: no class probes (train holds normal classes only)
        baseline = anomaly_baselines(train_images, test.images, datamodule.test_is_anomaly, settings.anomaly_knn)
    else:
        baseline = pixel_baseline(train_images, train_labels, test.images, test.labels, settings)
    try:
        with atomic_path(cache) as partial:
            partial.write_text(json.dumps(baseline, indent=2))
    except OSError:
        pass  # a read-only data folder: computed again next time (the suite's own copy is still written)
    return baseline


def write_pixel_baseline(out: Path, suite: dict[str, Any]) -> dict[str, Any] | None:
    """``OUT/pixel_baseline.json``: the baseline, or ``{"error": …}`` when it could not be computed (printed too)."""
    try:
        if suite.get("one_class"):  # the protocol: each class's baseline, and their mean over the classes
            per_class = {
                str(c): compute_pixel_baseline({**suite["data"], "normal_classes": [c]}, suite["evaluation"])
                for c in suite["one_class"]
            }
            keys = sorted(set.intersection(*(set(b) for b in per_class.values())))
            baseline = {k: sum(b[k] for b in per_class.values()) / len(per_class) for k in keys}
            baseline["per_class"] = per_class
        else:
            baseline = compute_pixel_baseline(suite["data"], suite["evaluation"])
    except Exception as err:
        baseline = {"error": f"{type(err).__name__}: {err}"}
        print(f"error: pixel-space probe baseline not computed: {baseline['error']}", flush=True)
    if baseline is not None:
        with atomic_path(out / "pixel_baseline.json") as partial:
            partial.write_text(json.dumps(baseline, indent=2))
    return baseline
