"""What every variant is, and the plumbing they share.

Every variant is a LightningModule with
- ``encode(x) → z`` (g), ``decode(z) → x̂`` in [0, 1] (h), ``forward(x) = decode(encode(x))`` shaped like x;
- its loss in its own ``training_step``, returned as a dict of terms — ``{"loss": L, "recon": …, <its penalty>:
  …}`` — the uniform contract every evaluator relies on. No loss lives here;
- logging: the terms as ``train/<term>``; validation and test evaluate the same objective on their batches
  (``val/<term>``, ``test/<term>``) plus the comparable reconstruction error of the clean image, ``val/mse`` /
  ``test/mse``;
- capabilities that callers ask for instead of checking classes: :class:`Samples` (``sample(n)`` from the prior),
  :class:`HasPosterior` (``posterior(x)`` and a likelihood: ELBO, IW-NLL and active units apply) and
  :class:`HasCodebook` (``code_indices(x)``: codebook usage and perplexity apply).

The plumbing: hyperparameters, networks by name, the optimizer, non-finite losses, exact resume (every rank's
random state in checkpoints), GPU options. Speed shims that rest on Lightning internals live in ``shims.py``.

(About 580 lines: the contract, the capabilities, ``anomaly_score``, the networks' options, the schedule and the
training plumbing — non-finite losses, RNG state per rank in checkpoints — belong to every variant alike.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

from ae_lightning.data.batch import Batch
from ae_lightning.data.standardize import Standardize
from ae_lightning.devices import HostCopy
from ae_lightning.distances import knn_distance
from ae_lightning.errors import ConfigError, NonFiniteLossError
from ae_lightning.nets import build_networks, check_layers, resolve_network
from ae_lightning.seeding import derive_seed
from ae_lightning.variants.shims import FastAttributes, should_log_step, store_training_step_signature

# Losses are computed in float32 whatever the networks ran in (bf16-mixed, 16-mixed): ``.float()`` is free on
# float32 tensors and keeps half-precision rounding out of sums over hundreds of pixels.


def mse_distance(logits: Tensor, x: Tensor) -> Tensor:
    """Mean squared error between the reconstruction σ(logits) and x, averaged over pixels and batch."""
    return F.mse_loss(torch.sigmoid(logits.float()), x.float())


def bce_distance(logits: Tensor, x: Tensor) -> Tensor:
    """Binary cross-entropy between the reconstruction σ(logits) and x (numerically stable, from logits)."""
    return F.binary_cross_entropy_with_logits(logits.float(), x.float())


DISTANCES = {"mse": mse_distance, "bce": bce_distance}


@runtime_checkable
class Samples(Protocol):
    """Generates: ``sample(n)`` decodes n draws from the prior."""

    def sample(self, n: int) -> Tensor: ...


@runtime_checkable
class HasPosterior(Protocol):
    """A latent-variable model: ``posterior(x) → (μ, log σ²)`` of q(z|x), ``negative_log_likelihood(logits, x)`` of
    p(x|z) per sample; the battery's ELBO, IW-NLL and active units apply."""

    likelihood: str  # "bernoulli" (the battery then scores binary images) or "gaussian"

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def negative_log_likelihood(self, logits: Tensor, x: Tensor) -> Tensor: ...

    def negative_elbo(self, x: Tensor) -> Tensor: ...  # per image, one draw of z

    def iw_nll(self, x: Tensor, samples: int) -> Tensor: ...  # per image, importance-weighted


