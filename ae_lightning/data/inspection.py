"""A generated inspection data set in the MVTec AD layout, to try detectors, thresholds and anomaly maps on where the
real MVTec AD cannot be downloaded (its licence forbids redistribution; there is no internet here):

    python -m ae_lightning.data.inspection data/inspection      # then data: {name: mvtec, root: data/inspection}

Normal images are a woven texture: two crossed sinusoidal gratings (periods 6–8 px) with a random phase and a small
random rotation, a slowly varying illumination and sensor noise — every image different, none with a defect. Test
images carry one defect each, drawn on such a texture, three kinds:

- ``scratch``: a thin dark line, 1–2 px wide, at a random angle and place (the hardest: few pixels);
- ``stain``: a soft elliptical blob, brighter or darker than the cloth;
- ``hole``: a patch where the weave is missing (flat grey of the cloth's mean), the texture's structure broken.

Each defect's mask (``ground_truth/<kind>/<name>_mask.png``) marks where it is: the scratch's line and the hole's
patch whole, the stain's pixels changed by more than ``MASK_LEVEL`` grey levels (its soft edge fades into the cloth).
Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor

DEFECTS = ("hole", "scratch", "stain")
MASK_LEVEL = 8  # grey levels: a pixel changed by more than this is part of the defect


def texture(size: int, generator: torch.Generator) -> Tensor:
    """One normal image, float [size, size] in [0, 255]."""
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    angle = (rand(()) - 0.5) * 0.2  # ±0.1 rad: the cloth is never laid quite straight
    u = x * torch.cos(angle) + y * torch.sin(angle)
    v = -x * torch.sin(angle) + y * torch.cos(angle)
    period_u, period_v = 6 + 2 * rand(()), 6 + 2 * rand(())
    weave = torch.sin(2 * math.pi * u / period_u + 2 * math.pi * rand(())) * torch.sin(
        2 * math.pi * v / period_v + 2 * math.pi * rand(())
    )
    light = 1 + 0.15 * torch.sin(2 * math.pi * (x * rand(()) + y * rand(())) / size)  # slow illumination change
    noise = torch.randn(size, size, generator=generator) * 4
    return (128 + 50 * weave * light + noise).clamp(0, 255)


def draw_defect(image: Tensor, kind: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``image`` with one defect of ``kind`` drawn on it (a new tensor), and the defect's mask (bool)."""
    size = image.shape[-1]
    rand = lambda: float(torch.rand((), generator=generator))  # noqa: E731
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    centre_y, centre_x = size * (0.2 + 0.6 * rand()), size * (0.2 + 0.6 * rand())
    out = image.clone()
    if kind == "scratch":
        angle, length, width = math.pi * rand(), size * (0.3 + 0.3 * rand()), 0.7 + 0.6 * rand()
        along = (x - centre_x) * math.cos(angle) + (y - centre_y) * math.sin(angle)
        across = -(x - centre_x) * math.sin(angle) + (y - centre_y) * math.cos(angle)
        mask = (across.abs() < width) & (along.abs() < length / 2)
        out[mask] = 20 + 20 * rand()
    elif kind == "stain":
        radius_y, radius_x = size * (0.08 + 0.08 * rand()), size * (0.08 + 0.08 * rand())
        blob = torch.exp(-(((y - centre_y) / radius_y) ** 2 + ((x - centre_x) / radius_x) ** 2))
        out = (out + (1 if rand() < 0.5 else -1) * 70 * blob).clamp(0, 255)
        mask = (out.round() - image.round()).abs() > MASK_LEVEL
    elif kind == "hole":
        half = int(size * (0.06 + 0.06 * rand()))
        top, left = int(centre_y) - half, int(centre_x) - half
        mask = torch.zeros_like(image, dtype=torch.bool)
        mask[max(0, top) : top + 2 * half, max(0, left) : left + 2 * half] = True
        out[mask] = float(image.mean())
    else:
        raise ValueError(f"defect kind {kind!r}; allowed: {list(DEFECTS)}")
    return out.clamp(0, 255), mask


def write_inspection_folder(
    root: str | Path,
    n_train: int = 400,
    n_good: int = 60,
    n_per_defect: int = 30,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the data set under ``root`` (train/good, test/good, test/<kind>, ground_truth/<kind>); returns root."""
    from torchvision.io import write_png

    root = Path(root).expanduser()
    generator = torch.Generator().manual_seed(seed)

    def write(folder: Path, name: str, image: Tensor) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_png(image.round().to(torch.uint8)[None], str(folder / name))

    for index in range(n_train):
        write(root / "train" / "good", f"{index:03d}.png", texture(size, generator))
    for index in range(n_good):
        write(root / "test" / "good", f"{index:03d}.png", texture(size, generator))
    for kind in DEFECTS:
        for index in range(n_per_defect):
            clean = texture(size, generator)
            defective, mask = draw_defect(clean, kind, generator)
            write(root / "test" / kind, f"{index:03d}.png", defective)
            write(root / "ground_truth" / kind, f"{index:03d}_mask.png", mask.float() * 255)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lightning.data.inspection", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("root", type=Path, help="the folder to write (MVTec AD layout)")
    parser.add_argument("--train", type=int, default=400, help="normal training images (400)")
    parser.add_argument("--good", type=int, default=60, help="normal test images (60)")
    parser.add_argument("--per-defect", type=int, default=30, help="test images of each defect kind (30)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.train, args.good, args.per_defect) < 1 or args.size < 16:
        parser.error("--train, --good and --per-defect must be >= 1 and --size >= 16")
    if args.root.exists() and any(args.root.iterdir()):
        parser.error(f"{args.root} exists and is not empty: choose a new folder (nothing was written)")
    write_inspection_folder(args.root, args.train, args.good, args.per_defect, args.size, args.seed)
    total = args.train + args.good + args.per_defect * len(DEFECTS)
    print(f"wrote {total} images ({args.size}×{args.size}, grey) in the MVTec AD layout to {args.root}")


if __name__ == "__main__":
    main()
