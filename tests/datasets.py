"""Tiny datasets written in torchvision's on-disk formats, so the real loading code runs without a network.

Images are learnable: each class has a smooth prototype, each image is its class prototype plus a little noise.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def make_images(n: int, shape: tuple[int, int, int], seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(1234)  # prototypes are shared by every split
    channels, height, width = shape
    prototypes = F.interpolate(
        torch.rand(num_classes, channels, 4, 4, generator=generator),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    # each image: its class prototype plus a smooth part of its own that a code must capture,
    # on a dark background, plus a little noise
    own = F.interpolate(
        torch.rand(n, channels, 7, 7, generator=generator), size=(height, width), mode="bilinear", align_corners=False
    )
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    object_mask = ((rows / 0.8) ** 2 + (cols / 0.6) ** 2 <= 1).float()  # a dark background, like Fashion-MNIST's
    images = (0.6 * prototypes[labels] + 0.5 * own) * object_mask
    images = images + 0.03 * torch.randn(n, channels, height, width, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), labels.numpy().astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist_like(folder: Path, n_train: int = 600, n_test: int = 200, compress: bool = False) -> Path:
    """IDX files as torchvision keeps them in ``root/MNIST/raw`` (or Debian's gzipped ones with compress)."""
    folder.mkdir(parents=True, exist_ok=True)
    for train, n, seed in ((True, n_train, 1), (False, n_test, 2)):
        images, labels = make_images(n, (1, 28, 28), seed)
        image_file, label_file = IDX_FILES[train]
        write_idx(folder / image_file, images[:, 0], compress)
        write_idx(folder / label_file, labels, compress)
    return folder


def write_cifar10(folder: Path, n_per_batch: int = 120, n_test: int = 200) -> Path:
    """Pickled batches as in ``root/cifar-10-batches-py``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        images, labels = make_images(n_test if name == "test_batch" else n_per_batch, (3, 32, 32), seed + 10)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images.reshape(len(images), -1), "labels": labels.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return folder


def make_data_root(root: Path, n_train: int = 600) -> Path:
    write_mnist_like(root / "MNIST" / "raw", n_train=n_train)
    write_mnist_like(root / "FashionMNIST" / "raw")
    write_cifar10(root / "cifar-10-batches-py")
    return root


def write_image_folder(root: Path, n: int, shape: tuple[int, int, int], classes: bool = True, seed: int = 0) -> Path:
    """PNG files of learnable images: ``root/<class>/<i>.png`` (ImageFolder layout) or, without classes, flat."""
    from torchvision.io import write_png

    images, labels = make_images(n, shape, seed=seed, num_classes=3)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / f"class_{label}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        write_png(torch.from_numpy(image), str(folder / f"{index:05d}.png"))
    return root


def write_celeba_like(root: Path, n: int = 60) -> Path:
    """torchvision's CelebA layout: root/celeba/img_align_celeba/*.jpg (178 × 218) and list_eval_partition.txt."""
    from torchvision.io import write_jpeg

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    images, _ = make_images(n, (3, 218, 178), seed=5)
    lines = []
    for index, image in enumerate(images):
        name = f"{index + 1:06d}.jpg"
        write_jpeg(torch.from_numpy(image), str(folder / name), quality=95)
        lines.append(f"{name} {0 if index < 0.7 * n else 1 if index < 0.8 * n else 2}")
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def write_mvtec_like(
    root: Path,
    n_train: int = 80,
    n_good: int = 20,
    defects: tuple[str, ...] = ("scratch", "spot"),
    n_defect: int = 10,
    size: int = 24,
    masks: bool = True,
) -> Path:
    """One category in the MVTec AD layout: train/good, test/good, test/<defect> and (``masks``)
    ground_truth/<defect>/<name>_mask.png. Normal images are smooth random blobs; a defect is a bright square at a
    random place, which its mask marks."""
    from torchvision.io import write_png

    generator = torch.Generator().manual_seed(7)

    def normal_image() -> torch.Tensor:
        low = torch.rand(3, 4, 4, generator=generator)
        image = F.interpolate(low[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        return (image * 0.6 * 255).to(torch.uint8)

    def write(folder: Path, name: str, image: torch.Tensor) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_png(image, str(folder / name))

    for index in range(n_train):
        write(root / "train" / "good", f"{index:03d}.png", normal_image())
    for index in range(n_good):
        write(root / "test" / "good", f"{index:03d}.png", normal_image())
    for defect in defects:
        for index in range(n_defect):
            image, mask = normal_image(), torch.zeros(1, size, size, dtype=torch.uint8)
            top, left = torch.randint(0, size - 6, (2,), generator=generator).tolist()
            image[:, top : top + 6, left : left + 6] = 255
            mask[:, top : top + 6, left : left + 6] = 255
            write(root / "test" / defect, f"{index:03d}.png", image)
            if masks:
                write(root / "ground_truth" / defect, f"{index:03d}_mask.png", mask)
    return root
