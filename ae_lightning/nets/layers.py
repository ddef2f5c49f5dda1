"""The choices a network's hidden layers share: normalisation and activation by name."""

from __future__ import annotations

from torch import nn

NORMALIZATIONS = ("none", "batch", "group")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def norm_layer(kind: str, features: int, spatial: bool, affine: bool = True) -> list[nn.Module]:
    """[] for ``none``; batch norm over features (1-d) or channels (2-d); group norm with up to 8 groups (a divisor
    of ``features``). ``affine=False`` where a network must have no bias terms (Deep SVDD)."""
    if kind == "none":
        return []
    if kind == "batch":
        batch_norm = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        return [batch_norm(features, eps=1e-4, affine=affine)]
    groups = max(g for g in (8, 4, 2, 1) if features % g == 0)
    return [nn.GroupNorm(groups, features, eps=1e-4, affine=affine)]


def activation_layer(name: str) -> nn.Module:
    return ACTIVATIONS[name]()
