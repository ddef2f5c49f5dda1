"""Before the first run of a suite starts: its data resolved once, in this process. A setting that would make every
run fail (``data.val_size`` larger than the training images, missing files) is one ``ConfigError`` now — one
message, exit 2, nothing started — instead of the same traceback in every run; evaluation sample counts larger than
the data has are said once, as what the battery will actually use. Downloads happen here too (``prepare_data``, in
the one process that plans the runs), so parallel runs never race to download the same files."""

from __future__ import annotations

import json
import math
from typing import Any

from ae_lightning.data import ImageDataModule
from ae_lightning.errors import ConfigError, DataNotFoundError
from ae_lightning.evaluation.battery import SMALL_TEST_SPLIT, EvaluationSettings
from ae_lightning.suite.config import SuiteConfig, variant_data
from ae_lightning.variants import VARIANTS
from ae_lightning.variants.base import Samples

# Data settings that change how images are served or corrupted in training, not which images there are.
SERVING_KEYS = (
    "noise",
    "val_noise",
    "batch_size",
    "num_workers",
    "loader",
    "data_on_device",
    "shuffle_seed",
    "predict_split",
)


def split_sizes(data: dict[str, Any], read_test: bool = True) -> dict[str, int]:
    """The number of training, validation (and test) images this data setting resolves to (its files are fetched
    where ``download`` allows; a ``ConfigError`` where it cannot be split as asked)."""
    datamodule = ImageDataModule(**{**data, "read_test": read_test})
    datamodule.prepare_data()
    datamodule.setup()
    return {split: len(images.images) for split, images in datamodule.splits.items()}


def count_notes(sizes: dict[str, int], evaluation: dict[str, Any], generative: bool = True) -> list[str]:
    """One line per evaluation count the data cannot give, saying what the battery will use instead; with
    ``generative`` (a variant samples and the suite is not anomaly detection) the Fréchet distances' too, or why
    they are skipped."""
    defaults = EvaluationSettings()
    wanted = {
        "probe_train_samples": ("train", "the probes fit on"),
        "jacobian_samples": ("test", "the Jacobian norm averages"),
        "iw_images": ("test", "the importance-weighted NLL averages"),
    }
    notes = []
    if generative and "test" in sizes:
        samples = min(evaluation.get("gen_samples", defaults.gen_samples), sizes["test"])
        floor = evaluation.get("gen_min_images", defaults.gen_min_images)
        if samples < floor:
            notes.append(
                f"Fréchet distances (gen/*) skipped: {samples} test images, fewer than evaluation.gen_min_images="
                f"{floor} (below that their bias swamps the differences between models); evaluation.gen_min_images:"
                " 0 computes them anyway"
            )
        else:
            wanted["gen_samples"] = ("test", "the Fréchet distances compare")
    for key, (split, use) in wanted.items():
        count = evaluation.get(key, getattr(defaults, key))
        if count is not None and split in sizes and count > sizes[split]:
            notes.append(
                f"evaluation.{key}={count}, but the {split} split has {sizes[split]} images: {use} {sizes[split]}"
            )
    fpr = evaluation.get("anomaly_fpr", defaults.anomaly_fpr)
    needed = math.ceil(1 / fpr - 1 - 1e-9)
    if sizes.get("calibration") and sizes["calibration"] < needed:
        count = sizes["calibration"]
        notes.append(
            f"the calibration split has {count} normal images, too few for evaluation.anomaly_fpr={fpr:g} (that needs "
            f"{needed}): each threshold will be the largest calibration score, which promises a false-positive rate "
            f"of 1/{count + 1} only; raise data.val_size or data.calibration_size"
        )
    if "test" in sizes and sizes["test"] < SMALL_TEST_SPLIT:
        notes.append(
            f"the test split has {sizes['test']} images: the battery's scores move by chance between test splits "
            "this small, and the report says so"
        )
    return notes


def images_of(data: dict[str, Any]) -> str:
    """What identifies the images a data setting resolves to (its serving and corruption settings left out)."""
    return json.dumps({k: v for k, v in data.items() if k not in SERVING_KEYS}, sort_keys=True, default=str)


def check_suite_data(suite: SuiteConfig, read_test: bool = True) -> list[str]:
    """Resolve each distinct data setting of the suite's variants once; raise a ``ConfigError`` naming the variant
    where one cannot be used, and return the notes to print (evaluation counts the data cannot give).
    ``read_test=False`` (tuning, which never reads the test split) checks the training files only."""
    checked: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    classes = suite.get("one_class") or [None]  # the one-class protocol: each class's split (its calibration)
    for variant, normal_class in ((v, c) for v in suite["variants"] for c in classes):
        data = variant_data(suite, variant) | ({} if normal_class is None else {"normal_classes": [normal_class]})
        key = images_of(data)
        if key in checked:
            continue
        try:
            checked[key] = split_sizes({k: v for k, v in data.items() if k not in SERVING_KEYS}, read_test)
        except (ConfigError, DataNotFoundError) as err:  # the same for every run of these variants: stop now
            used_by = [
                v["name"]
                for v in suite["variants"]
                if images_of(variant_data(suite, v) | {k: data[k] for k in ("normal_classes",) if k in data}) == key
            ]
            scope = "every variant" if len(used_by) == len(suite["variants"]) else ", ".join(used_by)
            raise type(err)(f"{err} — nothing was run: this data setting is {scope}'s") from None
        generative = "one_class" not in suite and any(
            "normal_classes" not in variant_data(suite, v) and issubclass(VARIANTS[v["model"]], Samples)
            for v in suite["variants"]
        )
        notes += [note for note in count_notes(checked[key], suite["evaluation"], generative) if note not in notes]
    return notes
