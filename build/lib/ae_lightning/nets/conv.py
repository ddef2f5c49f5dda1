"""Convolutional encoder g and decoder h (the default for 3×32×32 images).

Each encoder stage halves the spatial size (3×3 conv, stride 2, padding 1); the decoder mirrors it with transposed
convolutions whose ``output_padding`` is chosen so every stage returns exactly the encoder's size (28→14→7→4 and
back to 28, or 32→16→8→4 and back to 32).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ae_lightning.nets.dropout import Dropout


def _stage_sizes(size: int, stages: int) -> list[int]:
    sizes = [size]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)  # (s + 2·1 − 3) // 2 + 1
    return sizes


class ConvEncoder(nn.Sequential):
    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        out_dim: int,
        hidden_dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        in_channels, height, width = input_shape
        layers: list[nn.Module] = [Dropout(input_dropout)] if input_dropout > 0 else []
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.ReLU()]
            if hidden_dropout > 0:
                layers.append(Dropout(hidden_dropout))
            in_channels = out_channels
        heights, widths = _stage_sizes(height, len(channels)), _stage_sizes(width, len(channels))
        layers += [nn.Flatten(), nn.Linear(in_channels * heights[-1] * widths[-1], out_dim)]
        super().__init__(*layers)


class ConvDecoder(nn.Sequential):
    def __init__(
        self, latent_dim: int, channels: Sequence[int], output_shape: Sequence[int], hidden_dropout: float = 0.0
    ) -> None:
        out_channels, height, width = output_shape
        heights, widths = _stage_sizes(height, len(channels)), _stage_sizes(width, len(channels))
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, channels[-1] * heights[-1] * widths[-1]),
            nn.Unflatten(1, (channels[-1], heights[-1], widths[-1])),
            nn.ReLU(),
        ]
        stage_channels = list(reversed(channels)) + [out_channels]
        for stage in range(len(channels)):
            size_in, size_out = (heights[-1 - stage], widths[-1 - stage]), (heights[-2 - stage], widths[-2 - stage])
            padding = tuple(o - (2 * i - 1) for i, o in zip(size_in, size_out))
            layers.append(
                nn.ConvTranspose2d(
                    stage_channels[stage], stage_channels[stage + 1], 3, stride=2, padding=1, output_padding=padding
                )
            )
            if stage < len(channels) - 1:
                layers.append(nn.ReLU())
                if hidden_dropout > 0:
                    layers.append(Dropout(hidden_dropout))
        super().__init__(*layers)
