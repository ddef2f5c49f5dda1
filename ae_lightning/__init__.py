"""ae-lightning: the autoencoder family in PyTorch Lightning, trained and compared side by side.

The names below are imported on first use (PEP 562), so ``ae-lightning --help`` and every error found before
training answer without loading torch and Lightning (about 5 s of a process's start-up)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ae_lightning.data import ImageDataModule, Noise
    from ae_lightning.loading import load
    from ae_lightning.variants import (
        VARIANTS,
        AdversarialAutoencoder,
        Autoencoder,
        AutoencoderBase,
        BetaTCVAE,
        ContractiveAutoencoder,
        DeepSVDD,
        DenoisingAutoencoder,
        DropoutAutoencoder,
        ImportanceWeightedAutoencoder,
        MemoryAutoencoder,
        SparseAutoencoder,
        VariationalAutoencoder,
        VectorQuantizedAutoencoder,
        WassersteinAutoencoder,
    )

__version__ = "0.1.0"
__all__ = [
    "VARIANTS",
    "AdversarialAutoencoder",
    "Autoencoder",
    "AutoencoderBase",
    "BetaTCVAE",
    "ContractiveAutoencoder",
    "DeepSVDD",
    "DenoisingAutoencoder",
    "DropoutAutoencoder",
    "ImageDataModule",
    "ImportanceWeightedAutoencoder",
    "MemoryAutoencoder",
    "Noise",
    "SparseAutoencoder",
    "VariationalAutoencoder",
    "VectorQuantizedAutoencoder",
    "WassersteinAutoencoder",
    "load",
]

# where each public name lives: the data module, the loader, and everything else from the variants
HOMES = {"ImageDataModule": "ae_lightning.data", "Noise": "ae_lightning.data", "load": "ae_lightning.loading"}


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'ae_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(HOMES.get(name, "ae_lightning.variants")), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
