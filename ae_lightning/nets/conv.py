"""Convolutional encoder g and decoder h (the default for colour or larger images).

Each encoder stage halves the spatial size (3×3 conv, stride 2, padding 1) → [norm] → activation, optionally
followed by a residual block (pre-activation, He et al. 2016: x + conv(act(norm(conv(act(norm(x))))))); the decoder
mirrors it with transposed convolutions whose ``output_padding`` is chosen so every stage returns exactly the
encoder's size (28→14→7→4 and back to 28, or 32→16→8→4 and back to 32). ``normalization`` is ``none`` (the plain
net), ``batch`` or ``group``; ``activation`` ``relu``, ``leaky_relu``, ``gelu`` or ``silu``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ae_lightning.nets.dropout import Dropout
from ae_lightning.nets.layers import activation_layer, norm_layer


def _stage_sizes(size: int, stages: int) -> list[int]:
    sizes = [size]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)  # (s + 2·1 − 3) // 2 + 1
    return sizes


class ResidualBlock(nn.Module):
    """x + F(x), F = (norm → act → 3×3 conv) twice, the spatial size and channels kept."""

    def __init__(self, channels: int, normalization: str, activation: str, bias: bool = True) -> None:
        super().__init__()
        conv_bias = bias and normalization == "none"
        self.body = nn.Sequential(
            *norm_layer(normalization, channels, spatial=True, affine=bias),
            activation_layer(activation),
            nn.Conv2d(channels, channels, 3, padding=1, bias=conv_bias),
            *norm_layer(normalization, channels, spatial=True, affine=bias),
            activation_layer(activation),
            nn.Conv2d(channels, channels, 3, padding=1, bias=conv_bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _after_conv(
    channels: int, normalization: str, activation: str, residual: bool, dropout: float, bias: bool
) -> list[nn.Module]:
    layers = [*norm_layer(normalization, channels, spatial=True, affine=bias), activation_layer(activation)]
    if residual:
        layers.append(ResidualBlock(channels, normalization, activation, bias))
    if dropout > 0:
        layers.append(Dropout(dropout))
    return layers


class ConvEncoder(nn.Sequential):
    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        out_dim: int,
        hidden_dropout: float = 0.0,
        input_dropout: float = 0.0,
        normalization: str = "none",
        activation: str = "relu",
        residual: bool = False,
        bias: bool = True,
    ) -> None:
        in_channels, height, width = input_shape
        layers: list[nn.Module] = [Dropout(input_dropout)] if input_dropout > 0 else []
        conv_bias = bias and normalization == "none"
        for out_channels in channels:
            layers.append(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=conv_bias))
            layers += _after_conv(out_channels, normalization, activation, residual, hidden_dropout, bias)
            in_channels = out_channels
        heights, widths = _stage_sizes(height, len(channels)), _stage_sizes(width, len(channels))
        layers += [nn.Flatten(), nn.Linear(in_channels * heights[-1] * widths[-1], out_dim, bias=bias)]
        super().__init__(*layers)


class ConvDecoder(nn.Sequential):
    def __init__(
        self,
        latent_dim: int,
        channels: Sequence[int],
        output_shape: Sequence[int],
        hidden_dropout: float = 0.0,
        normalization: str = "none",
        activation: str = "relu",
        residual: bool = False,
        bias: bool = True,
    ) -> None:
        out_channels, height, width = output_shape
        heights, widths = _stage_sizes(height, len(channels)), _stage_sizes(width, len(channels))
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, channels[-1] * heights[-1] * widths[-1], bias=bias),
            nn.Unflatten(1, (channels[-1], heights[-1], widths[-1])),
            *_after_conv(channels[-1], normalization, activation, False, 0.0, bias),
        ]
        stage_channels = list(reversed(channels)) + [out_channels]
        for stage in range(len(channels)):
            size_in, size_out = (heights[-1 - stage], widths[-1 - stage]), (heights[-2 - stage], widths[-2 - stage])
            padding = tuple(o - (2 * i - 1) for i, o in zip(size_in, size_out))
            last = stage == len(channels) - 1
            layers.append(
                nn.ConvTranspose2d(
                    stage_channels[stage],
                    stage_channels[stage + 1],
                    3,
                    stride=2,
                    padding=1,
                    output_padding=padding,
                    bias=bias and (last or normalization == "none"),
                )
            )
            if not last:
                layers += _after_conv(
                    stage_channels[stage + 1], normalization, activation, residual, hidden_dropout, bias
                )
        super().__init__(*layers)
