"""``ae-lightning export RUN_DIR --format torchscript|onnx --out PATH``: a trained detector as one self-contained
file for a production line or a service — no ae-lightning, no Lightning, no data at hand.

The exported scorer takes uint8 images [N, C, H, W] at the size the run trained on (the model's input shape), or at
the camera's size given with ``--input-size H W``: then it resizes (shorter side, antialiased bilinear) and
centre-crops them as the run's data were (``data.image_size``; ``ae_lightning.load(run).prepare``), to the grey level
(``Resize``). The run's standardisation is inside the model. It returns ``(scores, is_anomaly)``: float32 scores [N],
higher = more anomalous, exactly the battery's (``ae_lightning.load(run).anomaly_score``; tested to 1e-5), and bool
flags [N], the score above the run's threshold (set on its normal calibration images for the suite's target
false-positive rate, or for ``--fpr`` from the same calibration scores). ``knn_code`` carries the codes of the run's
training images it compares with, so the file needs nothing else.

    scorer = torch.jit.load("detector.pt")                        # TorchScript
    scores, is_anomaly = scorer(images)                           # uint8 [N, C, H, W]

    session = onnxruntime.InferenceSession("detector.onnx")      # ONNX
    scores, is_anomaly = session.run(None, {"images": images.numpy()})

The file records what it is (variant, score, threshold, target rate, input shape): TorchScript as the extra file
``ae_lightning.json``, ONNX as the model's metadata ``ae_lightning``. TorchScript is deprecated upstream (torch warns
on ``torch.jit.load``) but still what C++ services and older stacks load; ONNX is the durable format.

Refused, with the reason, before anything is written: scores that draw random samples (``elbo``, ``iw_nll``: an
exported draw would not give the battery's scores), runs trained on binarised images, runs without calibration
scores (no threshold to flag with).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from ae_lightning.distances import standard_deviation
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.anomaly import applicable_scores
from ae_lightning.files import atomic_path
from ae_lightning.loading import load
from ae_lightning.scoring import read_thresholds, reference_codes, run_evaluation, threshold_of
from ae_lightning.variants.base import ANOMALY_SCORES, POSTERIOR_SCORES

FORMATS = ("torchscript", "onnx")
EXPORTABLE_SCORES = tuple(score for score in ANOMALY_SCORES if score not in POSTERIOR_SCORES)


class Resize(nn.Module):
    """``data.custom.fit_size`` on uint8 images of one size (H, W): resize the shorter side to ``image_size``
    (antialiased bilinear), then centre-crop square — as the run's data were made, to the grey level.

    torch resizes uint8 images with Pillow's fixed-point kernel: each axis's weights (torch's antialiased
    interpolation of the identity) scaled by 2^p and rounded, the largest p < 22 that keeps them within int16; each
    output pixel ``(Σ w·x + 2^(p-1)) >> p`` clamped to 0–255; the width first, then the height, an axis whose size
    does not change skipped. Here that is two float64 matrix products (exact: the sums stay far below 2^53) and a
    floor, which every export format has (ONNX's TorchScript-based exporter has no antialiased resize). It rests on
    torch's kernel: ``tests/test_anomaly.py``'s resize tests compare it with ``fit_size`` pixel for pixel."""

    def __init__(self, input_size: tuple[int, int], image_size: int) -> None:
        import torchvision.transforms.functional as TF

        super().__init__()
        height, width = input_size
        resized = TF.resize(torch.zeros(1, height, width), [image_size], antialias=True).shape[1:]
        self.resize_width, self.resize_height = width != resized[1], height != resized[0]
        width_weights, self.width_precision = self.fixed_point_weights(width, resized[1])
        height_weights, self.height_precision = self.fixed_point_weights(height, resized[0])
        self.register_buffer("width_weights", width_weights)
        self.register_buffer("height_weights", height_weights)
        # where centre_crop starts: read off a crop of the pixels' own indices
        index = torch.arange(resized[0] * resized[1], dtype=torch.float64).view(1, *resized)
        first = int(TF.center_crop(index, [image_size, image_size])[0, 0, 0])
        self.top, self.left, self.size = first // resized[1], first % resized[1], image_size

    @staticmethod
    def fixed_point_weights(size_in: int, size_out: int) -> tuple[Tensor, int]:
        import torch.nn.functional as F

        identity = torch.eye(size_in, dtype=torch.float64).view(size_in, 1, 1, size_in)
        weights = F.interpolate(identity, size=(1, size_out), mode="bilinear", antialias=True, align_corners=False)
        weights = weights.view(size_in, size_out).T  # [out, in]
        precision = 0
        while precision < 22 and int(0.5 + float(weights.max()) * (1 << (precision + 1))) < (1 << 15):
            precision += 1
        scaled = weights * (1 << precision)
        return torch.where(scaled < 0, scaled - 0.5, scaled + 0.5).trunc(), precision

    @staticmethod
    def fixed_point(sums: Tensor, precision: int) -> Tensor:
        return torch.floor((sums + (1 << (precision - 1))) / (1 << precision)).clamp(0, 255)

    def forward(self, images: Tensor) -> Tensor:
        x = images.double()
        if self.resize_width:
            x = self.fixed_point(x @ self.width_weights.T, self.width_precision)
        if self.resize_height:
            x = self.fixed_point(self.height_weights @ x, self.height_precision)
        return x[:, :, self.top : self.top + self.size, self.left : self.left + self.size].float()


class Scorer(nn.Module):
    """uint8 images [N, C, H, W] → (scores [N], is_anomaly [N]) of one trained model and one score, the same
    operations as ``prepare`` (the resize, where ``input_size`` differs from the model's) and ``anomaly_score``
    without its batching (the caller batches)."""

    def __init__(
        self,
        model: nn.Module,
        score: str,
        threshold: float,
        reference: Tensor | None,
        k: int,
        input_size: tuple[int, int] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self.model, self.score = model, score
        self.resizes = input_size is not None and tuple(input_size) != tuple(model.input_shape[1:])
        self.resize = Resize(input_size, image_size or model.input_shape[1]) if self.resizes else nn.Identity()
        self.register_buffer("threshold", torch.tensor(threshold, dtype=torch.float64))
        if reference is not None:  # knn_code: the training codes, standardised as knn_distance does
            reference = reference.float()
            mean, std = reference.mean(0), standard_deviation(reference)
            self.register_buffer("reference_mean", mean)
            self.register_buffer("reference_std", std)
            self.register_buffer("reference", (reference - mean) / std)
            self.k = min(k, len(reference))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.resize(images).float() / 255
        if self.score == "reconstruction":
            scores = self.model.standardizer.error(self.model(x), x).mean(1).flatten(1).mean(1)
        elif self.score == "center_distance":
            scores = self.model.center_distance(x)
        else:  # knn_code: distances.knn_distance without its 1000-row chunks (a trace would fix their count)
            codes = (self.model.encode(x).float() - self.reference_mean) / self.reference_std
            scores = torch.cdist(codes, self.reference).topk(self.k, largest=False).values.mean(1)
        return scores, scores.double() > self.threshold


@contextmanager
def traceable(model: nn.Module) -> Iterator[None]:
    """Tracing reads every attribute of every module, and a LightningModule's ``trainer`` raises outside a Trainer
    unless its ``_jit_is_scripting`` is set — which Lightning's own ``to_torchscript`` sets. A private name
    (``tests/test_shims.py`` fails if Lightning drops it); without it, TorchScript export says so and ONNX remains."""
    if not hasattr(model, "_jit_is_scripting"):
        raise ConfigError(
            "--format torchscript: this pytorch_lightning has no LightningModule._jit_is_scripting, which tracing a "
            "LightningModule needs; use --format onnx"
        )
    model._jit_is_scripting = True
    try:
        yield
    finally:
        model._jit_is_scripting = False


def build_scorer(
    run: Path, score: str | None, fpr: float | None, input_size: tuple[int, int] | None = None
) -> tuple[Scorer, dict]:
    """The scorer of a run and what it records; a ``ConfigError`` for what cannot be exported."""
    if fpr is not None and not 0 < fpr < 1:
        raise ConfigError(f"--fpr {fpr}: a false-positive rate must be in (0, 1), e.g. 0.01")
    if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
        raise ConfigError(f"--input-size {' '.join(map(str, input_size))}: give two positive integers, H W")
    if not run.is_dir():
        raise ConfigError(
            f"export: {str(run)!r} is not a run directory (results/<suite>/runs/<variant>/…/seed<s>, with its "
            "thresholds.json)"
        )
    model = load(run)
    applicable = [s for s in applicable_scores(model, ANOMALY_SCORES) if s in EXPORTABLE_SCORES]
    thresholds = read_thresholds(run)
    score = score or next((s for s in (thresholds or {}).get("scores", {}) if s in applicable), applicable[0])
    if score in POSTERIOR_SCORES:
        raise ConfigError(
            f"--score {score}: it draws random samples from the posterior, so an exported scorer would not give the "
            f"battery's scores; exportable scores of {type(model).__name__}: {applicable}"
        )
    if score not in applicable:
        raise ConfigError(f"--score {score}: not a score of {type(model).__name__}; exportable: {applicable}")
    binarize = (model.data_config or {}).get("binarize", "none")
    if binarize not in ("none", None):
        raise ConfigError(
            f"export: {run} was trained on data.binarize={binarize}: its inputs are binarised (by a seeded random "
            "draw, or a cut), which the exported scorer does not do; export runs trained on grey-level images"
        )
    decision = threshold_of(thresholds, score, fpr, run)
    if decision is None:
        raise ConfigError(
            f"export: {run} has no calibration scores for {score!r} (thresholds.json), so the exported scorer could "
            "not flag: train it in an anomaly suite with calibration images (data.calibration_size)"
        )
    evaluation = run_evaluation(run)
    k = evaluation.get("anomaly_knn", 5)
    reference = reference_codes(model, run).detach() if score == "knn_code" else None
    image_size = (model.data_config or {}).get("image_size") or model.input_shape[1]
    scorer = Scorer(model, score, decision[0], reference, k, input_size, image_size)
    scorer = scorer.eval().requires_grad_(False)  # outputs without grad
    shape = [model.input_shape[0], *(input_size or model.input_shape[1:])]
    about = {
        "variant": type(model).__name__,
        "run": str(run),
        "score": score,
        "threshold": decision[0],
        "fpr": decision[1],
        "input": {"dtype": "uint8", "shape": ["N", *shape]},
        "resized_to": list(model.input_shape[1:]) if scorer.resizes else None,
        "outputs": ["scores (float32 [N], higher = more anomalous)", "is_anomaly (bool [N])"],
    }
    return scorer, about


def export(
    run: Path,
    format: str,
    out: Path,
    score: str | None = None,
    fpr: float | None = None,
    input_size: tuple[int, int] | None = None,
) -> dict:
    """Write the run's scorer to ``out``; returns what it records."""
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not known; allowed: {list(FORMATS)}")
    scorer, about = build_scorer(run, score, fpr, input_size)
    example = torch.zeros((2, *about["input"]["shape"][1:]), dtype=torch.uint8)
    with torch.no_grad(), atomic_path(out) as partial:
        if format == "torchscript":
            with traceable(scorer.model), warnings.catch_warnings():
                # torch 2.10+ marks TorchScript deprecated (said in the module docstring): one warning per call, noise
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
                traced = torch.jit.trace(scorer, example, check_trace=False)
                torch.jit.save(traced, str(partial), _extra_files={"ae_lightning.json": json.dumps(about)})
        else:
            import onnx

            torch.onnx.export(
                scorer,
                (example,),
                str(partial),
                input_names=["images"],
                output_names=["scores", "is_anomaly"],
                dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}, "is_anomaly": {0: "batch"}},
                dynamo=False,
            )
            exported = onnx.load(str(partial))
            onnx.helper.set_model_props(exported, {"ae_lightning": json.dumps(about)})
            onnx.save(exported, str(partial))
    return about


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ae-lightning export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (results/<suite>/runs/<variant>/…/seed<s>)")
    parser.add_argument("--format", required=True, help=f"one of {list(FORMATS)}")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (.pt for TorchScript, .onnx)")
    parser.add_argument(
        "--score", default=None, help=f"which score (default: the run's first), of {list(EXPORTABLE_SCORES)}"
    )
    parser.add_argument(
        "--fpr", type=float, default=None, help="target false-positive rate of the flags (default: the run's)"
    )
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="the size of the images the scorer will be given (default: the model's); it resizes and centre-crops "
        "them as the run's data were",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    about = export(args.run, args.format, args.out, args.score, args.fpr, args.input_size)
    shape = "×".join(str(size) for size in about["input"]["shape"][1:])
    resized = f" resized to {about['resized_to'][0]}×{about['resized_to'][1]}" if about["resized_to"] else ""
    print(
        f"exported {about['variant']}'s {about['score']} score to {args.out} ({args.format}): uint8 images "
        f"[N, {shape.replace('×', ', ')}]{resized} → (scores, is_anomaly), flagged above {about['threshold']:.6g} "
        f"(target false-positive rate {about['fpr']:g})"
    )
    return 0
