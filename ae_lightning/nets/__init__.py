"""Encoder/decoder pairs by name. ``build_networks`` is the single place a variant gets its g and h from."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ae_lightning.errors import ConfigError
from ae_lightning.nets.conv import ConvDecoder, ConvEncoder
from ae_lightning.nets.mlp import MLPDecoder, MLPEncoder

# name -> (encoder class, decoder class, default hidden sizes: layer widths for mlp, channels for conv)
NETWORKS: dict[str, tuple[type[nn.Module], type[nn.Module], tuple[int, ...]]] = {
    "mlp": (MLPEncoder, MLPDecoder, (512, 256)),
    "conv": (ConvEncoder, ConvDecoder, (32, 64, 128)),
}


def resolve_network(network: str, input_shape: Sequence[int]) -> str:
    """``auto`` picks the MLP for small single-channel images (up to 32 × 32: MNIST-like) and the conv net for
    colour or larger images (CIFAR-10, 64 × 64 faces, your own)."""
    if network == "auto":
        return "mlp" if input_shape[0] == 1 and input_shape[1] * input_shape[2] <= 32 * 32 else "conv"
    if network not in NETWORKS:
        raise ConfigError(f"model.network={network!r} is not a known network; allowed: ['auto', *{sorted(NETWORKS)}]")
    return network


def build_networks(
    network: str,
    input_shape: Sequence[int],
    code_dim: int,
    latent_dim: int,
    hidden_dims: Sequence[int] | None,
    input_dropout: float = 0.0,
    hidden_dropout: float = 0.0,
) -> tuple[nn.Module, nn.Module]:
    """Encoder x → R^code_dim and decoder R^latent_dim → logits shaped like x (code_dim = 2·latent for a VAE)."""
    encoder_class, decoder_class, default_hidden = NETWORKS[resolve_network(network, input_shape)]
    hidden = tuple(default_hidden if hidden_dims is None else hidden_dims)
    if encoder_class is ConvEncoder and not hidden:
        raise ConfigError("model.hidden_dims=[] is not allowed for the conv network: it needs at least one stage")
    if encoder_class is ConvEncoder and min(input_shape[1:]) < 2 ** len(hidden):
        raise ConfigError(
            f"the conv network's {len(hidden)} stride-2 stages need images of at least {2 ** len(hidden)} pixels a "
            f"side; these are {input_shape[1]}×{input_shape[2]}: set data.image_size >= {2 ** len(hidden)}, fewer "
            "model.hidden_dims, or model.network mlp"
        )
    encoder = encoder_class(input_shape, hidden, code_dim, input_dropout=input_dropout, hidden_dropout=hidden_dropout)
    decoder = decoder_class(latent_dim, hidden, input_shape, hidden_dropout=hidden_dropout)
    return encoder, decoder
