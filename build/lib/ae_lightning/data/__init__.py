from ae_lightning.data.corruption import Noise
from ae_lightning.data.datamodule import Batch, ImageDataModule

__all__ = ["Batch", "ImageDataModule", "Noise"]
