"""Distances shared by the variants' anomaly scores and the evaluation's baselines."""

from __future__ import annotations

import torch
from torch import Tensor


def standard_deviation(train: Tensor) -> Tensor:
    """Per-feature standard deviation of ``train`` for standardising, 1 where the feature is constant on train."""
    std = train.std(0)
    return torch.where(std < 1e-6, torch.ones_like(std), std)


def knn_distance(train: Tensor, test: Tensor, k: int) -> Tensor:
    """Mean Euclidean distance of each test row to its k nearest train rows, both standardised by the train rows'
    mean and std (a feature constant on train is centred, not scaled: a test value there counts as it is, not
    multiplied by a million), [N_test]."""
    mean, std = train.mean(0), standard_deviation(train)
    train, test = (train - mean) / std, (test - mean) / std
    k = min(k, len(train))
    return torch.cat([torch.cdist(chunk, train).topk(k, largest=False).values.mean(1) for chunk in test.split(1000)])
