"""Fully connected encoder g and decoder h (the default for 1×28×28 images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ae_lightning.nets.dropout import Dropout


class MLPEncoder(nn.Sequential):
    """x → Flatten → [Dropout(p_in)] → (Linear → ReLU → [Dropout(p)])* → Linear → code."""

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_dims: Sequence[int],
        out_dim: int,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(Dropout(input_dropout))
        width = math.prod(input_shape)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if hidden_dropout > 0:
                layers.append(Dropout(hidden_dropout))
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


class MLPDecoder(nn.Sequential):
    """code → (Linear → ReLU → [Dropout(p)])* → Linear → logits of shape ``output_shape``."""

    def __init__(
        self, latent_dim: int, hidden_dims: Sequence[int], output_shape: Sequence[int], hidden_dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = []
        width = latent_dim
        for hidden in reversed(hidden_dims):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if hidden_dropout > 0:
                layers.append(Dropout(hidden_dropout))
            width = hidden
        layers += [nn.Linear(width, math.prod(output_shape)), nn.Unflatten(1, tuple(output_shape))]
        super().__init__(*layers)
