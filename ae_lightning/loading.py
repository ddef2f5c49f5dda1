"""Using a trained model: ``ae_lightning.load(RUN_DIR or CKPT)``.

    import ae_lightning
    model = ae_lightning.load("results/anomaly/runs/AE/seed0")      # the checkpoint its battery judged
    x = model.prepare(images)                                        # uint8 [N, C, H, W] as the data gave them
    scores = model.anomaly_score(x, "reconstruction")                # higher = more anomalous
    codes, reconstructions = model.encode(x), model(x)

The model comes back in eval mode on the CPU (``map_location``), with ``data_config`` (the data settings it was
trained with) and ``prepare`` (images → what the model was trained on: resized and cropped as its ``folder``/
``tensors`` data were, channels as trained, binarised as ``data.binarize`` says, floats in [0, 1]).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ae_lightning.data import custom
from ae_lightning.data.corruption import binarize_images
from ae_lightning.errors import ConfigError
from ae_lightning.variants import VARIANTS, AutoencoderBase


class Prepare:
    """Images → what the model was trained on (see the module docstring)."""

    def __init__(self, data_config: dict[str, Any], input_shape: tuple[int, int, int]) -> None:
        self.image_size, self.binarize = data_config.get("image_size"), data_config.get("binarize", "none")
        self.input_shape = tuple(input_shape)

    def __call__(self, images: Tensor) -> Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        channels = self.input_shape[0]
        if images.shape[1] != channels:
            if images.shape[1] == 3 and channels == 1:  # as torchvision reads an RGB file in grey mode
                weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
                grey = (images.float() * weights).sum(1, keepdim=True)
                images = grey.round().to(torch.uint8) if images.dtype == torch.uint8 else grey.to(images.dtype)
            elif images.shape[1] == 1 and channels == 3:
                images = images.expand(-1, 3, -1, -1)
        if tuple(images.shape[2:]) != self.input_shape[1:]:
            size = self.image_size or self.input_shape[1]
            images = torch.stack([custom.fit_size(image, size) for image in images])
        if tuple(images.shape[1:]) != self.input_shape:
            raise ConfigError(
                f"images of shape {list(images.shape[1:])} cannot be made into the model's {list(self.input_shape)}"
            )
        if images.dtype != torch.uint8:
            if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
                raise ConfigError("float images must lie in [0, 1]; give uint8 images (0–255) as the data reads them")
            if self.binarize == "none":
                return images.float()
            images = images.float().mul(255).round().to(torch.uint8)  # binarised below, as uint8 images are
        if self.binarize != "none":  # threshold; static/dynamic: a seeded Bernoulli draw, as evaluation uses
            mode = "threshold" if self.binarize == "threshold" else "static"
            images = binarize_images(images, mode, torch.Generator().manual_seed(0))
        return images.float().div(255)


def checkpoint_of(run_dir: Path) -> Path:
    """The checkpoint a run's battery judged (result.json), else its best, else its last."""
    result = run_dir / "result.json"
    name = json.loads(result.read_text()).get("checkpoint") if result.is_file() else None
    if name and (run_dir / "checkpoints" / name).is_file():
        return run_dir / "checkpoints" / name
    checkpoints = list((run_dir / "checkpoints").glob("*.ckpt"))
    if not checkpoints:
        raise ConfigError(f"{run_dir}: no checkpoint under {run_dir / 'checkpoints'} (did the run train?)")
    # ModelCheckpoint keeps one best checkpoint besides last.ckpt: that one, else last
    return sorted(checkpoints, key=lambda p: (p.name == "last.ckpt", -p.stat().st_mtime))[0]


def load(path: str | Path, map_location: str | torch.device = "cpu") -> AutoencoderBase:
    """The trained variant of a run directory (or a checkpoint file), in eval mode, with ``data_config`` and
    ``prepare``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"ae_lightning.load: {str(path)!r} does not exist (give a run directory or a .ckpt file)")
    run_dir = path if path.is_dir() else None
    checkpoint_path = checkpoint_of(path) if run_dir else path
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        variant = checkpoint["ae_lightning"]["variant"]
    except Exception as err:
        raise ConfigError(f"{checkpoint_path} is not a readable ae-lightning checkpoint: {err}") from None
    model = VARIANTS[variant].load_from_checkpoint(checkpoint_path, map_location=map_location, weights_only=True)
    data_config = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        data_config = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("data") or data_config
    model.eval()
    model.data_config = data_config
    model.prepare = Prepare(data_config, model.input_shape)
    model.checkpoint_path = checkpoint_path
    return model
