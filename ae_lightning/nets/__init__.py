"""Encoder/decoder pairs by name. ``build_networks`` is the single place a variant gets its g and h from.

Every encoder starts with the input standardisation (:class:`~ae_lightning.data.standardize.Standardize`, the
identity unless ``data.standardize`` sets statistics), so every variant reads standardised inputs alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ae_lightning.data.standardize import Standardize
from ae_lightning.errors import ConfigError
from ae_lightning.nets.conv import ConvDecoder, ConvEncoder
from ae_lightning.nets.layers import ACTIVATIONS, NORMALIZATIONS
from ae_lightning.nets.lenet import LeNetDecoder, LeNetEncoder
from ae_lightning.nets.mlp import MLPDecoder, MLPEncoder

# name -> (encoder class, decoder class, default hidden sizes: layer widths for mlp, channels for conv and lenet)
NETWORKS: dict[str, tuple[type[nn.Module], type[nn.Module], tuple[int, ...]]] = {
    "mlp": (MLPEncoder, MLPDecoder, (512, 256)),
    "conv": (ConvEncoder, ConvDecoder, (32, 64, 128)),
    "lenet": (LeNetEncoder, LeNetDecoder, (8, 4)),  # Ruff et al.'s MNIST net; (32, 64, 128) for colour images
}
# the network's own defaults where normalization / activation are left unset (None)
DEFAULT_LAYERS = {"mlp": ("none", "relu"), "conv": ("none", "relu"), "lenet": ("batch", "leaky_relu")}


def resolve_network(network: str, input_shape: Sequence[int]) -> str:
    """``auto`` picks the MLP for small single-channel images (up to 32 × 32: MNIST-like) and the conv net for
    colour or larger images (CIFAR-10, 64 × 64 faces, your own)."""
    if network == "auto":
        return "mlp" if input_shape[0] == 1 and input_shape[1] * input_shape[2] <= 32 * 32 else "conv"
    if network not in NETWORKS:
        raise ConfigError(f"model.network={network!r} is not a known network; allowed: ['auto', *{sorted(NETWORKS)}]")
    return network


def check_layers(normalization: str | None, activation: str | None, residual: bool, network: str) -> None:
    """One message for a layer option that is unknown or does not apply to the network."""
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ConfigError(f"model.normalization={normalization!r} is not known; allowed: {list(NORMALIZATIONS)}")
    if activation is not None and activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={activation!r} is not known; allowed: {sorted(ACTIVATIONS)}")
    if normalization == "group" and network == "mlp":
        raise ConfigError("model.normalization='group' applies to the conv and lenet networks; the mlp takes batch")
    if residual and network != "conv":
        raise ConfigError(f"model.residual=true applies to the conv network, not {network!r}")


def build_networks(
    network: str,
    input_shape: Sequence[int],
    code_dim: int,
    latent_dim: int,
    hidden_dims: Sequence[int] | None,
    input_dropout: float = 0.0,
    hidden_dropout: float = 0.0,
    normalization: str | None = None,
    activation: str | None = None,
    residual: bool = False,
    bias: bool = True,
) -> tuple[nn.Sequential, nn.Module]:
    """Encoder x → R^code_dim and decoder R^latent_dim → outputs shaped like x (code_dim = 2·latent for a VAE).
    ``bias=False``: no bias terms anywhere (normalisation without affine parameters), as Deep SVDD needs."""
    name = resolve_network(network, input_shape)
    check_layers(normalization, activation, residual, name)
    encoder_class, decoder_class, default_hidden = NETWORKS[name]
    if name == "lenet" and hidden_dims is None and (input_shape[0] != 1 or min(input_shape[1:]) > 28):
        default_hidden = (32, 64, 128)
    hidden = tuple(default_hidden if hidden_dims is None else hidden_dims)
    if name != "mlp" and not hidden:
        raise ConfigError(f"model.hidden_dims=[] is not allowed for the {name} network: it needs at least one stage")
    if name != "mlp" and min(input_shape[1:]) < 2 ** len(hidden):
        raise ConfigError(
            f"the {name} network's {len(hidden)} stages each halve the image and need images of at least "
            f"{2 ** len(hidden)} pixels a side; these are {input_shape[1]}×{input_shape[2]}: set data.image_size "
            f">= {2 ** len(hidden)}, fewer model.hidden_dims, or model.network mlp"
        )
    default_norm, default_activation = DEFAULT_LAYERS[name]
    layers = {
        "normalization": default_norm if normalization is None else normalization,
        "activation": default_activation if activation is None else activation,
        "bias": bias,
    }
    if name == "conv":
        layers["residual"] = residual
    encoder = encoder_class(
        input_shape, hidden, code_dim, input_dropout=input_dropout, hidden_dropout=hidden_dropout, **layers
    )
    decoder = decoder_class(latent_dim, hidden, input_shape, hidden_dropout=hidden_dropout, **layers)
    encoder.insert(0, Standardize(input_shape))
    return encoder, decoder
