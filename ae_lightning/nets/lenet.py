"""The LeNet-type network of the one-class literature (Ruff et al. 2018, "Deep One-Class Classification").

Encoder: stages of 5×5 conv (padding 2) → norm → activation → 2×2 max-pool, then one linear layer to the code.
Ruff et al. use 8 and 4 channels on 28×28 images (MNIST, Fashion-MNIST) and 32, 64, 128 on 32×32 (CIFAR-10), batch
norm without affine parameters, leaky ReLU, and no bias anywhere (needed by Deep SVDD: a bias lets the network map
every image to the centre). The decoder mirrors the encoder: a linear layer, then per stage an upsampling to the
encoder's size at that stage and a 5×5 conv.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ae_lightning.nets.dropout import Dropout
from ae_lightning.nets.layers import activation_layer, norm_layer


def _pooled_sizes(size: int, stages: int) -> list[int]:
    sizes = [size]
    for _ in range(stages):
        sizes.append(sizes[-1] // 2)
    return sizes


class LeNetEncoder(nn.Sequential):
    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        out_dim: int,
        normalization: str = "batch",
        activation: str = "leaky_relu",
        bias: bool = True,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
    ) -> None:
        in_channels, height, width = input_shape
        conv_bias = bias and normalization == "none"
        layers: list[nn.Module] = [Dropout(input_dropout)] if input_dropout > 0 else []
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=conv_bias),
                *norm_layer(normalization, out_channels, spatial=True, affine=bias),
                activation_layer(activation),
                nn.MaxPool2d(2, 2),
            ]
            if hidden_dropout > 0:
                layers.append(Dropout(hidden_dropout))
            in_channels = out_channels
        heights, widths = _pooled_sizes(height, len(channels)), _pooled_sizes(width, len(channels))
        layers += [nn.Flatten(), nn.Linear(in_channels * heights[-1] * widths[-1], out_dim, bias=bias)]
        super().__init__(*layers)


class LeNetDecoder(nn.Sequential):
    def __init__(
        self,
        latent_dim: int,
        channels: Sequence[int],
        output_shape: Sequence[int],
        normalization: str = "batch",
        activation: str = "leaky_relu",
        bias: bool = True,
        hidden_dropout: float = 0.0,
    ) -> None:
        out_channels, height, width = output_shape
        heights, widths = _pooled_sizes(height, len(channels)), _pooled_sizes(width, len(channels))
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, channels[-1] * heights[-1] * widths[-1], bias=bias),
            nn.Unflatten(1, (channels[-1], heights[-1], widths[-1])),
            *norm_layer(normalization, channels[-1], spatial=True, affine=bias),
            activation_layer(activation),
        ]
        stage_channels = list(reversed(channels)) + [out_channels]
        for stage in range(len(channels)):
            last = stage == len(channels) - 1
            layers += [
                nn.Upsample(size=(heights[-2 - stage], widths[-2 - stage])),
                nn.Conv2d(stage_channels[stage], stage_channels[stage + 1], 5, padding=2, bias=bias and last),
            ]
            if not last:
                layers += [
                    *norm_layer(normalization, stage_channels[stage + 1], spatial=True, affine=bias),
                    activation_layer(activation),
                ]
                if hidden_dropout > 0:
                    layers.append(Dropout(hidden_dropout))
        super().__init__(*layers)
