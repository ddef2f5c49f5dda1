"""Where dataset files come from: torchvision's on-disk layout under ``root``, its downloaders, Debian's
``dataset-fashion-mnist`` package as an offline mirror, and users' own folders and tensor files (``custom.py``).
Everything here returns whole splits as uint8 tensors ``[N, C, H, W]`` plus int64 labels (−1 where the data has
none); nothing here knows about Lightning."""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets

from ae_lightning.data import custom, shapes
from ae_lightning.errors import ConfigError, DataNotFoundError
from ae_lightning.files import atomic_path

# Debian's dataset-fashion-mnist installs the original gzipped IDX files here.
DEBIAN_FASHION_MNIST = Path(os.environ.get("AE_LIGHTNING_DEBIAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


@dataclass(frozen=True)
class Source:
    name: str
    torchvision_class: type | None  # its downloader; None for users' own data
    image_shape: tuple[int, int, int] | None  # None: read from the data (folder, tensors)
    num_classes: int | None  # 0: no labels; None: read from the data
    folder: str  # relative to root, torchvision's layout
    files: tuple[str, ...]
    load: Callable[[Path, bool], tuple[Tensor, Tensor]] | None  # (root, train) -> (uint8 images, labels)


def _load_idx(cls: type) -> Callable[[Path, bool], tuple[Tensor, Tensor]]:
    def load(root: Path, train: bool) -> tuple[Tensor, Tensor]:
        split = cls(str(root), train=train, download=False)
        return split.data.unsqueeze(1).contiguous(), split.targets.long()

    return load


def _load_cifar10(root: Path, train: bool) -> tuple[Tensor, Tensor]:
    # Read the pickled batches directly: torchvision's CIFAR10 also verifies md5 sums of the full release,
    # which would reject the small files tests generate in the same format.
    folder = root / datasets.CIFAR10.base_folder
    names = datasets.CIFAR10.train_list if train else datasets.CIFAR10.test_list
    images, labels = [], []
    for file_name, _md5 in names:
        with open(folder / file_name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def _idx_files() -> tuple[str, ...]:
    return tuple(
        f"{split}-{kind}-idx{dim}-ubyte" for split in ("train", "t10k") for kind, dim in (("images", 3), ("labels", 1))
    )


SOURCES: dict[str, Source] = {
    "mnist": Source("mnist", datasets.MNIST, (1, 28, 28), 10, "MNIST/raw", _idx_files(), _load_idx(datasets.MNIST)),
    "fashion_mnist": Source(
        "fashion_mnist",
        datasets.FashionMNIST,
        (1, 28, 28),
        10,
        "FashionMNIST/raw",
        _idx_files(),
        _load_idx(datasets.FashionMNIST),
    ),
    "cifar10": Source(
        "cifar10",
        datasets.CIFAR10,
        (3, 32, 32),
        10,
        datasets.CIFAR10.base_folder,
        tuple(name for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list) + ("batches.meta",),
        _load_cifar10,
    ),
}


def _load_celeba(root: Path, train: bool) -> tuple[Tensor, Tensor]:
    images, _ = custom.load_celeba(root, train)
    return images, torch.full((len(images),), -1, dtype=torch.long)


SOURCES["celeba"] = Source(
    "celeba",
    datasets.CelebA,
    (3, custom.CELEBA_SIZE, custom.CELEBA_SIZE),
    0,
    custom.CELEBA_FOLDER,
    ("list_eval_partition.txt",),
    _load_celeba,
)
SOURCES["folder"] = Source("folder", None, None, None, "", (), None)
SOURCES["tensors"] = Source("tensors", None, None, None, "", (), None)
SOURCES["mvtec"] = Source("mvtec", None, None, None, "", (), None)  # data/mvtec.py
SOURCES["shapes"] = Source(  # data/shapes.py: drawn here, nothing to download
    "shapes", None, (1, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE), shapes.SIZES[0], shapes.FOLDER, (),
    lambda root, train: shapes.load_shapes(root, train)[:2],
)  # fmt: skip


# What the labels mean, for the report's tables and legends (MNIST's labels are their digits).
CLASS_NAMES = {
    "fashion_mnist": list(datasets.FashionMNIST.classes),
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "shapes": ["square", "ellipse", "triangle"],
}


def folder_classes(root: str | Path) -> list[str]:
    """A folder's class sub-folders in the order of their labels (sorted by name); empty for a flat folder."""
    return custom.folder_files(Path(root).expanduser())[1]


def count_own(name: str, root: str | Path) -> int:
    """How many images a user's ``folder`` or ``tensors`` data holds, without decoding them."""
    if name == "folder":
        return len(custom.folder_files(Path(root).expanduser())[0])
    return custom.count_tensors(root)


def load_own(
    name: str, root: str | Path, image_size: int | None, channels: int | None, items: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """A user's ``folder`` or ``tensors`` data: (uint8 images, labels or −1 where it has none), whole or only the
    ``items`` (indices, in that order; the others are not decoded)."""
    if name == "folder":
        images, labels = custom.load_folder(root, image_size, channels, items)
    else:
        if channels is not None:
            raise ConfigError("data.channels applies to data.name folder; a tensors file gives its own channels")
        images, labels = custom.load_tensors(root, image_size, items)
    return images, torch.full((len(images),), -1, dtype=torch.long) if labels is None else labels


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ConfigError(f"data.name={name!r} is not a known dataset; allowed: {sorted(SOURCES)}")
    return SOURCES[name]


def missing_files(source: Source, root: Path) -> list[str]:
    return [f for f in source.files if not (root / source.folder / f).is_file()]


def _install_debian_fashion_mnist(root: Path) -> bool:
    """Unpack Debian's gzipped IDX files into torchvision's layout, as torchvision's own download would."""
    gz_files = [DEBIAN_FASHION_MNIST / f"{f}.gz" for f in _idx_files()]
    if not all(p.is_file() for p in gz_files):
        return False
    target = root / SOURCES["fashion_mnist"].folder
    target.mkdir(parents=True, exist_ok=True)
    for gz in gz_files:
        out = target / gz.stem
        if out.is_file():
            continue
        with atomic_path(out) as partial, gzip.open(gz, "rb") as src, open(partial, "wb") as dst:
            dst.write(src.read())
    return True


def ensure_files(name: str, root: str | Path, download: bool) -> None:
    """Make sure the dataset's files are under ``root`` (call from ``prepare_data``: it may download)."""
    source, root = get_source(name), Path(root).expanduser()
    if name == "shapes":  # drawn, not downloaded: draw and cache it now (prepare_data runs on rank 0)
        shapes.load_shapes(root, train=True)
        return
    if source.torchvision_class is None:  # your own data: it is there or it is not
        if not root.exists():
            raise DataNotFoundError(f"{name}: data.root={str(root)!r} does not exist")
        return
    if not missing_files(source, root):
        return
    if name == "fashion_mnist" and _install_debian_fashion_mnist(root) and not missing_files(source, root):
        return
    reason = "download is off (data.download=false)"
    if download:
        try:
            if name == "celeba":
                source.torchvision_class(str(root), split="all", download=True)
            else:
                source.torchvision_class(str(root), train=True, download=True)
                source.torchvision_class(str(root), train=False, download=True)
            return
        except Exception as err:  # network errors come in many types; all mean the same thing here
            reason = f"the download failed ({type(err).__name__}: {err})"
    raise DataNotFoundError(_missing_message(source, root, reason))


def load_split(name: str, root: str | Path, train: bool) -> tuple[Tensor, Tensor]:
    """Read one official split as (uint8 images [N, C, H, W], int64 labels [N]); never downloads."""
    source, root = get_source(name), Path(root).expanduser()
    if missing_files(source, root):
        raise DataNotFoundError(_missing_message(source, root, "prepare_data has not put them there"))
    images, labels = source.load(root, train)
    if tuple(images.shape[1:]) != source.image_shape:
        raise DataNotFoundError(
            f"{name}: files in {root / source.folder} hold images of shape "
            f"{tuple(images.shape[1:])}, expected {source.image_shape}"
        )
    return images, labels


def _missing_message(source: Source, root: Path, reason: str) -> str:
    hint = (
        "Provide them by running once with network access (data.download=true), or by copying an existing "
        f"torchvision data directory (it holds {source.folder}/) and passing it as data.root"
    )
    if source.name == "fashion_mnist":
        hint += f", or offline on Debian: apt-get install dataset-fashion-mnist (files in {DEBIAN_FASHION_MNIST})"
    missing = ", ".join(missing_files(source, root))
    return f"{source.name}: data files not found in {root / source.folder} (missing: {missing}); {reason}. {hint}."
