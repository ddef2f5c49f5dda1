"""Disentanglement of a code against known generative factors (data with factor labels: ``data.name: shapes``).

- ``disentangle/mig``: the mutual information gap (Chen et al. 2018): for each factor vₖ, the gap between the two
  code units that share the most information with it, over H(vₖ); averaged over factors. Codes are discretised into
  ``bins`` equal-width bins per unit (as in Locatello et al.'s disentanglement_lib). 1: each factor lives in one unit
  alone; 0: no unit tells more about a factor than the next.
- ``disentangle/dci_disentanglement``, ``…/dci_completeness`` and ``…/dci_informativeness`` (Eastwood & Williams
  2018, computed as disentanglement_lib does): the importance of unit j for factor k is its total squared-error
  reduction in gradient-boosted regression stumps predicting the standardised factor from the codes (fit on half the
  test codes) — trees, as the authors and disentanglement_lib use, so a unit that encodes a factor non-monotonically
  (cos v) is found, which the absolute weights of a linear regression miss. Disentanglement = Σⱼ ρⱼ (1 − H_K(Pⱼ·)),
  ρⱼ unit j's share of all importance; completeness = Σₖ ρₖ (1 − H_J(P̃·ₖ)), ρₖ factor k's share (importance-
  weighted, as in disentanglement_lib, not a plain mean); informativeness = the mean over factors of the stumps'
  explained variance on the other half of the codes (1: each factor predicted exactly, 0: no better than its mean)
  — without it a random code's D and C mean nothing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DISENTANGLEMENT_KEYS = (
    "disentangle/mig",
    "disentangle/dci_disentanglement",
    "disentangle/dci_completeness",
    "disentangle/dci_informativeness",
)


def entropy(probabilities: Tensor, dim: int = -1) -> Tensor:
    """Σ −p log p (nats) along ``dim``; 0 log 0 = 0."""
    return -(probabilities * probabilities.clamp_min(1e-300).log()).sum(dim)


def discretise(codes: Tensor, bins: int) -> Tensor:
    """Each unit's values mapped to ``bins`` equal-width bins over its own range, [N, J] integers."""
    low, high = codes.min(0).values, codes.max(0).values
    scaled = (codes - low) / (high - low).clamp_min(1e-12)
    return (scaled * bins).long().clamp_(0, bins - 1)


def mutual_information(a: Tensor, b: Tensor) -> Tensor:
    """I(a; b) in nats of two discrete variables given as integer samples [N]."""
    joint = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= len(a)
    return entropy(joint.sum(1)) + entropy(joint.sum(0)) - entropy(joint.flatten())


def mig(codes: Tensor, factors: Tensor, bins: int = 20) -> float:
    """The mutual information gap of ``codes`` [N, J] against integer ``factors`` [N, K]."""
    if codes.shape[1] < 2:
        return math.nan  # a gap needs two units
    discrete = discretise(codes.double(), bins)
    gaps = []
    for k in range(factors.shape[1]):
        factor = factors[:, k] - factors[:, k].min()
        h = entropy(torch.bincount(factor).double() / len(factor))
        if h <= 0:
            continue  # a constant factor carries no information to find
        shared = torch.stack([mutual_information(discrete[:, j], factor) for j in range(codes.shape[1])])
        top = shared.topk(2).values
        gaps.append(float((top[0] - top[1]) / h))
    return sum(gaps) / len(gaps) if gaps else math.nan