@runtime_checkable
class HasCodebook(Protocol):
    """A discrete code: ``code_indices(x)`` gives each image's codebook entries; the battery's codebook usage and
    perplexity apply."""

    codebook: Tensor  # [K, embedding_dim]

    def code_indices(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class HasCenter(Protocol):
    """A one-class model (Deep SVDD): ``center_distance(x)`` is each image's squared distance to its centre."""

    def center_distance(self, x: Tensor) -> Tensor: ...


# Anomaly scores (higher = more anomalous), see AutoencoderBase.anomaly_score
ANOMALY_SCORES = ("reconstruction", "elbo", "iw_nll", "knn_code", "center_distance")
POSTERIOR_SCORES = ("elbo", "iw_nll")


class AutoencoderBase(FastAttributes, pl.LightningModule):
    """Shared plumbing. Args common to every variant:

    Args:
        input_shape: (C, H, W) of the images; the CLI links it from ``data.image_shape``.
        latent_dim: size of the code z.
        hidden_dims: MLP layer widths or conv channels, encoder order (decoder mirrors); None = network default.
        network: ``auto`` (MLP for 1 channel, conv for 3), ``mlp`` or ``conv``.
        distance: reconstruction distance ``mse`` or ``bce``.
        learning_rate, weight_decay: AdamW settings.
        nonfinite: on a NaN/inf loss, ``stop`` (raise, naming the variant, step and term; checkpoints written
            before stay as they were) or ``skip`` (leave the weights untouched for that batch and count it in
            ``train/skipped_batches``; costs one host sync per step).
        compile_networks: ``torch.compile`` the encoder and decoder in place (``Module.compile``: checkpoints keep
            their keys). Off by default: compiling costs time up front and helps mostly on GPUs.
        channels_last: conv networks in channels-last memory format (faster convolutions with tensor cores under
            mixed precision; off by default, no gain for MLPs or on CPUs).
        normalization: hidden-layer normalisation, ``none``, ``batch`` or ``group`` (conv, lenet); None = the
            network's default (none for mlp and conv, batch for lenet).
        activation: ``relu``, ``leaky_relu``, ``gelu`` or ``silu``; None = the network's default (leaky ReLU for
            lenet, else ReLU).
        residual: conv network: a residual block after every stage.
        lr_schedule: ``constant`` or ``cosine`` — linear warm-up over ``warmup_steps`` optimizer steps, then cosine
            decay to 0 at the end of training (``max_epochs``/``max_steps``); stepped every optimizer step and saved
            in checkpoints, so a resumed run continues the same schedule.
        warmup_steps: the cosine schedule's warm-up (0: none).

    Input standardisation (``data.standardize``) is set from the data module's training statistics when training
    starts (``setup``) and travels in the checkpoint (the encoder's first layer, ``data/standardize.py``); the
    reconstruction loss and the ``reconstruction`` anomaly score are then squared errors in the standardised space.
    """

    sigmoid_codes = False  # True where codes live in (0, 1): the battery then counts z < 0.05 as inactive

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        store_training_step_signature(cls)  # shims.py

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 32,
        hidden_dims: Sequence[int] | None = None,
        network: str = "auto",
        distance: str = "mse",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        nonfinite: str = "stop",
        compile_networks: bool = False,
        channels_last: bool = False,
        normalization: str | None = None,
        activation: str | None = None,
        residual: bool = False,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim={latent_dim} must be >= 1")
        if distance not in DISTANCES:
            raise ConfigError(f"model.distance={distance!r} is not known; allowed: {sorted(DISTANCES)}")
        if not learning_rate > 0:
            raise ConfigError(f"model.learning_rate={learning_rate} must be > 0")
        if hidden_dims is not None and any(h < 1 for h in hidden_dims):
            raise ConfigError(f"model.hidden_dims={list(hidden_dims)} must all be >= 1")
        if len(input_shape) != 3:
            raise ConfigError(f"model.input_shape={list(input_shape)} must be (channels, height, width)")
        if nonfinite not in ("stop", "skip"):
            raise ConfigError(f"model.nonfinite={nonfinite!r} is not known; allowed: ['skip', 'stop']")
        check_layers(normalization, activation, residual, resolve_network(network, input_shape))  # fails early
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model.lr_schedule={lr_schedule!r} is not known; allowed: {list(LR_SCHEDULES)}")
        if warmup_steps < 0 or (warmup_steps > 0 and lr_schedule == "constant"):
            raise ConfigError(
                f"model.warmup_steps={warmup_steps} must be >= 0 and is used by lr_schedule 'cosine' only"
            )
        self.save_hyperparameters()
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self._distance = DISTANCES[distance]
        self.skipped_batches = torchmetrics.SumMetric()
        # read on every step: plain booleans, not a lookup in hparams each time
        self._stop_on_nonfinite, self._skip_nonfinite = nonfinite == "stop", nonfinite == "skip"
        self._pending_finite_check: tuple[int, int, HostCopy, dict[str, Tensor]] | None = None
        self.val_mse = torchmetrics.MeanSquaredError()
        self.test_mse = torchmetrics.MeanSquaredError()

    def make_networks(
        self, code_dim: int | None = None, bias: bool = True, **dropout: float
    ) -> tuple[nn.Sequential, nn.Module]:
        """The encoder g (x → R^code_dim, default latent_dim) and decoder h (z → outputs) these hparams describe;
        the encoder's first layer is the input standardisation."""
        hp = self.hparams
        return build_networks(
            hp.network,
            self.input_shape,
            code_dim or self.latent_dim,
            self.latent_dim,
            hp.hidden_dims,
            normalization=hp.normalization,
            activation=hp.activation,
            residual=hp.residual,
            bias=bias,
            **dropout,
        )

    @property
    def standardizer(self) -> Standardize:
        """The input standardisation, the encoder's first layer (the identity unless ``data.standardize``)."""
        return self.encoder[0]

    def distance(self, outputs: Tensor, x: Tensor) -> Tensor:
        """The reconstruction loss of the decoder's ``outputs`` against x, a mean over pixels and batch:
        ``model.distance`` (MSE or BCE of σ(outputs)) on images in [0, 1], or the MSE of the outputs against the
        standardised x where inputs are standardised (the decoder then reconstructs in that space)."""
        standardizer = self.standardizer
        if standardizer.active:
            return F.mse_loss(outputs.float(), standardizer(x.float()))
        return self._distance(outputs, x)

    # --- the model: g, h and the reconstruction ---------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """z = g(x)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """x̂ = h(z), an image in [0, 1] (contiguous, also from channels-last networks)."""
        return self.standardizer.to_image(self.decoder(z)).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction h(g(x)), shaped like x."""
        return self.decode(self.encode(x))

    def training_step(self, batch: Batch, batch_idx: int = 0) -> dict[str, Tensor]:
        raise NotImplementedError("each variant defines its loss in training_step")

    @property
    def attached_trainer(self) -> pl.Trainer | None:
        """The trainer this model runs under, or None for a direct call (Lightning's ``trainer`` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    # --- using a trained model ------------------------------------------------------------------------------
    @torch.no_grad()
    def anomaly_score(
        self,
        images: Tensor,
        score: str = "reconstruction",
        reference_codes: Tensor | None = None,
        k: int = 5,
        iw_samples: int = 100,
        batch_size: int = 500,
    ) -> Tensor:
        """Per-image anomaly scores, higher = more anomalous, [N]. ``images``: uint8 (0–255) or float in [0, 1],
        [N, C, H, W], as the model was trained on them.

        - ``reconstruction``: mean squared error per pixel of h(g(x)) against x (every variant; a DAE on x itself);
        - ``elbo``, ``iw_nll``: −ELBO and the importance-weighted NLL (``iw_samples`` draws), in nats — models with
          a posterior;
        - ``center_distance``: ‖φ(x) − c‖², the squared distance of the code to the centre — Deep SVDD;
        - ``knn_code``: mean distance of the image's code to its ``k`` nearest ``reference_codes`` (the codes of
          the normal training images, ``model.encode``), codes standardised by the reference codes.
        """
        if score not in ANOMALY_SCORES:
            raise ConfigError(f"score={score!r} is not an anomaly score; allowed: {list(ANOMALY_SCORES)}")
        if score in POSTERIOR_SCORES and not isinstance(self, HasPosterior):
            allowed = [s for s in ANOMALY_SCORES if s not in POSTERIOR_SCORES]
            raise ConfigError(f"score={score!r} needs a posterior; {type(self).__name__} has none (allowed: {allowed})")
        if score == "center_distance" and not isinstance(self, HasCenter):
            raise ConfigError(f"score='center_distance' needs a one-class centre; {type(self).__name__} has none")
        if score == "knn_code" and reference_codes is None:
            raise ConfigError("score='knn_code' needs reference_codes: the codes of normal training images")
        if score == "reconstruction":
            return self.anomaly_map(images, batch_size).flatten(1).mean(1)
        was_training = self.training
        self.eval()
        scores, codes = [], []
        try:
            for chunk in images.split(batch_size):
                x = chunk.to(self.device)
                x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
                if score == "elbo":
                    scores.append(self.negative_elbo(x))
                elif score == "center_distance":
                    scores.append(self.center_distance(x))
                elif score == "iw_nll":
                    parts = x.split(max(1, batch_size // 50))
                    scores.append(torch.cat([self.iw_nll(part, iw_samples) for part in parts]))
                else:
                    codes.append(self.encode(x).float())
        finally:
            self.train(was_training)
        if score == "knn_code":
            return knn_distance(reference_codes.float().to(self.device), torch.cat(codes), k)
        return torch.cat(scores)

    @torch.no_grad()
    def anomaly_map(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """Per-pixel anomaly scores, [N, H, W]: the squared error of h(g(x)) against x, averaged over channels
        (where on the image the reconstruction fails; the ``reconstruction`` score is its mean), in the
        standardised space where inputs are standardised. ``images`` as in ``anomaly_score``."""
        was_training = self.training
        self.eval()
        maps = []
        try:
            for chunk in images.split(batch_size):
                x = chunk.to(self.device)
                x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
                maps.append(self.standardizer.error(self(x), x).mean(1))
        finally:
            self.train(was_training)
        return torch.cat(maps)

    # --- logging --------------------------------------------------------------------------------------------
    def _log_terms(self, stage: str, terms: dict[str, Tensor], batch_size: int) -> None:
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/{name}": value.detach() for name, value in terms.items()},
            on_step=on_step,
            on_epoch=not on_step,
            sync_dist=not on_step,
            batch_size=batch_size,
        )

    def on_train_batch_end(self, outputs: dict[str, Tensor], batch: Batch, batch_idx: int) -> None:
        self.check_finite(outputs)
        # self.log costs ~1 ms per key: the step terms go only to the steps the loggers write (shims.py)
        if should_log_step(self._trainer):
            self._log_terms("train", outputs, len(batch.label))

    # --- non-finite losses ----------------------------------------------------------------------------------
    def check_finite(self, terms: dict[str, Tensor], sync: bool = False) -> None:
        """Raise :class:`NonFiniteLossError` if this step's loss is NaN/inf (``nonfinite: stop``), naming the terms
        that are.

        On the CPU the check is immediate and costs one scalar read. On a GPU it must not stall every step, so the
        loss is copied to the host without waiting and read one step later, after the copy's event says it landed
        (:class:`~ae_lightning.devices.HostCopy`); ``sync=True`` (before a checkpoint is written) checks the current
        step at once.
        """
        if not self._stop_on_nonfinite:
            return
        pending, self._pending_finite_check = self._pending_finite_check, None
        if pending is not None and not math.isfinite(pending[2].value()):
            self._raise_nonfinite(*pending)
        loss = terms["loss"].detach()
        if sync or loss.device.type == "cpu":
            if not math.isfinite(loss.item()):
                self._raise_nonfinite(self.global_step, self.current_epoch, loss, terms)
        else:
            self._pending_finite_check = (
                self.global_step,
                self.current_epoch,
                HostCopy(loss),
                {name: value.detach() for name, value in terms.items()},
            )

    def _raise_nonfinite(self, step: int, epoch: int, loss: Tensor | HostCopy, terms: dict[str, Tensor]) -> None:
        bad = {name: value.item() for name, value in terms.items() if not torch.isfinite(value)}
        loss_value = loss.value() if isinstance(loss, HostCopy) else loss.item()
        shown = ", ".join(f"train/{k}={v}" for k, v in bad.items() if k != "loss") or f"train/loss={loss_value}"
        raise NonFiniteLossError(
            f"non-finite loss in {type(self).__name__} at step {step} (epoch {epoch}): {shown}; training "
            "stopped, checkpoints written before this step are kept. Lower model.learning_rate or the "
            "penalty weight, or set model.nonfinite=skip to skip such batches."
        )

    def on_before_backward(self, loss: Tensor) -> None:
        if self._skip_nonfinite:
            self._step_loss = loss.detach()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self._skip_nonfinite:
            return
        # Under DDP the gradients were all-reduced in backward, so one rank's NaN is in every rank's gradients:
        # if any rank saw a non-finite loss, every rank skips, and the replicas stay identical.
        skip = not bool(torch.isfinite(self._step_loss))
        skip = self.trainer.strategy.reduce_boolean_decision(skip, all=False)
        if skip:
            for param in self.parameters():
                param.grad = None  # torch optimizers leave parameters without gradients untouched
        self.skipped_batches.update(float(skip))
        self.log("train/skipped_batches", self.skipped_batches, on_step=False, on_epoch=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # The variant's own objective on the validation batch, plus the error on clean images every variant shares.
        self._log_terms("val", self.training_step(batch, batch_idx), len(batch.label))
        self.val_mse(self(batch.clean), batch.clean)
        self.log("val/mse", self.val_mse, on_epoch=True, batch_size=len(batch.label))

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_terms("test", self.training_step(batch, batch_idx), len(batch.label))
        self.test_mse(self(batch.clean), batch.clean)
        self.log("test/mse", self.test_mse, on_epoch=True, batch_size=len(batch.label))

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        codes = self.encode(batch.clean)
        return {"codes": codes, "reconstructions": self.decode(codes), "labels": batch.label}

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        return self.with_schedule(optimizer)

    def with_schedule(self, *optimizers: torch.optim.Optimizer):
        """What ``configure_optimizers`` returns for these optimizers under ``lr_schedule``: the optimizers alone
        (constant), or each with its warm-up + cosine scheduler, stepped every optimizer step."""
        if self.hparams.lr_schedule == "constant":
            return optimizers[0] if len(optimizers) == 1 else list(optimizers)
        # The length of training is read lazily (after the first step): Trainer.estimated_stepping_batches here
        # would build the training loader before a resumed run restores its place in the epoch, and lose it.
        total, warmup = self._scheduled_steps, self.hparams.warmup_steps
        schedules = [
            {"optimizer": opt, "lr_scheduler": {"scheduler": warmup_cosine(opt, warmup, total), "interval": "step"}}
            for opt in optimizers
        ]
        return schedules[0] if len(schedules) == 1 else schedules

    def _scheduled_steps(self) -> int:
        trainer = self.attached_trainer
        steps = trainer.estimated_stepping_batches if trainer is not None else float("inf")
        if not math.isfinite(steps):
            raise ConfigError(
                "model.lr_schedule='cosine' decays to 0 at the end of training: set trainer.max_epochs or max_steps"
            )
        steps = int(steps)
        if trainer is not None and trainer.fast_dev_run:  # a smoke run: whatever the schedule, one step or a few
            return max(steps, self.hparams.warmup_steps + 1)
        if self.hparams.warmup_steps >= steps:
            raise ConfigError(
                f"model.warmup_steps={self.hparams.warmup_steps} must be fewer than the {steps} optimizer steps "
                "this training takes"
            )
        return steps

    # --- checkpoints: exact resume, and no loading into the wrong variant -----------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        saved = {"variant": type(self).__name__, "rng": rng_states()}
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            # Every rank draws its own stream (see on_train_start); every rank builds the checkpoint, rank 0 writes it.
            saved["rng_per_rank"] = gather_rng_states(trainer.strategy)
        checkpoint["ae_lightning"] = saved

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's loader, after checking that the checkpoint was written by this variant."""
        if cls is not AutoencoderBase:
            saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True).get("ae_lightning", {})
            if saved.get("variant", cls.__name__) != cls.__name__:
                raise ConfigError(
                    f"the checkpoint was written by {saved['variant']}, but the model is {cls.__name__}: "
                    f"use {saved['variant']}.load_from_checkpoint"
                )
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("ae_lightning", {})
        variant = saved.get("variant", type(self).__name__)
        if variant != type(self).__name__:
            raise ConfigError(
                f"the checkpoint was written by {variant}, but the model is {type(self).__name__}: "
                f"use --model {variant} (or the config saved with that run)"
            )
        self._rng_to_restore = saved if "rng" in saved else None

    def on_train_start(self) -> None:
        if self.hparams.lr_schedule == "cosine":  # here, after a resumed run has restored its loader's place
            self._scheduled_steps()  # an endless or too short training is refused before the first step
        # Random draws (training noise, dropout, VAE sampling) continue where the checkpoint left them, so a resumed
        # run is bitwise the run that was not interrupted. Restored here: after the sanity check, before any batch.
        # A fresh start seeds the training stream of each rank from the run seed (init used the seed itself): every
        # rank draws its own noise, masks and ε, and no seed's training draws are another seed's.
        saved, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        rank = self.global_rank
        per_rank = (saved or {}).get("rng_per_rank") or []
        if rank < len(per_rank):
            restore_rank_rng_state(per_rank[rank])
        elif saved is not None and rank == 0:
            restore_rng_states(saved["rng"])
        else:  # a fresh start, or a checkpoint written by fewer ranks
            torch.manual_seed(derive_seed(torch.initial_seed(), "train", rank))

    # --- checks and GPU options ---------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile_networks and not getattr(self, "_compiled", False):
            self.encoder.compile()
            self.decoder.compile()
            self._compiled = True

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_shape = getattr(datamodule, "image_shape", None)
        if data_shape is not None and tuple(data_shape) != self.input_shape:
            raise ConfigError(
                f"model.input_shape={list(self.input_shape)} does not match the data: {datamodule.name} images are "
                f"{list(data_shape)} (leave input_shape unset and the CLI links it from the data)"
            )
        statistics = getattr(datamodule, "input_statistics", None) if stage == "fit" else None
        if statistics is not None:  # a resumed run then loads the same values from its checkpoint
            self.check_standardizable(datamodule.standardize)
            self.standardizer.set_statistics(*statistics)

    def check_standardizable(self, mode: str) -> None:
        """Fail where standardised inputs cannot work with this model: BCE compares images in [0, 1]."""
        if self.hparams.distance == "bce":
            raise ConfigError(
                f"data.standardize={mode!r} reconstructs in the standardised space, where model.distance='bce' "
                "(images in [0, 1]) does not apply: use model.distance mse or data.standardize none"
            )


LR_SCHEDULES = ("constant", "cosine")


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int | Callable[[], int]
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr · (t + 1)/(warmup + 1) during warm-up, then lr · ½(1 + cos(π·(t − warmup)/(total − warmup))).
    ``total_steps`` may be a function, called once when first needed (after the first step, never at t = 0)."""
    resolved: list[int] = []

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if step == warmup_steps:
            return 1.0
        if not resolved:
            resolved.append(total_steps() if callable(total_steps) else total_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, resolved[0] - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def gather_rng_states(strategy) -> list[dict[str, Tensor]]:
    """Every rank's random state — the CPU generator and its own device's — as a list indexed by rank. A collective:
    every rank calls it (Lightning builds the checkpoint on every rank)."""
    device = strategy.root_device
    local = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        local["device"] = torch.cuda.get_rng_state(device)
    gathered = {key: strategy.all_gather(state.to(device)).cpu() for key, state in local.items()}  # [world, n]
    # clone: each rank's state its own storage (torch.set_rng_state crashes on a view with a storage offset)
    return [{key: states[rank].clone() for key, states in gathered.items()} for rank in range(strategy.world_size)]


def restore_rank_rng_state(state: dict[str, Tensor]) -> None:
    torch.set_rng_state(state["torch"].clone())  # clone: a view into a shared storage crashes set_rng_state
    if "device" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["device"].clone(), torch.cuda.current_device())


def non_negative(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number >= 0, else fail naming the option."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"model.{name}={value} must be a finite number >= 0")
    return value
