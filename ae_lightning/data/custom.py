"""Users' own data, read once into the same uint8 ``[N, C, H, W]`` tensors as the built-in datasets:

- ``folder``: images in torchvision's ``ImageFolder`` layout under ``root`` (class sub-folders give labels; a flat
  folder means no labels), decoded with torchvision, resized (shorter side) and centre-cropped to ``image_size``,
  converted to ``channels``. The decoded tensor is cached beside the data (``root/.ae_lightning_cache/``, written
  atomically, keyed by every file's path, size and modification time and the options), so a changed folder is
  decoded again.
- ``tensors``: a ``.npz`` or ``.pt`` file with uint8 ``images`` (N, H, W), (N, H, W, C) or (N, C, H, W) and optional
  ``labels``.
- ``celeba``: torchvision's CelebA on-disk layout (``root/celeba/img_align_celeba/*.jpg`` and
  ``list_eval_partition.txt``), aligned faces centre-cropped to 148 × 148 and resized to 64 × 64 (the usual VAE
  setting); no labels.

Each returns ``(images, labels or None)`` for the whole set, or for one official split where the data has them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from ae_lightning.errors import ConfigError, DataNotFoundError
from ae_lightning.files import atomic_path
from ae_lightning.messages import warn

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}
CELEBA_FOLDER = "celeba"
CELEBA_CROP, CELEBA_SIZE = 148, 64


def check_channels(channels: int | None) -> None:
    if channels is not None and channels not in MODES:
        raise ConfigError(f"data.channels={channels} is not supported; allowed: 1 (grey) or 3 (RGB)")


def read_image(path: Path, channels: int | None) -> Tensor:
    try:
        return decode_image(str(path), mode=MODES[channels] if channels else ImageReadMode.UNCHANGED)
    except Exception as err:
        raise ConfigError(f"data: cannot read image {path}: {type(err).__name__}: {err}") from None


def fit_size(image: Tensor, image_size: int | None, crop: int | None = None) -> Tensor:
    """Centre crop to ``crop`` (if given), then resize the shorter side to ``image_size`` and centre-crop square."""
    if crop is not None:
        image = TF.center_crop(image, [crop, crop])
    if image_size is None:
        return image
    image = TF.resize(image, [image_size], antialias=True)
    return TF.center_crop(image, [image_size, image_size])


def stack(images: list[Tensor], names: list[str], image_size: int | None) -> Tensor:
    shapes = {}
    for image, name in zip(images, names):
        shapes.setdefault(tuple(image.shape), name)
    if len(shapes) > 1:
        (first, a), (second, b) = list(shapes.items())[:2]
        raise ConfigError(
            f"data: images of different sizes ({a}: {list(first)}, {b}: {list(second)}) and no data.image_size: "
            "set data.image_size to resize and centre-crop them to one size"
            if image_size is None
            else f"data: images of different channel counts ({a}: {list(first)}, {b}: {list(second)}): set "
            "data.channels to 1 or 3"
        )
    return torch.stack(images)


def folder_files(root: Path) -> tuple[list[Path], list[str]]:
    """Image files and class names: class sub-folders (ImageFolder layout) or, without them, a flat folder."""
    if not root.is_dir():
        raise DataNotFoundError(f"folder: data.root={str(root)!r} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        files = [f for c in classes for f in sorted((root / c).rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [f for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ConfigError(
            f"folder: no images in {root} (looked for {sorted(IMAGE_SUFFIXES)} in class sub-folders or the folder)"
        )
    return files, classes


def cached(root: Path, files: list[Path], options: list, decode) -> tuple[Tensor, Tensor | None]:
    """``decode()`` once: its result is kept in ``root/.ae_lightning_cache/`` under a key made of every file's path,
    size and modification time and ``options``, so a changed folder is decoded again."""
    stats = [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha1(json.dumps([stats, options]).encode()).hexdigest()[:16]
    cache = root / ".ae_lightning_cache" / f"{key}.pt"
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        return saved["images"], saved["labels"]
    images, labels = decode()
    try:
        with atomic_path(cache) as partial:
            torch.save({"images": images, "labels": labels}, partial)
    except OSError as err:  # a read-only data folder: decode again next time
        warn(f"decoded images not cached in {cache.parent}: {err}")
    return images, labels


def load_folder(
    root: str | Path, image_size: int | None, channels: int | None, items: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """The folder's images (all, or the files at ``items`` of its sorted list, in that order) and labels."""
    root = Path(root).expanduser()
    check_channels(channels)
    all_files, classes = folder_files(root)
    files = all_files if items is None else [all_files[i] for i in items.tolist()]

    def decode() -> tuple[Tensor, Tensor | None]:
        mode = channels or (1 if read_image(all_files[0], None).shape[0] == 1 else 3)  # default: the first image's
        images = [fit_size(read_image(f, mode), image_size) for f in files]
        stacked = stack(images, [str(f.relative_to(root)) for f in files], image_size)
        labels = torch.tensor([classes.index(f.relative_to(root).parts[0]) for f in files]) if classes else None
        return stacked, labels

    return cached(root, files, [image_size, channels], decode)


