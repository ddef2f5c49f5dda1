"""Anomaly detection: how well each variant's scores tell the anomalous test images from the normal ones.

The data module holds the protocol (``data.normal_classes``: train and validation only normal images, the test split
all of them, ``test_is_anomaly`` saying which are not normal); this module scores images and measures detection.

Scores, higher = more anomalous, through the capability contract (never a class check):

- ``reconstruction``: per-image mean squared error of h(g(x)) against x — every variant (the DAE on clean inputs);
- ``elbo``: the negative ELBO, −log p(x|z) + KL(q(z|x) ‖ p(z)) with one z ~ q(z|x) — models with a posterior;
- ``iw_nll``: the importance-weighted NLL with ``anomaly_iw_samples`` draws (Burda et al.) — models with a posterior;
- ``center_distance``: Deep SVDD's squared distance of the code to its centre — one-class models;
- ``knn_code``: the mean Euclidean distance of a test code to its ``anomaly_knn`` nearest training codes, codes
  standardised by the training codes — every variant.

Metrics per score, torchmetrics where it has them: ``anomaly/<score>/auroc`` (P(an anomalous image scores above a
normal one)), ``…/auprc`` (average precision with the anomalies as positives) and ``…/fpr_at_95tpr`` (the share of
normal images flagged at the threshold that catches 95 % of anomalies; lower is better). With defect masks (MVTec
AD's ``ground_truth``), ``anomaly/reconstruction/pixel_auroc``: the AUROC of the per-pixel reconstruction error
(``model.anomaly_map``) against the masks, over every pixel of every test image, as MVTec AD and anomalib report it,
and ``anomaly/reconstruction/pixel_aupro``: the area under the per-region overlap (PRO) curve up to a pixel
false-positive rate of 30 %, divided by 0.3 (Bergmann et al. 2021, "The MVTec AD dataset"; anomalib's AUPRO): each
connected defect region (8-connected) counts the same whatever its size, so a large defect cannot hide missed small
ones.

Thresholds that decide, set on normal images only: where the data holds a calibration split (normal validation
images never trained on, never used to choose a checkpoint; ``data.calibration_size``), each score's threshold is
the conformal quantile of the calibration scores for the target false-positive rate α (``evaluation.anomaly_fpr``):
the ⌈(n + 1)(1 − α)⌉-th smallest of n, so that a new normal image scores above it with probability at most α
whatever the scores' distribution (Vovk et al. 2005; Angelopoulos & Bates 2021, "A gentle introduction to conformal
prediction"). With too few calibration images for α (n < 1/α − 1) it is the largest, which promises 1/(n + 1). At
that threshold, on the test split: ``anomaly/<score>/at_threshold/fpr`` (the realised false-positive rate, to hold
against α), ``…/tpr`` (recall) and ``…/precision``; ``anomaly/<score>/threshold`` is the threshold itself. No test
label ever sets a threshold.
"""

from __future__ import annotations

import math

import scipy.stats
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_average_precision, binary_roc

from ae_lightning.variants.base import ANOMALY_SCORES, POSTERIOR_SCORES, HasCenter, HasPosterior

SCORES = ANOMALY_SCORES

DETECTION_METRICS = ("auroc", "auprc", "fpr_at_95tpr")
# at the threshold calibrated on normal images; the realised FPR is held against its target, so it is not ranked
THRESHOLD_METRICS = ("at_threshold/fpr", "at_threshold/tpr", "at_threshold/precision")
PIXEL_KEY = "anomaly/reconstruction/pixel_auroc"  # with defect masks (MVTec AD): per-pixel reconstruction error
AUPRO_KEY = "anomaly/reconstruction/pixel_aupro"  # … and its per-region overlap up to 30 % FPR
AUPRO_FPR_LIMIT = 0.3
ANOMALY_KEYS = (
    *(f"anomaly/{score}/{metric}" for score in SCORES for metric in DETECTION_METRICS + THRESHOLD_METRICS),
    PIXEL_KEY,
    AUPRO_KEY,
)
HIGHER_IS_BETTER = {
    key for key in ANOMALY_KEYS if not key.endswith("fpr_at_95tpr") and not key.endswith("at_threshold/fpr")
}
LOWER_IS_BETTER = {key for key in ANOMALY_KEYS if key.endswith("fpr_at_95tpr")}


def applicable_scores(model, wanted: tuple[str, ...]) -> list[str]:
    """The ``wanted`` scores this model can give (posterior scores only for models with a posterior, the centre
    distance only for one-class models)."""
    return [
        score
        for score in wanted
        if (score not in POSTERIOR_SCORES or isinstance(model, HasPosterior))
        and (score != "center_distance" or isinstance(model, HasCenter))
    ]


def as_probabilities(scores: Tensor) -> Tensor:
    """Scores mapped into [0, 1] by their rank, ties kept: torchmetrics reads values outside [0, 1] as logits and
    squashes them with a sigmoid, which turns large scores (nats, distances) into ties at 1.0."""
    values, inverse = torch.unique(scores.double().cpu(), return_inverse=True)
    return inverse.double().div_(max(1, len(values) - 1))


