"""ImageDataModule: MNIST, Fashion-MNIST and CIFAR-10 for every variant, with optional corruption.

The splits fit in memory, so each is decoded once into a uint8 tensor and batches are taken by index slicing with
a seeded permutation per epoch: no per-sample Python, no collate, no worker processes (``loader: memory``, the
default). ``loader: dataloader`` is the standard path instead: a torch ``DataLoader`` whose worker processes fetch
the same batches, in pinned memory when training on a GPU. Conversion to float and the training corruption happen
in ``on_after_batch_transfer``, on whatever device the batch is on.

Every batch is a :class:`Batch` (clean image, corrupted image, label). Training corruption is drawn fresh every
step; validation and test corruption is drawn once in ``setup`` from a CPU generator seeded by ``seed``, so the
same seed gives the same corrupted images in every run, for every variant, batch size and device.

(Over 400 lines: the data module, its two loaders and the epoch permutation they share are one path from the files
to a batch on the device; split apart, the resume and DDP rules of the order would be read in two places.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ae_lightning import seeding
from ae_lightning.data import sources
from ae_lightning.data.batch import Batch
from ae_lightning.data.corruption import BINARIZE_MODES, Noise, binarize_images, sample_binary
from ae_lightning.data.mvtec import load_mvtec, mvtec_class_names
from ae_lightning.data.shapes import load_shapes
from ae_lightning.data.standardize import STANDARDIZE_MODES, image_statistics
from ae_lightning.errors import ConfigError


class Split(NamedTuple):
    images: Tensor  # uint8 [N, C, H, W]
    labels: Tensor  # int64 [N]
    noisy: Tensor | None  # float [N, C, H, W]: fixed evaluation corruption, None for train


class EpochPermutation:
    """Indices of this rank's share of an epoch: a seeded permutation per epoch (Lightning calls ``set_epoch``,
    and restores the epoch on resume, so the order of any epoch can be recovered)."""

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed, self.rank, self.world_size = size, shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        if self.shuffle:
            order = torch.randperm(self.size, generator=seeding.generator(self.seed, "order", self.epoch))
            # Training: every rank gets the same number of batches (DDP needs it), disjoint shares.
            order = order[: self.size - self.size % self.world_size]
        else:
            order = torch.arange(self.size)  # evaluation: every sample exactly once over all ranks, no padding
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.indices())


def as_words(images: Tensor) -> Tensor:
    """The images as rows of 64-bit words (a view, where each image's bytes divide by 8; else rows of bytes).

    Gathering a batch of uint8 images word by word is ~5x faster on a CPU than byte by byte (MNIST: 98 words
    instead of 784 bytes per image), and cheaper than slicing the same images stored as float.
    """
    rows = images.reshape(len(images), -1)
    if rows.shape[1] * rows.element_size() % 8 == 0 and rows.is_contiguous():
        return rows.view(torch.int64)
    return rows


class BatchFetcher:
    """Batch for a tensor of indices: the uint8 images gathered word by word (see :func:`as_words`), their labels
    and, for evaluation splits, their fixed corruption."""

    def __init__(self, split: Split) -> None:
        self.split, self.rows = split, as_words(split.images)

    def __call__(self, index: Tensor) -> Batch:
        images, labels, noisy = self.split
        clean = self.rows.index_select(0, index).view(images.dtype).view(len(index), *images.shape[1:])
        return Batch(clean, None if noisy is None else noisy[index], labels.index_select(0, index))


class InMemoryLoader:
    """Yields :class:`Batch` slices of a :class:`Split` in the order given by its sampler.

    Stateful (``state_dict``/``load_state_dict``, which Lightning saves in checkpoints): a run resumed from a
    mid-epoch checkpoint continues the epoch's permutation at the batch after the last one trained on. Lightning
    fetches one batch ahead, so what counts is ``consumed`` (batches that reached the model, reported by the data
    module's ``on_after_batch_transfer``), not what was yielded.
    """

    batch_sampler = None  # DataLoader's attribute, read by Lightning: batches come from slicing, not a sampler

    def __init__(self, split: Split, batch_size: int, sampler: EpochPermutation) -> None:
        self.split, self.batch_size, self.sampler = split, batch_size, sampler
        self.fetch = BatchFetcher(split)
        self.consumed = 0
        self._resume_at = 0

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def epoch_batches(self) -> tuple[Tensor, ...]:
        """This epoch's batches of indices, from where a resumed run left off."""
        start, self._resume_at = self._resume_at, 0
        self.consumed = start
        return self.sampler.indices().to(self.split.images.device).split(self.batch_size)[start:]

    def __iter__(self) -> Iterator[Batch]:
        for index in self.epoch_batches():
            yield self.fetch(index)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._resume_at = state["consumed"] if state["consumed"] < len(self) else 0


class SplitDataset(Dataset):
    """A split as a map-style dataset that fetches whole batches (``__getitems__``), for the DataLoader path."""

    def __init__(self, fetch: BatchFetcher) -> None:
        self.fetch = fetch

    def __len__(self) -> int:
        return len(self.fetch.split.labels)

    def __getitem__(self, index: int) -> Batch:  # the DataLoader calls __getitems__; this is a batch of one
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> Batch:
        return self.fetch(torch.tensor(indices))


def keep_batch(batch: Batch) -> Batch:
    """collate_fn: the dataset already returns whole batches."""
    return batch


class EpochBatchSampler:
    """A loader's epoch batches of indices as a DataLoader batch sampler (iterated in the main process)."""

    def __init__(self, loader: InMemoryLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[list[int]]:
        for index in self.loader.epoch_batches():
            yield index.tolist()  # lists: cheaper than tensors to send to the workers


class WorkerLoader(InMemoryLoader):
    """The standard path: a torch ``DataLoader`` over the split, whose ``num_workers`` processes fetch the batches
    (pinned when ``pin_memory``, so the copies to a GPU run asynchronously). Same batches, order, DDP shares and
    mid-epoch resume as :class:`InMemoryLoader`, whose epoch batches of indices are its batch sampler."""

    def __init__(self, split: Split, batch_size: int, sampler: EpochPermutation, num_workers: int, pin_memory: bool):
        super().__init__(split, batch_size, sampler)
        self.dataloader = DataLoader(
            SplitDataset(self.fetch),
            batch_sampler=EpochBatchSampler(self),
            collate_fn=keep_batch,
            num_workers=num_workers,
            pin_memory=pin_memory,
            # workers start afresh each epoch (~60 ms an epoch here, 2 workers): persistent ones, when the loader
            # ended up in the garbage collector's hands, waited out torch's 5 s shutdown timeout each (10 s a loader)
            persistent_workers=False,
            # Its own generator for the workers' base seed: drawing it from torch's global one would shift the
            # training noise and dropout draws (and break exact resume); the batches themselves are not random.
            generator=seeding.generator(sampler.seed, "loader_workers"),
        )

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.dataloader)


class ImageDataModule(pl.LightningDataModule):
    """One data module for all variants.

    Args:
        name: dataset: ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeba`` (aligned faces, 64 × 64), or your own:
            ``folder`` (an image folder: class sub-folders give labels, a flat folder none) or ``tensors`` (a
            ``.npz``/``.pt`` file with uint8 ``images`` and optional ``labels``), or ``mvtec`` (one category of an
            industrial inspection folder in the MVTec AD layout, see ``data/mvtec.py``: anomaly detection with
            ``train/good`` as the normal class and, where ``ground_truth/`` masks exist, ``test_masks``), or
            ``shapes`` (a drawn dSprites-like set with known factors, ``test_factors``: see ``data/shapes.py``).
        root: directory in torchvision's on-disk layout (``root/MNIST/raw``, ``root/FashionMNIST/raw``,
            ``root/cifar-10-batches-py``, ``root/celeba``); for ``folder`` the image folder, for ``tensors`` the file,
            for ``mvtec`` the category folder (``root/train/good`` …).
        image_size: ``folder``/``tensors``/``mvtec``: resize (shorter side) and centre-crop every image to this
            square size; needed when the images differ in size.
        channels: ``folder``/``mvtec``: 1 (grey) or 3 (RGB); default: the first image's.
        test_root: ``folder``/``tensors``: a separate test folder or file; without it ``test_size`` images (default
            a tenth) are held out of the data by a permutation seeded with ``seed``.
        test_size: see ``test_root``.
        binarize: ``none`` (grey levels, as stored); ``static``: every image binarised once, pixel ~ Bernoulli(x),
            drawn per split from a generator seeded by ``seed`` and kept (Larochelle & Murray's fixed binarisation);
            ``threshold``: x > 0.5, once; ``dynamic``: a fresh Bernoulli draw every training step (Burda et al.),
            validation and test at a fixed draw. Every metric, the VAE's nats included, is computed on that data.
        normal_classes: anomaly detection: the labels that are normal. Train and validation then hold only normal
            images (validation stays anomaly-free: nothing about anomalies is known while training), the test split
            holds all, and ``test_is_anomaly`` marks the others. ``val_size`` counts images before that filter.
        calibration_size: anomaly detection: normal validation images held out of validation as the calibration
            split (``splits["calibration"]``): never trained on, never used to choose a checkpoint, never the test
            split — the battery sets each score's threshold on them (``evaluation.anomaly_fpr``). Default (None): a
            fifth of the normal validation images; 0: none (no thresholds).
        read_test: False: ``setup`` never reads, nor decodes, the test split (``ae-lightning tune`` chooses on
            validation only); ``test``, ``predict_split: test`` and the battery then have no test images.
        download: let ``prepare_data`` download missing files (rank 0 only; ``setup`` never downloads).
        batch_size: samples per batch *per device* (under DDP the global batch is ``batch_size × world size``).
        val_size: images held out of the official train split for validation (0 allowed).
        seed: seeds the train/val split and the evaluation corruption (and the shuffles, unless ``shuffle_seed``).
        shuffle_seed: seeds the per-epoch shuffles; None = ``seed``. A suite keeps ``seed`` fixed for all its runs
            (same split, same corrupted evaluation images) and gives each run its own seed here.
        noise: optional corruption ``{kind: gaussian|masking|salt_pepper, level: σ or ν}``.
        val_noise: the validation images' fixed corruption, where it must not follow ``noise`` — a DAE whose training
            noise level is tuned is judged on one corruption whatever its own (else the tuner would lower the noise
            to lower its validation error); default: ``noise``.
        predict_split: which split ``predict`` encodes: ``train``, ``val`` or ``test``.
        data_on_device: ``loader: memory`` on a GPU: keep the uint8 splits on it (sliced there, no per-step copy).
        loader: ``memory`` (index slicing in the training process, the fast path) or ``dataloader`` (a torch
            DataLoader with ``num_workers`` worker processes and, when training on a GPU, pinned memory).
        num_workers: worker processes of ``loader: dataloader`` (0: fetch in the training process).
        standardize: ``none``; ``pixel`` (each pixel by its mean and spread over the training split, as PyOD) or
            ``channel`` (one mean and spread per channel) — from the training split only (with ``normal_classes``
            its normal images only); the model takes them when it starts training and keeps them in its checkpoint
            (see ``data/standardize.py``). Batches stay images in [0, 1]: the model standardises.
        standardize_floor: added to the spread (pixel values in [0, 1]) so a constant pixel does not divide by 0.
    """

    def __init__(
        self,
        name: str = "fashion_mnist",
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        noise: Noise | None = None,
        predict_split: str = "test",
        data_on_device: bool = True,
        loader: str = "memory",
        num_workers: int = 2,
        shuffle_seed: int | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        test_root: str | None = None,
        test_size: int | None = None,
        binarize: str = "none",
        read_test: bool = True,
        normal_classes: list[int] | None = None,
        standardize: str = "none",
        standardize_floor: float = 0.01,
        calibration_size: int | None = None,
        val_noise: Noise | None = None,
    ) -> None:
        super().__init__()
        if standardize not in STANDARDIZE_MODES:
            raise ConfigError(f"data.standardize={standardize!r} is not known; allowed: {list(STANDARDIZE_MODES)}")
        if not (math.isfinite(standardize_floor) and standardize_floor > 0):
            raise ConfigError(f"data.standardize_floor={standardize_floor} must be a finite number > 0")
        self.source = sources.get_source(name)
        if binarize not in BINARIZE_MODES:
            raise ConfigError(f"data.binarize={binarize!r} is not known; allowed: {list(BINARIZE_MODES)}")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"data.image_size={image_size} must be >= 1")
        if test_size is not None and test_size < 1:
            raise ConfigError(f"data.test_size={test_size} must be >= 1")
        own_data = {"image_size": image_size, "channels": channels, "test_root": test_root, "test_size": test_size}
        unused = [key for key, value in own_data.items() if value is not None]
        if name == "mvtec":  # its layout fixes the test split and the normal class
            unused = [key for key in unused if key in ("test_root", "test_size")]
            if normal_classes not in (None, [0]):
                raise ConfigError(
                    f"data.normal_classes={normal_classes!r}: in an MVTec AD folder the normal class is train/good "
                    "(label 0); leave data.normal_classes out"
                )
            normal_classes = [0]
        if unused and name not in ("folder", "tensors"):
            where = "folder or tensors" if name != "mvtec" else "folder or tensors (mvtec's test split is root/test/)"
            raise ConfigError(f"data.{unused[0]} applies to data.name {where}, not {name!r}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be >= 1")
        if val_size < 0:
            raise ConfigError(f"data.val_size={val_size} must be >= 0")
        if predict_split not in ("train", "val", "test"):
            raise ConfigError(f"data.predict_split={predict_split!r}; allowed: ['train', 'val', 'test']")
        if loader not in ("memory", "dataloader"):
            raise ConfigError(f"data.loader={loader!r} is not known; allowed: ['dataloader', 'memory']")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers={num_workers} must be >= 0")
        if normal_classes is not None and (
            not normal_classes
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in normal_classes)
            or len(set(normal_classes)) != len(normal_classes)
        ):
            raise ConfigError(
                f"data.normal_classes={normal_classes!r} must be a non-empty list of distinct class labels (ints >= 0)"
            )
        if calibration_size is not None and (
            isinstance(calibration_size, bool) or not isinstance(calibration_size, int) or calibration_size < 0
        ):
            raise ConfigError(f"data.calibration_size={calibration_size!r} must be an int >= 0 (or left out)")
        if calibration_size and normal_classes is None:
            raise ConfigError(
                f"data.calibration_size={calibration_size} applies to anomaly detection (data.normal_classes, a "
                "suite's one_class, or data.name mvtec); leave it out here"
            )
        if isinstance(noise, dict):  # plain-Python use: ImageDataModule(noise={"kind": ..., "level": ...})
            noise = Noise(**noise)
        if isinstance(val_noise, dict):
            val_noise = Noise(**val_noise)
        self.name, self.root, self.download = name, root, download
        self.batch_size, self.val_size, self.seed = batch_size, val_size, seed
        self.shuffle_seed = seed if shuffle_seed is None else shuffle_seed
        self.noise, self.predict_split, self.data_on_device = noise, predict_split, data_on_device
        self.val_noise = val_noise
        self.loader, self.num_workers = loader, num_workers
        self.image_size, self.channels, self.test_root, self.test_size = image_size, channels, test_root, test_size
        self.binarize = binarize
        self.standardize, self.standardize_floor = standardize, standardize_floor
        # (mean, scale) of the training split, [C, H, W] each, where standardize is not none (set in setup)
        self.input_statistics: tuple[Tensor, Tensor] | None = None
        self._own_data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self.splits: dict[str, Split] = {}
        self.read_test = read_test
        self.normal_classes = None if normal_classes is None else list(normal_classes)
        self.calibration_size = calibration_size
        self.test_is_anomaly: Tensor | None = None  # with normal_classes: which test images are anomalous
        self.test_masks: Tensor | None = None  # mvtec with ground_truth/: the defects' pixels, bool [N, H, W]
        self.test_factors: Tensor | None = None  # shapes: each test image's generative factors, [N, 5]
        self._train_loader: InMemoryLoader | None = None
        # Plain data only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["noise", "val_noise"])
        self.hparams["noise"] = None if noise is None else {"kind": noise.kind, "level": noise.level}
        self.hparams["val_noise"] = None if val_noise is None else {"kind": val_noise.kind, "level": val_noise.level}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the dataset's images; linked to the model's ``input_shape`` by the CLI (for your own data it
        is read from the data, which is then decoded once, here)."""
        if self.source.image_shape is not None:
            return self.source.image_shape
        return tuple(self.own_data()[0].shape[1:])

    @property
    def num_classes(self) -> int:
        """Classes of the labels; 0 for data without labels (the battery then skips the probes)."""
        if self.source.num_classes is not None:
            return self.source.num_classes
        labels = self.own_data()[1]
        return int(labels.max()) + 1 if (labels >= 0).any() else 0

    @property
    def class_names(self) -> list[str] | None:
        """The name of each label value (label = index): the dataset's classes, or a folder's class sub-folders in
        sorted name order (how their labels are given); None where the labels have no names."""
        if self.name == "folder":
            return sources.folder_classes(self.root) or None
        if self.name == "mvtec":  # good, then the defect folders in sorted order
            return mvtec_class_names(Path(self.root).expanduser())
        return sources.CLASS_NAMES.get(self.name)

    def own_data(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``folder``/``tensors``: (train images, labels, test images, labels), labels −1 where there are none; the
        test part from ``test_root``, else ``test_size`` images held out by a permutation seeded with ``seed``."""
        if self._own_data is None:
            empty = torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
            if self.name == "mvtec":
                images, labels, _ = load_mvtec(self.root, True, self.image_size, self.channels)
                test_images, test_labels = empty
                if self.read_test:
                    test_images, test_labels, self.test_masks = load_mvtec(
                        self.root, False, self.image_size, self.channels
                    )
            elif self.test_root is not None:
                images, labels = sources.load_own(self.name, self.root, self.image_size, self.channels)
                test_images, test_labels = empty
                if self.read_test:
                    test_images, test_labels = sources.load_own(
                        self.name, self.test_root, self.image_size, self.channels
                    )
                    if test_images.shape[1:] != images.shape[1:]:
                        raise ConfigError(
                            f"data.test_root images are {list(test_images.shape[1:])}, data.root's "
                            f"{list(images.shape[1:])}: set data.image_size (and data.channels) so both are read alike"
                        )
            else:
                count = sources.count_own(self.name, self.root)
                test_size = self.test_size or max(1, count // 10)
                if test_size >= count:
                    raise ConfigError(f"data.test_size={test_size} must be smaller than the {count} images")
                order = torch.randperm(count, generator=seeding.generator(self.seed, "test_split"))
                # the items are chosen before decoding, so a data module that does not read the test split never
                # decodes its images
                images, labels = sources.load_own(
                    self.name, self.root, self.image_size, self.channels, order[test_size:]
                )
                test_images, test_labels = empty
                if self.read_test:
                    test_images, test_labels = sources.load_own(
                        self.name, self.root, self.image_size, self.channels, order[:test_size]
                    )
                    if test_images.shape[1:] != images.shape[1:]:  # each part stacked alone: compare the two
                        raise ConfigError(
                            f"data: images of different sizes (training part {list(images.shape[1:])}, test part "
                            f"{list(test_images.shape[1:])}) and no data.image_size: set data.image_size to resize "
                            "and centre-crop them to one size"
                        )
            self._own_data = (images, labels, test_images, test_labels)
        return self._own_data

    def prepare_data(self) -> None:
        sources.ensure_files(self.name, self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.source.image_shape is None:  # your own data (its test part is carved out of it, or test_root)
            images, labels, test_images, test_labels = self.own_data()
        elif self.name == "shapes":  # drawn with its factors, which the battery's MIG and DCI read
            images, labels, _ = load_shapes(self.root, train=True)
            if self.read_test:
                test_images, test_labels, self.test_factors = load_shapes(self.root, train=False)
        else:
            images, labels = sources.load_split(self.name, self.root, train=True)
            if self.read_test:
                test_images, test_labels = sources.load_split(self.name, self.root, train=False)
        if self.val_size >= len(images):
            raise ConfigError(
                f"data.val_size={self.val_size} must be smaller than the {len(images)} training images of "
                f"data.name {self.name} at {self.root} (e.g. --data.val_size {max(1, len(images) // 10)}: a tenth)"
            )
        order = torch.randperm(len(images), generator=seeding.generator(self.seed, "split"))
        train_idx, val_idx = order[self.val_size :], order[: self.val_size]
        if self.normal_classes is not None:  # anomaly detection: train and validate on normal images only
            normal = torch.tensor(self.normal_classes)
            self._check_normal_classes(labels, test_labels if self.read_test else None)
            train_idx = train_idx[torch.isin(labels[train_idx], normal)]
            val_idx = val_idx[torch.isin(labels[val_idx], normal)]
            calibration = len(val_idx) // 5 if self.calibration_size is None else self.calibration_size
            if calibration and calibration >= len(val_idx):
                raise ConfigError(
                    f"data.calibration_size={calibration} must be smaller than the {len(val_idx)} normal validation "
                    f"images (data.val_size={self.val_size}): raise val_size, or lower calibration_size"
                )
            calibration_idx, val_idx = val_idx[:calibration], val_idx[calibration:]
            if self.read_test:
                self.test_is_anomaly = ~torch.isin(test_labels, normal)
        train_images = self._binarized(images[train_idx], offset=3, fixed=self.binarize != "dynamic")
        val_images = self._binarized(images[val_idx], offset=4)
        self.splits = {
            "train": Split(train_images, labels[train_idx], None),
            "val": Split(
                val_images, labels[val_idx], self._eval_corruption(val_images, offset=1, noise=self.val_noise)
            ),
        }
        if self.normal_classes is not None:  # fixed like validation: thresholds are set on what the battery scores
            calibration_images = self._binarized(images[calibration_idx], offset=7)
            self.splits["calibration"] = Split(calibration_images, labels[calibration_idx], None)
        if self.read_test:
            test_images = self._binarized(test_images, offset=5)
            self.splits["test"] = Split(test_images, test_labels, self._eval_corruption(test_images, offset=2))
        if self.standardize != "none":
            if len(train_images) < 2:
                raise ConfigError(
                    f"data.standardize={self.standardize!r} needs at least 2 training images; there are "
                    f"{len(train_images)}"
                )
            self.input_statistics = image_statistics(train_images, self.standardize, self.standardize_floor)

    def evaluated_train_images(self) -> Tensor:
        """The training images as the evaluation reads them: under ``binarize: dynamic`` (kept grey for a fresh
        draw every training step) one fixed seeded draw, like the validation and test splits; else as they are."""
        images = self.splits["train"].images
        if self.binarize != "dynamic":
            return images
        return binarize_images(images, "static", seeding.generator(self.seed, "binarize", 6))

    def _check_normal_classes(self, labels: Tensor, test_labels: Tensor | None) -> None:
        """One message for each way ``normal_classes`` cannot make an anomaly-detection split of this data."""
        if not (labels >= 0).any():
            raise ConfigError(
                f"data.normal_classes={self.normal_classes} needs labelled data; {self.name} at {self.root} has "
                "no labels"
            )
        present = sorted(set(labels.tolist()) - {-1})
        missing = [c for c in self.normal_classes if c not in present]
        if missing:
            raise ConfigError(f"data.normal_classes: class {missing[0]} is not in the data; its classes are {present}")
        if test_labels is not None:
            anomalous = ~torch.isin(test_labels, torch.tensor(self.normal_classes))
            if anomalous.all() or not anomalous.any():
                what = "no normal image" if anomalous.all() else "no anomaly"
                raise ConfigError(
                    f"data.normal_classes={self.normal_classes}: the test split has {what} "
                    f"(its classes: {sorted(set(test_labels.tolist()))}); detection needs both"
                )

    def _binarized(self, images: Tensor, offset: int, fixed: bool = True) -> Tensor:
        """The split as the chosen protocol has it: binarised once here, or (dynamic training) left grey for
        a fresh draw every step."""
        if self.binarize == "none" or not fixed:
            return images
        return binarize_images(images, self.binarize, seeding.generator(self.seed, "binarize", offset))

    def _eval_corruption(self, images: Tensor, offset: int, noise: Noise | None = None) -> Tensor | None:
        noise = noise or self.noise
        if noise is None:
            return None
        generator = seeding.generator(self.seed, "eval_noise", offset)
        return noise(images.float().div_(255), generator=generator)

    def _loader(self, split: str, shuffle: bool) -> InMemoryLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        data = self.splits[split]
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        order = EpochPermutation(len(data.labels), shuffle, self.shuffle_seed, rank, world)
        if self.loader == "dataloader":
            return WorkerLoader(data, self.batch_size, order, self.num_workers, pin_memory=device.type == "cuda")
        if self.data_on_device and device.type == "cuda" and data.images.device != device:
            # Once per split (MNIST is 47 MB, CIFAR-10 150 MB as uint8): batches are then sliced on the GPU and
            # no host-to-device copy happens per step.
            data = self.splits[split] = Split(*(None if t is None else t.to(device) for t in data))
        return InMemoryLoader(data, self.batch_size, order)

    def train_dataloader(self) -> InMemoryLoader:
        self._train_loader = self._loader("train", shuffle=True)
        return self._train_loader

    def val_dataloader(self) -> InMemoryLoader | list:
        return self._loader("val", shuffle=False) if self.val_size > 0 else []

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> InMemoryLoader:
        return self._loader(self.predict_split, shuffle=False)

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch:
        # The three known fields directly: Lightning's generic collection walk costs more than the copy on a CPU.
        return Batch(*(None if t is None else t.to(device, non_blocking=True) for t in batch))

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        training = self.trainer is not None and self.trainer.training
        if training and self._train_loader is not None:
            self._train_loader.consumed += 1  # this batch reaches the model now (see InMemoryLoader)
        return self.finish_batch(batch, training)

    def finish_batch(self, batch: Batch, training: bool = False) -> Batch:
        """uint8 → float in [0, 1], a fresh binary draw for ``binarize: dynamic`` training and, where no fixed
        corruption came with the batch, fresh corruption, on the batch's device."""
        clean = batch.clean.float().div_(255) if batch.clean.dtype == torch.uint8 else batch.clean
        if training and self.binarize == "dynamic":
            clean = sample_binary(clean)
        noisy = batch.noisy
        if noisy is None:
            noisy = self.noise(clean) if self.noise is not None else clean
        return Batch(clean, noisy, batch.label)
