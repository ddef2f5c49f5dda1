"""The variants, one file each. ``VARIANTS`` maps class names to classes (the registry the runner uses)."""

from ae_lightning.variants.adversarial import AdversarialAutoencoder
from ae_lightning.variants.autoencoder import Autoencoder
from ae_lightning.variants.base import AutoencoderBase
from ae_lightning.variants.contractive import ContractiveAutoencoder
from ae_lightning.variants.deep_svdd import DeepSVDD
from ae_lightning.variants.denoising import DenoisingAutoencoder
from ae_lightning.variants.dropout import DropoutAutoencoder
from ae_lightning.variants.iwae import ImportanceWeightedAutoencoder
from ae_lightning.variants.memae import MemoryAutoencoder
from ae_lightning.variants.sparse import SparseAutoencoder
from ae_lightning.variants.tcvae import BetaTCVAE
from ae_lightning.variants.vae import VariationalAutoencoder
from ae_lightning.variants.vqvae import VectorQuantizedAutoencoder
from ae_lightning.variants.wae import WassersteinAutoencoder

VARIANTS: dict[str, type[AutoencoderBase]] = {
    cls.__name__: cls
    for cls in (
        Autoencoder,
        DenoisingAutoencoder,
        SparseAutoencoder,
        DropoutAutoencoder,
        ContractiveAutoencoder,
        VariationalAutoencoder,
        ImportanceWeightedAutoencoder,
        BetaTCVAE,
        WassersteinAutoencoder,
        VectorQuantizedAutoencoder,
        AdversarialAutoencoder,
        DeepSVDD,
        MemoryAutoencoder,
    )
}

__all__ = ["VARIANTS", "AutoencoderBase", *VARIANTS]