def auroc(scores: Tensor, is_anomaly: Tensor) -> float:
    """Area under the ROC curve as the Mann–Whitney statistic: the chance that an anomaly outscores a normal item,
    ties counting half, from mid-ranks in float64. Exact at any size: torchmetrics' curve is accumulated in float32,
    which reads above 1 (1 + 2⁻²³) on a perfectly separated set of millions of pixels."""
    positive = is_anomaly.bool().cpu().numpy()
    ranks = scipy.stats.rankdata(scores.double().cpu().numpy())
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def fpr_at_tpr(scores: Tensor, is_anomaly: Tensor, tpr_level: float = 0.95) -> float:
    """The false positive rate at the highest threshold whose true positive rate reaches ``tpr_level`` (the fewest
    normal images flagged while catching that share of anomalies); NaN without both kinds of images."""
    if is_anomaly.all() or not is_anomaly.any():
        return math.nan
    fpr, tpr, _ = binary_roc(as_probabilities(scores), is_anomaly.long().cpu())
    return float(fpr[tpr >= tpr_level].min())


def detection_metrics(scores: Tensor, is_anomaly: Tensor) -> dict[str, float]:
    """AUROC, AUPRC (anomalies positive) and FPR at 95 % TPR of ``scores`` (higher = more anomalous), all from the
    scores' ranks: an infinite score (an overflowed error) ranks as the most (+inf) or least (−inf) anomalous, as
    it is. NaN for all three where a score is NaN (a diverged model: no order) or only one kind of image is there."""
    if torch.isnan(scores).any() or is_anomaly.all() or not is_anomaly.any():
        return dict.fromkeys(DETECTION_METRICS, math.nan)
    scores, target = as_probabilities(scores), is_anomaly.long().cpu()
    return {
        "auroc": auroc(scores, target),
        "auprc": float(binary_average_precision(scores, target)),
        "fpr_at_95tpr": fpr_at_tpr(scores, target),  # (a rank transform again: it keeps the order)
    }


def anomaly_scores(
    model,
    train_codes: Tensor,
    test_images: Tensor,
    wanted: tuple[str, ...],
    knn: int,
    iw_samples: int,
    batch_size: int = 500,
) -> dict[str, Tensor]:
    """Every applicable wanted score of every test image (uint8 images; codes of the training images given), each
    from the model's own ``anomaly_score``."""
    return {
        score: model.anomaly_score(
            test_images, score, reference_codes=train_codes, k=knn, iw_samples=iw_samples, batch_size=batch_size
        ).cpu()
        for score in applicable_scores(model, wanted)
    }


def anomaly_metrics(scores: dict[str, Tensor], is_anomaly: Tensor) -> dict[str, float]:
    """``anomaly/<score>/<metric>`` for every score."""
    return {
        f"anomaly/{score}/{name}": value
        for score, values in scores.items()
        for name, value in detection_metrics(values, is_anomaly).items()
    }


def pixel_auroc(maps: Tensor, masks: Tensor) -> float:
    """AUROC of per-pixel scores ``maps`` [N, H, W] against defect ``masks`` (bool, same shape), all pixels pooled;
    NaN where a map is not finite or the masks hold no defect pixel."""
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {list(maps.shape)} and masks {list(masks.shape)} differ in shape")
    if not torch.isfinite(maps).all() or not masks.any() or masks.all():
        return math.nan
    return auroc(maps.flatten(), masks.flatten())


