"""``ae-lightning score RUN_DIR --images FOLDER_OR_NPZ --out scores.csv``: anomaly scores of new images from a
trained run, and the decision, for the engineer who trained once and now monitors.

One row per image: its path (a folder's file, or ``FILE.npz#index``), each score (higher = more anomalous),
``is_anomaly`` — 1 where the first score is above the run's threshold, set on its normal calibration images for the
suite's target false-positive rate (``thresholds.json``; ``--fpr`` sets it again, from the same calibration scores,
for another rate) — and ``rank``, 1 for the most anomalous image by the first score. The ``knn_code`` score compares
each code with the codes of the run's own (normal) training images, read from the data the run was trained on (its
``config.yaml``).

Folders of any size are read and scored ``--batch-size`` images at a time (memory bounded by that, plus one score
per image), with a progress line on the error stream. Files that cannot be read are skipped: the rows of every
other image are written, then the unreadable ones are listed and the command exits with 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from ae_lightning.data import ImageDataModule, custom
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.anomaly import applicable_scores, calibrated_threshold
from ae_lightning.files import atomic_path
from ae_lightning.loading import load
from ae_lightning.variants.base import ANOMALY_SCORES

PROGRESS_SECONDS = 10.0  # at most one progress line this often


def read_thresholds(run: Path) -> dict | None:
    """A run's ``thresholds.json`` (each score's threshold and calibration scores), None where it has none."""
    path = run / "thresholds.json" if run.is_dir() else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def threshold_of(thresholds: dict | None, score: str, fpr: float | None, run: Path) -> tuple[float, float] | None:
    """(threshold, target FPR) of ``score``: the run's own, or set again for ``fpr`` from its calibration scores;
    None where the run has no calibration (and no ``fpr`` was asked: that is an error)."""
    if thresholds is None or score not in thresholds["scores"]:
        if fpr is not None:
            raise ConfigError(
                f"--fpr {fpr}: {run} has no calibration scores for {score!r} (thresholds.json), so no threshold can "
                "be set: train it in an anomaly suite with calibration images (data.calibration_size, default a "
                "fifth of the normal validation images)"
            )
        return None
    if fpr is None:
        return thresholds["scores"][score]["threshold"], thresholds["fpr"]
    threshold, _ = calibrated_threshold(torch.tensor(thresholds["scores"][score]["calibration_scores"]), fpr)
    return threshold, fpr


def image_chunks(path: Path, batch_size: int) -> Iterator[tuple[list, list[str], list[tuple[str, str]]]]:
    """(images, their names, unreadable (name, why)) ``batch_size`` files at a time: an image folder (sorted, class
    sub-folders or flat) or a .npz/.pt file with ``images``."""
    if path.is_dir():
        files, _ = custom.folder_files(path)
        channels = None
        for start in range(0, len(files), batch_size):
            images, names, unreadable = [], [], []
            for file in files[start : start + batch_size]:
                try:
                    image = custom.read_image(file, channels)
                except ConfigError as err:
                    unreadable.append((str(file), str(err).split(": ", 2)[-1]))
                    continue
                if channels is None:  # every file read as the first readable one is (grey or colour)
                    channels = image.shape[0] if image.shape[0] in (1, 3) else None
                images.append(image)
                names.append(str(file))
            yield images, names, unreadable
    elif path.is_file():
        images, _ = custom.load_tensors(path, None)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            yield list(chunk), [f"{path}#{index}" for index in range(start, start + len(chunk))], []
    else:
        raise ConfigError(
            f"--images {str(path)!r}: no such folder or file (an image folder, or a .npz/.pt with 'images')"
        )


def count_images(path: Path) -> int | None:
    return len(custom.folder_files(path)[0]) if path.is_dir() else None


def run_evaluation(run: Path) -> dict:
    """The evaluation settings a run's battery used (run.json), {} for a bare checkpoint."""
    info = run / "run.json" if run.is_dir() else None
    return (json.loads(info.read_text()).get("evaluation") or {}) if info and info.is_file() else {}


