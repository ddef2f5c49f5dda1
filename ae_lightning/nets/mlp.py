"""Fully connected encoder g and decoder h (the default for 1×28×28 images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ae_lightning.nets.dropout import Dropout
from ae_lightning.nets.layers import activation_layer, norm_layer


def hidden_block(
    width: int, hidden: int, normalization: str, activation: str, dropout: float, bias: bool
) -> list[nn.Module]:
    """Linear → [norm] → activation → [Dropout(p)]: PyOD's AutoEncoder layer with ``normalization: batch``."""
    layers: list[nn.Module] = [nn.Linear(width, hidden, bias=bias and normalization == "none")]
    layers += norm_layer(normalization, hidden, spatial=False, affine=bias)
    layers.append(activation_layer(activation))
    if dropout > 0:
        layers.append(Dropout(dropout))
    return layers


class MLPEncoder(nn.Sequential):
    """x → Flatten → [Dropout(p_in)] → (Linear → [norm] → act → [Dropout(p)])* → Linear → code."""

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_dims: Sequence[int],
        out_dim: int,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        normalization: str = "none",
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(Dropout(input_dropout))
        width = math.prod(input_shape)
        for hidden in hidden_dims:
            layers += hidden_block(width, hidden, normalization, activation, hidden_dropout, bias)
            width = hidden
        layers.append(nn.Linear(width, out_dim, bias=bias))
        super().__init__(*layers)


class MLPDecoder(nn.Sequential):
    """code → (Linear → [norm] → act → [Dropout(p)])* → Linear → outputs of shape ``output_shape``."""

    def __init__(
        self,
        latent_dim: int,
        hidden_dims: Sequence[int],
        output_shape: Sequence[int],
        hidden_dropout: float = 0.0,
        normalization: str = "none",
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        width = latent_dim
        for hidden in reversed(hidden_dims):
            layers += hidden_block(width, hidden, normalization, activation, hidden_dropout, bias)
            width = hidden
        layers += [nn.Linear(width, math.prod(output_shape), bias=bias), nn.Unflatten(1, tuple(output_shape))]
        super().__init__(*layers)
