from ae_lightning.data.batch import Batch
from ae_lightning.data.corruption import Noise
from ae_lightning.data.datamodule import ImageDataModule

__all__ = ["Batch", "ImageDataModule", "Noise"]
