"""Distances shared by the variants' anomaly scores and the evaluation's baselines."""

from __future__ import annotations

import torch
from torch import Tensor


def knn_distance(train: Tensor, test: Tensor, k: int) -> Tensor:
    """Mean Euclidean distance of each test row to its k nearest train rows, both standardised by the train rows'
    mean and std (features constant on train stay 0), [N_test]."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    k = min(k, len(train))
    return torch.cat([torch.cdist(chunk, train).topk(k, largest=False).values.mean(1) for chunk in test.split(1000)])