def to_nchw(images: np.ndarray, where: str) -> Tensor:
    if images.dtype != np.uint8:
        raise ConfigError(f"{where}: images must be uint8 (0–255), got {images.dtype}")
    if images.ndim == 3:
        return torch.from_numpy(images).unsqueeze(1)
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return torch.from_numpy(images).contiguous()
    raise ConfigError(
        f"{where}: images of shape {list(images.shape)}; allowed: (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3"
    )


def read_tensors(path: Path) -> dict:
    """The arrays of a ``.npz`` or ``.pt`` file (read, not yet converted)."""
    if not path.is_file():
        raise DataNotFoundError(f"tensors: {str(path)!r} is not a file (a .npz or .pt with 'images')")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    elif path.suffix == ".pt":
        loaded = torch.load(path, weights_only=True)
        contents = {key: value.numpy() if isinstance(value, Tensor) else value for key, value in loaded.items()}
    else:
        raise ConfigError(f"tensors: {path.name} is neither .npz nor .pt")
    if "images" not in contents:
        raise ConfigError(f"tensors: {path} has no 'images' (it holds {sorted(contents)})")
    return contents


def count_tensors(path: str | Path) -> int:
    return len(read_tensors(Path(path).expanduser())["images"])


def load_tensors(path: str | Path, image_size: int | None, items: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The file's images (all, or the rows at ``items``, in that order: the others are not converted) and labels."""
    path = Path(path).expanduser()
    contents = read_tensors(path)
    images, labels = np.asarray(contents["images"]), contents.get("labels")
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels)).long().flatten()
        if len(labels) != len(images):
            raise ConfigError(f"tensors: {path} has {len(images)} images but {len(labels)} labels")
    if items is not None:
        images, labels = images[items.numpy()], None if labels is None else labels[items]
    images = to_nchw(images, f"tensors: {path}")
    if image_size is not None:
        images = torch.stack([fit_size(image, image_size) for image in images])
    return images, labels


def load_celeba(root: str | Path, train: bool) -> tuple[Tensor, None]:
    """CelebA's official partition (train + valid for training, test), aligned faces cropped and resized to 64."""
    folder = Path(root).expanduser() / CELEBA_FOLDER
    partition_file, image_folder = folder / "list_eval_partition.txt", folder / "img_align_celeba"
    if not partition_file.is_file() or not image_folder.is_dir():
        raise DataNotFoundError(
            f"celeba: {partition_file} or {image_folder}/ not found; run once with data.download=true (torchvision "
            "downloads CelebA from Google Drive), or put the files there"
        )
    wanted = {"0", "1"} if train else {"2"}
    rows = [line.split() for line in partition_file.read_text().splitlines()]
    names = [row[0] for row in rows if len(row) == 2 and row[1] in wanted]

    def decode() -> tuple[Tensor, None]:
        images = [fit_size(read_image(image_folder / name, 3), CELEBA_SIZE, CELEBA_CROP) for name in names]
        return torch.stack(images), None

    return cached(folder, [partition_file], [train, len(names), CELEBA_CROP, CELEBA_SIZE], decode)
