"""Industrial inspection folders in the MVTec AD layout (Bergmann et al. 2019), as anomalib and most practitioners
keep them, one object category per ``root``::

    root/train/good/*.png                     normal images only: the training (and validation) data
    root/test/good/*.png                      normal test images
    root/test/<defect>/*.png                  anomalous test images, one folder per kind of defect
    root/ground_truth/<defect>/<name>_mask.png   optional: where the defect is (non-zero pixels)

Labels: 0 for ``good``, 1, 2, … for the defect folders in sorted order, so ``normal_classes`` is ``[0]``. Masks are
read for the test split only (``good`` images have none: all pixels normal), resized like their images (nearest
neighbour) and returned as bool ``[N, H, W]``. Decoded tensors are cached beside the data like ``folder``'s.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ae_lightning.data.custom import IMAGE_SUFFIXES, cached, check_channels, fit_size, read_image, stack
from ae_lightning.errors import ConfigError, DataNotFoundError

GOOD = "good"
MASK_SUFFIX = "_mask"


def image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def split_files(root: Path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """The split's image files, their labels (0 good, then the defects in sorted order) and the class names."""
    if not (root / "train" / GOOD).is_dir() or not (root / "test").is_dir():
        raise DataNotFoundError(
            f"mvtec: data.root={str(root)!r} is not in the MVTec AD layout: it needs train/good/ and test/ "
            "(test/good/ and a folder per defect, optional ground_truth/<defect>/<name>_mask.png)"
        )
    folders = sorted(p.name for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith("."))
    if split == "train" and folders != [GOOD]:
        extra = [f for f in folders if f != GOOD]
        raise ConfigError(f"mvtec: {root / 'train'} holds {extra}; MVTec's training split is train/good/ only")
    names = [GOOD] + [f for f in folders if f != GOOD]
    files, labels = [], []
    for label, name in enumerate(names):
        found = image_files(root / split / name) if (root / split / name).is_dir() else []
        files += found
        labels += [label] * len(found)
    if not files:
        raise ConfigError(f"mvtec: no images in {root / split} (looked for {sorted(IMAGE_SUFFIXES)})")
    return files, labels, names


def mvtec_class_names(root: Path) -> list[str]:
    """The labels' names: ``good``, then the test split's defect folders in sorted order."""
    return split_files(root, "test")[2]


def mask_files(root: Path, test_files: list[Path], labels: list[int]) -> list[Path | None] | None:
    """Each test image's mask (None for ``good`` images), or None when the folder has no ``ground_truth/``; every
    defect image needs its mask and every mask its image."""
    truth = root / "ground_truth"
    if not truth.is_dir():
        return None
    masks: list[Path | None] = []
    for file, label in zip(test_files, labels):
        if label == 0:
            masks.append(None)
            continue
        candidates = [truth / file.parent.name / f"{file.stem}{MASK_SUFFIX}{s}" for s in (".png", file.suffix)]
        mask = next((c for c in candidates if c.is_file()), None)
        if mask is None:
            raise ConfigError(
                f"mvtec: masks do not match images: no mask for {file.relative_to(root)} "
                f"(looked for {candidates[0].relative_to(root)}); give every defect image its mask or remove "
                "ground_truth/"
            )
        masks.append(mask)
    expected = {m for m in masks if m is not None}
    orphans = sorted(
        f for f in truth.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and f not in expected
    )
    if orphans:
        raise ConfigError(
            f"mvtec: masks do not match images: {orphans[0].relative_to(root)} is the mask of no test image "
            f"(a mask of test/<defect>/<name>.png is ground_truth/<defect>/<name>{MASK_SUFFIX}.png)"
        )
    return masks


def load_mvtec(
    root: str | Path, train: bool, image_size: int | None, channels: int | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One split: (uint8 images [N, C, H, W], labels [N], test masks bool [N, H, W] or None)."""
    root = Path(root).expanduser()
    check_channels(channels)
    files, labels, _ = split_files(root, "train" if train else "test")
    masks = None if train else mask_files(root, files, labels)

    def decode() -> tuple[Tensor, Tensor]:
        mode = channels or (1 if read_image(files[0], None).shape[0] == 1 else 3)
        images = [fit_size(read_image(f, mode), image_size) for f in files]
        return stack(images, [str(f.relative_to(root)) for f in files], image_size), torch.tensor(labels)

    images, label_tensor = cached(root, files, ["mvtec", image_size, channels], decode)
    if masks is None:
        return images, label_tensor, None

    def decode_masks() -> tuple[Tensor, None]:
        maps = []
        for file, mask in zip(files, masks):
            size = read_image(file, None).shape[1:]
            if mask is None:
                maps.append(torch.zeros(1, *size, dtype=torch.uint8))
                continue
            pixels = read_image(mask, 1)
            if pixels.shape[1:] != size:
                raise ConfigError(
                    f"mvtec: masks do not match images: {mask.relative_to(root)} is {list(pixels.shape[1:])} "
                    f"pixels, its image {file.relative_to(root)} {list(size)}"
                )
            maps.append((pixels > 0).to(torch.uint8))
        if image_size is not None:  # nearest neighbour: a mask stays a mask
            maps = [
                TF.center_crop(TF.resize(m, [image_size], interpolation=InterpolationMode.NEAREST), [image_size] * 2)
                for m in maps
            ]
        return torch.stack(maps)[:, 0], None

    mask_list = [m for m in masks if m is not None]
    mask_tensor, _ = cached(root, files + mask_list, ["mvtec-masks", image_size], decode_masks)
    return images, label_tensor, mask_tensor.bool()