def boosted_stumps(
    x: Tensor, y: Tensor, rounds: int = 100, learning_rate: float = 0.1, bins: int = 32
) -> tuple[Tensor, list[tuple[int, float, float, float]]]:
    """Gradient boosting of depth-1 regression trees on squared error: each round splits the one unit and
    threshold (among ``bins`` quantiles of each unit) that most reduce the residuals' squared error. Returns each
    unit's importance (its total reduction, [J]) and the stumps (unit, threshold, left value, right value)."""
    x, residual = x.double(), y.double() - y.double().mean()
    thresholds = torch.quantile(x, torch.linspace(0, 1, bins + 2, dtype=torch.float64)[1:-1], dim=0).T  # [J, B]
    below = x.T.unsqueeze(2) <= thresholds.unsqueeze(1)  # [J, N, B]: which side of each candidate split
    count_left = below.sum(1).double()  # [J, B]
    count_right = len(x) - count_left
    importance = torch.zeros(x.shape[1], dtype=torch.float64)
    stumps = []
    for _ in range(rounds):
        total = residual.sum()
        sum_left = (below * residual[None, :, None]).sum(1)  # [J, B]
        # squared-error reduction of a split: S_L²/n_L + S_R²/n_R − S²/n (no split where a side is empty)
        gain = sum_left**2 / count_left.clamp_min(1) + (total - sum_left) ** 2 / count_right.clamp_min(1)
        gain = torch.where((count_left > 0) & (count_right > 0), gain - total**2 / len(x), torch.zeros_like(gain))
        best = int(gain.argmax())
        unit, split = divmod(best, gain.shape[1])
        if gain[unit, split] <= 1e-12:
            break
        left = sum_left[unit, split] / count_left[unit, split]
        right = (total - sum_left[unit, split]) / count_right[unit, split]
        importance[unit] += gain[unit, split]
        side = below[unit, :, split]
        residual = residual - learning_rate * torch.where(side, left, right)
        stumps.append((unit, float(thresholds[unit, split]), learning_rate * float(left), learning_rate * float(right)))
    return importance, stumps


def predict_stumps(x: Tensor, offset: float, stumps: list[tuple[int, float, float, float]]) -> Tensor:
    prediction = torch.full((len(x),), offset, dtype=torch.float64)
    for unit, threshold, left, right in stumps:
        prediction += torch.where(x[:, unit].double() <= threshold, left, right)
    return prediction


def importance_matrix(codes: Tensor, factors: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Importances [J, K] of boosted stumps predicting each standardised factor from the codes, fit on a random
    half of them, and each factor's explained variance on the other half [K]."""
    v = factors.double()
    v = (v - v.mean(0)) / v.std(0).clamp_min(1e-12)
    order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))
    fit, held = order[: len(codes) // 2], order[len(codes) // 2 :]
    importances, explained = [], []
    for k in range(v.shape[1]):
        importance, stumps = boosted_stumps(codes[fit], v[fit, k])
        prediction = predict_stumps(codes[held], float(v[fit, k].mean()), stumps)
        error = (prediction - v[held, k]).pow(2).mean() / v[held, k].var().clamp_min(1e-12)
        importances.append(importance)
        explained.append((1 - error).clamp(0, 1))
    return torch.stack(importances, 1), torch.stack(explained)


def dci(codes: Tensor, factors: Tensor) -> tuple[float, float, float]:
    """(disentanglement, completeness, informativeness) from the boosted stumps' importances."""
    importance, explained = importance_matrix(codes, factors)
    units, count = importance.shape
    if importance.sum() <= 0 or count < 2 or units < 2:
        return math.nan, math.nan, float(explained.mean())
    per_unit = importance / importance.sum(1, keepdim=True).clamp_min(1e-300)
    unit_weight = importance.sum(1) / importance.sum()
    disentanglement = (unit_weight * (1 - entropy(per_unit, 1) / math.log(count))).sum()
    per_factor = importance / importance.sum(0, keepdim=True).clamp_min(1e-300)
    factor_weight = importance.sum(0) / importance.sum()
    completeness = (factor_weight * (1 - entropy(per_factor, 0) / math.log(units))).sum()
    return float(disentanglement), float(completeness), float(explained.mean())


def disentanglement_metrics(codes: Tensor, factors: Tensor) -> dict[str, float]:
    """The battery's disentanglement keys for test ``codes`` [N, J] and their images' ``factors`` [N, K]."""
    codes, factors = codes.detach().float().cpu(), factors.long().cpu()
    return dict(zip(DISENTANGLEMENT_KEYS, (mig(codes, factors), *dci(codes, factors))))
