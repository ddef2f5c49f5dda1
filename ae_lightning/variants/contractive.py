"""Contractive autoencoder (Rifai et al. 2011), with the Jacobian penalty for any encoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ae_lightning.data.batch import Batch
from ae_lightning.data.standardize import Standardize
from ae_lightning.errors import ConfigError
from ae_lightning.variants.base import AutoencoderBase, non_negative

Encoder = Callable[[Tensor], Tensor]


def jacobian_frobenius_closed_form(h: Tensor, weight: Tensor) -> Tensor:
    """‖J‖²_F per sample for h = σ(Wx + b): Σⱼ (hⱼ(1−hⱼ))² Σᵢ Wⱼᵢ²  (Rifai et al. 2011, eq. 6)."""
    return (h * (1 - h)).pow(2) @ weight.pow(2).sum(dim=1)


def jacobian_frobenius_exact(encode: Encoder, x: Tensor) -> Tensor:
    """‖J_g(x)‖²_F per sample, exactly: vmap over the code units (rows of J, by VJPs) or over the input
    directions (columns of J, by JVPs), whichever is fewer. Samples are independent, so one batched pass
    per basis vector gives every sample's row (column) at once."""
    z, vjp_fn = torch.func.vjp(encode, x)
    batch, code_dim, input_dim = x.shape[0], z.shape[1], x[0].numel()
    if code_dim <= input_dim:
        basis = torch.eye(code_dim, device=x.device, dtype=x.dtype).unsqueeze(1).expand(code_dim, batch, code_dim)
        (rows,) = torch.func.vmap(vjp_fn)(basis)  # [code_dim, B, *x.shape[1:]]
        return rows.pow(2).flatten(2).sum(dim=(0, 2))
    basis = torch.eye(input_dim, device=x.device, dtype=x.dtype).view(input_dim, 1, *x.shape[1:])
    basis = basis.expand(input_dim, *x.shape)
    cols = torch.func.vmap(lambda v: torch.func.jvp(encode, (x,), (v,))[1])(basis)  # [input_dim, B, code_dim]
    return cols.pow(2).sum(dim=(0, 2))


def jacobian_frobenius_estimate(encode: Encoder, x: Tensor) -> Tensor:
    """Unbiased one-projection estimate per sample: ‖J v‖², v ~ N(0, I), since E_v‖J v‖² = ‖J‖²_F
    (Hoffman, Roberts & Yaida 2019). One forward-mode pass (JVP) instead of one backward pass per code unit."""
    v = torch.randn_like(x)
    _, jv = torch.func.jvp(encode, (x,), (v,))
    return jv.pow(2).flatten(1).sum(dim=1)


FUSED_JVP_LAYERS = (Standardize, nn.Flatten, nn.Linear, nn.Conv2d, nn.ReLU, nn.Sigmoid)


def supports_fused_jvp(encoder: nn.Module) -> bool:
    return isinstance(encoder, nn.Sequential) and all(isinstance(m, FUSED_JVP_LAYERS) for m in encoder)