def reference_codes(model, run: Path) -> torch.Tensor:
    """The battery's knn_code reference: codes of the run's training images, as many as it used."""
    if not model.data_config:
        raise ConfigError(f"{run}: knn_code needs the run's training data, and no data config came with it")
    datamodule = ImageDataModule(**{**model.data_config, "read_test": False})
    datamodule.setup("fit")
    count = run_evaluation(run).get("probe_train_samples")
    with torch.no_grad():
        train = datamodule.evaluated_train_images()[:count]
        return torch.cat([model.encode(chunk.float().div(255)) for chunk in train.split(500)])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ae-lightning score", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (results/<suite>/runs/<variant>/seed<s>) or a .ckpt")
    parser.add_argument("--images", type=Path, required=True, help="image folder, or .npz/.pt file with 'images'")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default scores.csv)")
    parser.add_argument(
        "--scores", nargs="+", default=None, help=f"which scores (default: all that apply), of {list(ANOMALY_SCORES)}"
    )
    parser.add_argument(
        "--fpr",
        type=float,
        default=None,
        help="target false-positive rate of is_anomaly, in (0, 1) (default: the run's, set by its suite)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images read and scored at a time (256)")
    parser.add_argument(
        "--k", type=int, default=None, help="neighbours of knn_code (default: the run's anomaly_knn, 5)"
    )
    parser.add_argument(
        "--iw-samples", type=int, default=None, help="importance samples of iw_nll (default: the run's, 100)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.fpr is not None and not 0 < args.fpr < 1:
        raise ConfigError(f"--fpr {args.fpr}: a false-positive rate must be in (0, 1), e.g. 0.01")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be >= 1")
    if not args.images.exists():
        raise ConfigError(f"--images {str(args.images)!r}: no such folder or file (an image folder, or a .npz/.pt)")
    model = load(args.run)
    applicable = applicable_scores(model, ANOMALY_SCORES)
    wanted = args.scores or applicable
    for score in wanted:
        if score not in applicable:
            raise ConfigError(f"--scores {score}: not a score of {type(model).__name__}; allowed: {applicable}")
    decision = threshold_of(read_thresholds(args.run), wanted[0], args.fpr, args.run)
    reference = reference_codes(model, args.run) if "knn_code" in wanted else None
    evaluation = run_evaluation(args.run)
    k = args.k or evaluation.get("anomaly_knn", 5)
    iw_samples = args.iw_samples or evaluation.get("anomaly_iw_samples", 100)

    names: list[str] = []
    scores: dict[str, list[torch.Tensor]] = {score: [] for score in wanted}
    unreadable: list[tuple[str, str]] = []
    total, started, last_line = count_images(args.images), time.monotonic(), time.monotonic()
    for images, chunk_names, chunk_unreadable in image_chunks(args.images, args.batch_size):
        unreadable += chunk_unreadable
        if not images:
            continue
        prepared = torch.stack([model.prepare(image.unsqueeze(0))[0] for image in images])  # each resized alone
        for score in wanted:
            scores[score].append(
                model.anomaly_score(prepared, score, reference_codes=reference, k=k, iw_samples=iw_samples).cpu()
            )
        names += chunk_names
        if time.monotonic() - last_line >= PROGRESS_SECONDS:
            last_line, done = time.monotonic(), len(names) + len(unreadable)
            rate = len(names) / (last_line - started)
            of = f"/{total}" if total else ""
            print(f"score: {done}{of} images ({rate:.0f} images/s)", file=sys.stderr, flush=True)
    if not names:
        raise ConfigError(f"--images {args.images}: none of its {len(unreadable)} images could be read")
    values = {score: torch.cat(parts) for score, parts in scores.items()}
    order = torch.argsort(values[wanted[0]], descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    flagged = None if decision is None else values[wanted[0]].double() > decision[0]
    with atomic_path(args.out) as partial, open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", *wanted, *(["is_anomaly"] if flagged is not None else []), "rank"])
        for index, name in enumerate(names):
            decided = [int(flagged[index])] if flagged is not None else []
            writer.writerow([name, *(f"{float(values[s][index]):.6g}" for s in wanted), *decided, int(rank[index])])
    line = f"scored {len(names)} images with {type(model).__name__} ({', '.join(wanted)}): {args.out}"
    if decision is None:
        line += "; no is_anomaly column: the run has no calibrated threshold (thresholds.json)"
    else:
        line += (
            f"; {int(flagged.sum())} flagged as anomalies ({wanted[0]} > {decision[0]:.6g}, the threshold for a "
            f"false-positive rate of {decision[1]:g} on normal images)"
        )
    print(line)
    if unreadable:
        listed = "\n".join(f"  {name}: {why}" for name, why in unreadable)
        print(f"error: {len(unreadable)} images could not be read (not scored):\n{listed}", file=sys.stderr)
        return 1
    return 0
