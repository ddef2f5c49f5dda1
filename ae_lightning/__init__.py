"""ae-lightning: the autoencoder family in PyTorch Lightning, trained and compared side by side."""

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