def encode_with_jvp(encoder: nn.Sequential, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(g(x), J_g(x)·v) in one pass through a Sequential of Flatten/Linear/Conv2d/ReLU/Sigmoid layers.

    The point and the tangent go through each linear map together, stacked into one matmul (the tangent takes the
    weight only, not the bias), and an activation scales the tangent by its derivative at the point: the cost of
    the penalty is a second, batched pass through g — not one backward pass per code unit, and not torch.func's
    separate forward-mode pass. Equal to ``torch.func.jvp(encoder, (x,), (v,))`` (tested).
    """
    point, tangent = x, v
    for layer in encoder:
        if isinstance(layer, Standardize):  # (x − m)/s: the tangent is divided by s
            point, tangent = layer(point), (tangent / layer.scale if layer.active else tangent)
        elif isinstance(layer, nn.Flatten):
            point, tangent = layer(point), layer(tangent)
        elif isinstance(layer, (nn.Linear, nn.Conv2d)):
            both = (
                layer._conv_forward(torch.cat([point, tangent]), layer.weight, None)
                if isinstance(layer, nn.Conv2d)
                else F.linear(torch.cat([point, tangent]), layer.weight)
            )
            point, tangent = both[: len(point)], both[len(point) :]
            if layer.bias is not None:
                point = point + (layer.bias if isinstance(layer, nn.Linear) else layer.bias.view(1, -1, 1, 1))
        elif isinstance(layer, nn.ReLU):
            active = point > 0
            point, tangent = point * active, tangent * active
        elif isinstance(layer, nn.Sigmoid):
            point = torch.sigmoid(point)
            tangent = tangent * point * (1 - point)
        else:
            raise TypeError(f"encode_with_jvp does not know {type(layer).__name__}; use torch.func.jvp")
    return point, tangent


class ContractiveAutoencoder(AutoencoderBase):
    """Contractive autoencoder:  L = dist(x, h(g(x))) + λ·‖∂g(x)/∂x‖²_F   (mean over the batch).

    ``jacobian`` says how ‖J‖²_F is computed:
    - ``closed_form``: the single sigmoid layer g(x) = σ(Wx + b) of Rifai et al. (``hidden_dims: []``);
    - ``exact``: any encoder, via torch.func (costly: one pass per code unit);
    - ``estimate``: any encoder, the unbiased random-projection estimate (cheap);
    - ``auto``: ``closed_form`` for the single sigmoid layer, ``estimate`` otherwise.
    With ``hidden_dims: []`` the encoder is Rifai's single layer, so its code is sigmoid.
    """

    def __init__(
        self,
        contractive_weight: float = 1e-4,
        jacobian: str = "auto",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.contractive_weight = non_negative("contractive_weight", contractive_weight)
        self.encoder, self.decoder = self.make_networks()
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.encoder.modules()):
            raise ConfigError(
                "ContractiveAutoencoder: ∂g(x)/∂x of one image is not defined through batch normalisation (it mixes "
                "the images of a batch): set model.normalization to none or group"
            )
        linear_layers = [m for m in self.encoder.modules() if isinstance(m, nn.Linear)]
        single_layer = len(linear_layers) == 1 and not any(isinstance(m, nn.Conv2d) for m in self.encoder.modules())
        if single_layer:
            self.encoder.append(nn.Sigmoid())
        self.sigmoid_codes = single_layer
        if jacobian == "auto":
            jacobian = "closed_form" if single_layer else "estimate"
        if jacobian not in ("closed_form", "exact", "estimate"):
            raise ConfigError(
                f"model.jacobian={jacobian!r} is not known; allowed: ['auto', 'closed_form', 'exact', 'estimate']"
            )
        if jacobian == "closed_form" and not single_layer:
            raise ConfigError(
                "model.jacobian='closed_form' holds for a single sigmoid layer only; set "
                "model.hidden_dims=[] with network mlp, or use jacobian 'exact' or 'estimate'"
            )
        self.jacobian = jacobian

    def code_and_jacobian_frobenius(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z = g(x), ‖∂g(x)/∂x‖²_F per sample) by the configured method, sharing the encoder pass between them
        where the method allows. Works under inference mode too (validation, test)."""
        if self.jacobian == "closed_form":
            z = self.encode(x)
            linear = self.encoder[-2]  # the single layer: Standardize, Flatten, Linear, Sigmoid
            # standardised inputs: g(x) = σ(W·(x − m)/s + b), so ∂g/∂x uses the columns of W divided by s
            weight = linear.weight / self.standardizer.scale.flatten() if self.standardizer.active else linear.weight
            return z, jacobian_frobenius_closed_form(z, weight)
        if self.jacobian == "estimate" and supports_fused_jvp(self.encoder):
            z, jv = encode_with_jvp(self.encoder, x, torch.randn_like(x))
            return z, jv.pow(2).flatten(1).sum(dim=1)
        # torch.func needs tensors autograd may use, also inside Lightning's inference mode
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone()
            method = jacobian_frobenius_exact if self.jacobian == "exact" else jacobian_frobenius_estimate
            return self.encode(x), method(self.encode, x)

    def jacobian_frobenius(self, x: Tensor) -> Tensor:
        """‖∂g(x)/∂x‖²_F per sample, by the configured method."""
        return self.code_and_jacobian_frobenius(x)[1]

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        x = batch.clean
        z, jacobian_frobenius = self.code_and_jacobian_frobenius(x)
        recon = self.distance(self.decoder(z), x)
        contractive = self.contractive_weight * jacobian_frobenius.float().mean()
        return {"loss": recon + contractive, "recon": recon, "contractive": contractive}
