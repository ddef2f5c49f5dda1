"""``ae-lightning score RUN_DIR --images FOLDER_OR_NPZ --out scores.csv``: anomaly scores of new images from a
trained run, for the engineer who trained once and now monitors.

One row per image: its path (a folder's file, or ``FILE.npz#index``), each score (higher = more anomalous), and
``rank`` — 1 for the most anomalous image by the first score, a threshold-free order to inspect from the top. The
``knn_code`` score compares each code with the codes of the run's own (normal) training images, read from the data
the run was trained on (its ``config.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from ae_lightning.data import ImageDataModule, custom
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.anomaly import applicable_scores
from ae_lightning.files import atomic_path
from ae_lightning.loading import load
from ae_lightning.variants.base import ANOMALY_SCORES


def read_images(path: Path) -> tuple[torch.Tensor, list[str]]:
    """uint8 images and a name for each: an image folder (sorted, class sub-folders or flat) or a .npz/.pt file."""
    if path.is_dir():
        files, _ = custom.folder_files(path)
        first = custom.read_image(files[0], None)
        images = [custom.read_image(f, first.shape[0] if first.shape[0] in (1, 3) else None) for f in files]
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) > 1:  # the model's prepare() resizes each; stack after it
            return images, [str(f) for f in files]
        return torch.stack(images), [str(f) for f in files]
    if path.is_file():
        images, _ = custom.load_tensors(path, None)
        return images, [f"{path}#{index}" for index in range(len(images))]
    raise ConfigError(f"--images {str(path)!r}: no such folder or file (an image folder, or a .npz/.pt with 'images')")


def run_evaluation(run: Path) -> dict:
    """The evaluation settings a run's battery used (run.json), {} for a bare checkpoint."""
    info = run / "run.json" if run.is_dir() else None
    return (json.loads(info.read_text()).get("evaluation") or {}) if info and info.is_file() else {}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ae-lightning score", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (results/<suite>/runs/<variant>/seed<s>) or a .ckpt")
    parser.add_argument("--images", type=Path, required=True, help="image folder, or .npz/.pt file with 'images'")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default scores.csv)")
    parser.add_argument(
        "--scores", nargs="+", default=None, help=f"which scores (default: all that apply), of {list(ANOMALY_SCORES)}"
    )
    parser.add_argument(
        "--k", type=int, default=None, help="neighbours of knn_code (default: the run's anomaly_knn, 5)"
    )
    parser.add_argument(
        "--iw-samples", type=int, default=None, help="importance samples of iw_nll (default: the run's, 100)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    model = load(args.run)
    applicable = applicable_scores(model, ANOMALY_SCORES)
    wanted = args.scores or applicable
    for score in wanted:
        if score not in applicable:
            raise ConfigError(f"--scores {score}: not a score of {type(model).__name__}; allowed: {applicable}")
    images, names = read_images(args.images)
    prepared = (
        torch.stack([model.prepare(image.unsqueeze(0))[0] for image in images])
        if isinstance(images, list)
        else model.prepare(images)
    )
    reference = None
    if "knn_code" in wanted:  # the battery's reference: codes of the run's training images, as many as it used
        if not model.data_config:
            raise ConfigError(f"{args.run}: knn_code needs the run's training data, and no data config came with it")
        datamodule = ImageDataModule(**{**model.data_config, "read_test": False})
        datamodule.setup("fit")
        count = run_evaluation(args.run).get("probe_train_samples")
        with torch.no_grad():
            train = datamodule.evaluated_train_images()[:count]
            reference = torch.cat([model.encode(chunk.float().div(255)) for chunk in train.split(500)])
    evaluation = run_evaluation(args.run)
    k = args.k or evaluation.get("anomaly_knn", 5)
    iw_samples = args.iw_samples or evaluation.get("anomaly_iw_samples", 100)
    scores = {
        score: model.anomaly_score(prepared, score, reference_codes=reference, k=k, iw_samples=iw_samples)
        for score in wanted
    }
    order = torch.argsort(scores[wanted[0]], descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    with atomic_path(args.out) as partial, open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *wanted, "rank"])
        for index, name in enumerate(names):
            writer.writerow([name, *(f"{float(scores[s][index]):.6g}" for s in wanted), int(rank[index])])
    print(f"scored {len(names)} images with {type(model).__name__} ({', '.join(wanted)}): {args.out}")
    return 0