def calibrated_threshold(calibration_scores: Tensor, fpr: float) -> tuple[float, float]:
    """(threshold, promised false-positive rate) from the scores of normal calibration images: the
    ⌈(n + 1)(1 − fpr)⌉-th smallest of the n scores (the largest where n is too small for ``fpr``); an image is flagged
    when its score is above it. A new normal image exchangeable with the calibration images is flagged with
    probability at most the promised rate, 1 − rank / (n + 1) ≤ ``fpr`` where n ≥ 1/fpr − 1. NaN without finite
    calibration scores."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr={fpr} must be in (0, 1)")
    scores = calibration_scores.double().flatten().sort().values
    if not len(scores) or not torch.isfinite(scores).all():
        return math.nan, math.nan
    count = len(scores)
    rank = min(count, math.ceil((count + 1) * (1 - fpr) - 1e-9))  # (the epsilon: 100 × 0.99 is 99.00000000000001)
    return float(scores[rank - 1]), 1 - rank / (count + 1)


def threshold_metrics(scores: Tensor, is_anomaly: Tensor, threshold: float) -> dict[str, float]:
    """The realised false-positive rate, the true-positive rate (recall) and the precision of flagging the images
    whose ``scores`` are above ``threshold`` (NaN precision where nothing is flagged; all NaN without a threshold or
    without both kinds of image)."""
    is_anomaly = is_anomaly.bool().cpu()
    if math.isnan(threshold) or is_anomaly.all() or not is_anomaly.any():
        return dict.fromkeys(THRESHOLD_METRICS, math.nan)
    flagged = scores.double().cpu() > threshold  # a NaN score is never flagged, +inf always
    false_positives, true_positives = int((flagged & ~is_anomaly).sum()), int((flagged & is_anomaly).sum())
    return {
        "at_threshold/fpr": false_positives / int((~is_anomaly).sum()),
        "at_threshold/tpr": true_positives / int(is_anomaly.sum()),
        "at_threshold/precision": (
            true_positives / (true_positives + false_positives) if true_positives + false_positives else math.nan
        ),
    }


def calibrated_metrics(
    test_scores: dict[str, Tensor], calibration_scores: dict[str, Tensor], is_anomaly: Tensor, fpr: float
) -> dict[str, float]:
    """``anomaly/<score>/threshold`` and ``anomaly/<score>/at_threshold/*`` of every score, each threshold set on
    the calibration images' scores alone."""
    results = {}
    for score, values in test_scores.items():
        threshold, _ = calibrated_threshold(calibration_scores[score], fpr)
        results[f"anomaly/{score}/threshold"] = threshold
        results |= {f"anomaly/{score}/{k}": v for k, v in threshold_metrics(values, is_anomaly, threshold).items()}
    return results


def defect_regions(masks: Tensor) -> Tensor:
    """Each connected defect region of bool ``masks`` [N, H, W] numbered 1, 2, … across all images (8-connected,
    as MVTec AD's evaluation labels them), 0 outside every defect; int64 [N, H, W]."""
    import numpy as np
    import scipy.ndimage

    regions = np.zeros(masks.shape, dtype=np.int64)
    count = 0
    for index, mask in enumerate(masks.cpu().numpy()):
        labelled, found = scipy.ndimage.label(mask, structure=np.ones((3, 3)))
        regions[index] = np.where(labelled > 0, labelled + count, 0)
        count += found
    return torch.from_numpy(regions)


def pro_curve(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """(pixel FPR, PRO) at every distinct threshold of ``maps`` [N, H, W] against bool ``masks``, from the highest
    threshold down, starting at (0, 0): FPR is the share of defect-free pixels above the threshold, PRO the mean over
    defect regions of the share of the region's pixels above it. One sort of all pixels; float64."""
    regions = defect_regions(masks).flatten()
    scores = maps.flatten().double()
    order = torch.argsort(scores, descending=True)
    scores, regions = scores[order], regions[order]
    normal = regions == 0
    region_count = int(regions.max())
    region_sizes = torch.bincount(regions, minlength=region_count + 1).double()
    # a defect pixel adds 1 / (its region's size × the number of regions) to the PRO once it is above the threshold
    weight = torch.where(normal, torch.zeros_like(scores), 1 / (region_sizes[regions] * region_count))
    fpr = torch.cumsum(normal.double(), 0) / int(normal.sum())
    pro = torch.cumsum(weight, 0)
    last_of_tie = torch.ones_like(normal)
    last_of_tie[:-1] = scores[1:] != scores[:-1]  # a threshold takes every pixel of its value at once
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr[last_of_tie]]), torch.cat([zero, pro[last_of_tie]])


def area_up_to(fpr: Tensor, curve: Tensor, limit: float) -> float:
    """Trapezoidal area under ``curve`` over ``fpr`` (non-decreasing, from 0) up to ``limit``, the curve
    interpolated linearly at the limit, divided by ``limit``."""
    inside = fpr <= limit
    x, y = fpr[inside], curve[inside]
    if x[-1] < limit and len(x) < len(fpr):  # close the area at the limit, between the last point in and the next
        x0, x1, y0, y1 = fpr[len(x) - 1], fpr[len(x)], curve[len(x) - 1], curve[len(x)]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        x, y = torch.cat([x, x.new_tensor([limit])]), torch.cat([y, y.new_tensor([float(y_limit)])])
    return float(torch.trapezoid(y, x)) / limit


def pixel_aupro(maps: Tensor, masks: Tensor, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (see the module docstring); NaN where a map is not
    finite or the masks hold no defect or no defect-free pixel."""
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {list(maps.shape)} and masks {list(masks.shape)} differ in shape")
    if not torch.isfinite(maps).all() or not masks.any() or masks.all():
        return math.nan
    fpr, pro = pro_curve(maps, masks.bool())
    return area_up_to(fpr, pro, fpr_limit)


def pixel_threshold_metrics(maps: Tensor, masks: Tensor, calibration_maps: Tensor, fpr: float) -> dict[str, float]:
    """The pixel threshold — the calibration images' pixel scores' quantile for ``fpr``, set as the image thresholds
    are (pixels of one image are not independent, so this is a quantile, not a guarantee) — and, at it, the share of
    the test split's defect-free pixels flagged and of its defect pixels found."""
    threshold, _ = calibrated_threshold(calibration_maps.flatten(), fpr)
    flagged = maps > threshold
    masks = masks.bool()
    return {
        "anomaly/reconstruction/pixel_threshold": threshold,
        "anomaly/reconstruction/pixel_at_threshold/fpr": float(flagged[~masks].double().mean()),
        "anomaly/reconstruction/pixel_at_threshold/tpr": float(flagged[masks].double().mean()),
    }
