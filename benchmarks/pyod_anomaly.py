"""ae-lightning's autoencoder against PyOD's ``AutoEncoder`` detector on the one-class Fashion-MNIST protocol
(Ruff et al. 2018: each class in turn is normal, the nine others are the anomalies), at equal epochs, on the same
splits, over seeds; AUROC of each detector's score on the whole test split, next to the two baselines that learn
nothing (k-NN distance in pixel space, PCA reconstruction error).

- ours: ``Autoencoder`` with its defaults (MLP 784-512-256-32, Adam 1e-3), batch 128, the reconstruction-error score;
- PyOD default: ``pyod.models.auto_encoder.AutoEncoder`` as its users get it (hidden 64-32, batch norm, dropout
  0.2, standardised inputs), batch 128, its ``decision_function``;
- PyOD, our widths: the same detector with hidden 512-256-32, no batch norm, no dropout, raw [0, 1] inputs;
- PyOD DeepSVDD: ``pyod.models.deep_svdd.DeepSVDD`` as its users get it (an MLP 64-32, standardised inputs, centre
  from the initial codes, batch 128 like the others), ``--epochs`` epochs. ``--detectors`` picks some of them.

    python benchmarks/pyod_anomaly.py --data-root DATA --json benchmarks/pyod_anomaly.json
    python benchmarks/pyod_anomaly.py --data-root DATA --classes 0 3 --seeds 0 --epochs 2    # a quick look

Needs PyOD (``pip install pyod``; 3.6.7 runs with this project's torch).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import pytorch_lightning as pl
import torch

from ae_lightning import Autoencoder, ImageDataModule
from ae_lightning.evaluation.anomaly import detection_metrics
from ae_lightning.evaluation.baseline import anomaly_baselines

BATCH, VAL_SIZE = 128, 6000
DETECTORS = (
    "ae-lightning AE",
    "PyOD AutoEncoder (defaults)",
    "PyOD AutoEncoder (our widths)",
    "PyOD DeepSVDD (defaults)",
)


def splits(name: str, root: str, normal: int):
    dm = ImageDataModule(name=name, root=root, val_size=VAL_SIZE, normal_classes=[normal], batch_size=BATCH)
    dm.prepare_data()
    dm.setup("fit")
    return dm, dm.splits["train"].images, dm.splits["test"].images, dm.test_is_anomaly


def ours(dm: ImageDataModule, test: torch.Tensor, epochs: int, seed: int) -> tuple[float, float]:
    pl.seed_everything(seed, verbose=False)
    model = Autoencoder(input_shape=dm.image_shape)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - started
    return model.eval().anomaly_score(test, "reconstruction"), seconds


def pyod(train: torch.Tensor, test: torch.Tensor, epochs: int, seed: int, our_widths: bool):
    from pyod.models.auto_encoder import AutoEncoder

    options = dict(epoch_num=epochs, batch_size=BATCH, random_state=seed, verbose=0, device="cpu")
    if our_widths:
        options |= dict(hidden_neuron_list=[512, 256, 32], batch_norm=False, dropout_rate=0.0, preprocessing=False)
    detector = AutoEncoder(**options)
    x_train, x_test = (train.flatten(1).float() / 255).numpy(), (test.flatten(1).float() / 255).numpy()
    started = time.perf_counter()
    detector.fit(x_train)
    seconds = time.perf_counter() - started
    return torch.from_numpy(detector.decision_function(x_test)), seconds


def pyod_deep_svdd(train: torch.Tensor, test: torch.Tensor, epochs: int, seed: int):
    from pyod.models.deep_svdd import DeepSVDD

    x_train, x_test = (train.flatten(1).float() / 255).numpy(), (test.flatten(1).float() / 255).numpy()
    detector = DeepSVDD(n_features=x_train.shape[1], epochs=epochs, batch_size=BATCH, random_state=seed, verbose=0)
    started = time.perf_counter()
    detector.fit(x_train)
    seconds = time.perf_counter() - started
    return torch.from_numpy(detector.decision_function(x_test)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument(
        "--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS), help="which detectors (default: all)"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    detectors = tuple(args.detectors)
    rows = []
    for normal in args.classes:
        dm, train, test, is_anomaly = splits(args.dataset, args.data_root, normal)
        baseline = anomaly_baselines(train, test, is_anomaly, knn=5)
        row = {
            "class": normal,
            "pixel_knn": baseline["anomaly/pixel_knn/auroc"],
            "pca": baseline["anomaly/pca/auroc"],
            "train_images": len(train),
        }
        for name in detectors:
            aurocs, seconds = [], []
            for seed in args.seeds:
                if name.startswith("ae-lightning"):
                    scores, took = ours(dm, test, args.epochs, seed)
                elif "DeepSVDD" in name:
                    scores, took = pyod_deep_svdd(train, test, args.epochs, seed)
                else:
                    scores, took = pyod(train, test, args.epochs, seed, our_widths="our widths" in name)
                aurocs.append(detection_metrics(scores, is_anomaly)["auroc"])
                seconds.append(took)
            row[name] = {"auroc": aurocs, "mean": statistics.fmean(aurocs), "fit_seconds": statistics.fmean(seconds)}
        rows.append(row)
        cells = "  ".join(f"{n}: {row[n]['mean']:.3f}" for n in detectors)
        print(f"class {normal}: {cells}  pixel kNN {row['pixel_knn']:.3f}  PCA {row['pca']:.3f}", flush=True)
    means = {n: statistics.fmean(r[n]["mean"] for r in rows) for n in detectors}
    means |= {b: statistics.fmean(r[b] for r in rows) for b in ("pixel_knn", "pca")}
    print("mean over classes: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": "python benchmarks/pyod_anomaly.py "
                    + " ".join(
                        f"--{k.replace('_', '-')} {v}"
                        for k, v in vars(args).items()
                        if k not in ("json", "no_deep_svdd")
                    ),
                    "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                    "rows": rows,
                    "mean_over_classes": means,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
