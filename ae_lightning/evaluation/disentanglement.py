"""Disentanglement of a code against known generative factors (data with factor labels: ``data.name: shapes``).

- ``disentangle/mig``: the mutual information gap (Chen et al. 2018): for each factor vₖ, the gap between the two
  code units that share the most information with it, over H(vₖ); averaged over factors. Codes are discretised into
  ``bins`` equal-width bins per unit (as in Locatello et al.'s disentanglement_lib). 1: each factor lives in one unit
  alone; 0: no unit tells more about a factor than the next.
- ``disentangle/dci_disentanglement`` and ``…/dci_completeness`` (Eastwood & Williams 2018), with the importance of
  unit j for factor k taken as |wⱼₖ| of a ridge regression of the standardised factor on the standardised codes (the
  linear flavour of their Lasso regressor): disentanglement = Σⱼ ρⱼ (1 − H_K(Pⱼ·)), each unit's importance spread over
  the K factors; completeness = mean over factors of 1 − H_J(P̃·ₖ), each factor's spread over the J units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DISENTANGLEMENT_KEYS = ("disentangle/mig", "disentangle/dci_disentanglement", "disentangle/dci_completeness")


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


def importance_matrix(codes: Tensor, factors: Tensor, ridge: float = 1e-2) -> Tensor:
    """|weights| of a ridge regression of each standardised factor on the standardised codes, [J, K]."""
    z = codes.double()
    z = (z - z.mean(0)) / z.std(0).clamp_min(1e-12)
    v = factors.double()
    v = (v - v.mean(0)) / v.std(0).clamp_min(1e-12)
    gram = z.T @ z / len(z) + ridge * torch.eye(z.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, z.T @ v / len(z)).abs()


def dci(codes: Tensor, factors: Tensor) -> tuple[float, float]:
    """(disentanglement, completeness) from the importance matrix."""
    importance = importance_matrix(codes, factors)
    units, count = importance.shape
    if importance.sum() <= 0 or count < 2 or units < 2:
        return math.nan, math.nan
    per_unit = importance / importance.sum(1, keepdim=True).clamp_min(1e-300)
    weight = importance.sum(1) / importance.sum()
    disentanglement = (weight * (1 - entropy(per_unit, 1) / math.log(count))).sum()
    per_factor = importance / importance.sum(0, keepdim=True).clamp_min(1e-300)
    completeness = (1 - entropy(per_factor, 0) / math.log(units)).mean()
    return float(disentanglement), float(completeness)


def disentanglement_metrics(codes: Tensor, factors: Tensor) -> dict[str, float]:
    """The battery's disentanglement keys for test ``codes`` [N, J] and their images' ``factors`` [N, K]."""
    codes, factors = codes.detach().float().cpu(), factors.long().cpu()
    disentanglement, completeness = dci(codes, factors)
    return dict(zip(DISENTANGLEMENT_KEYS, (mig(codes, factors), disentanglement, completeness)))
