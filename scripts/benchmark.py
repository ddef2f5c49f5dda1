"""Training speed of ae-lightning against a minimal hand-written PyTorch loop, and each variant's step cost.

    python scripts/benchmark.py                      # MLP AE 784-512-256-32, Fashion-MNIST, batch 128, Adam
    python scripts/benchmark.py --rounds 5 --json benchmarks/results.json

In one process, in rotating rounds, it times one training epoch of (a) this framework's ``Trainer.fit`` (logging
to CSV every 50 steps, as a user runs it; no validation, which the loop does not do either), (b) a hand-written
loop with the same network, optimizer, batch size and data (a preloaded float tensor sliced by a per-epoch
permutation), and (c) the least any Lightning trainer can cost: a minimal LightningModule with the same network and
optimizer, fed the loop's float batches, logging nothing. It reports samples/s of each and the ratios to the loop
(median and range over rounds); (c) is the floor under (a) that Lightning's own per-step work sets. Then the step
time of every variant relative to the plain AE, and the peak resident memory of a full-epoch fit of (a) and (b),
measured in fresh processes. Runs on CUDA when present, else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from ae_lightning import VARIANTS, ImageDataModule
from ae_lightning.devices import peak_rss_mb, synchronize
from ae_lightning.variants.base import AutoencoderBase

BATCH_SIZE = 128


def data_module(root: str, noise: dict | None = None, loader: str = "memory") -> ImageDataModule:
    dm = ImageDataModule(
        name="fashion_mnist", root=root, download=True, batch_size=BATCH_SIZE, val_size=0, noise=noise, loader=loader
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


class EpochTimer(pl.Callback):
    """Seconds of a training epoch, with the device's queued work finished at both ends (CUDA runs asynchronously:
    an unsynchronised timer measures how fast Python queues kernels, not how fast they run)."""

    def on_train_epoch_start(self, trainer, pl_module):
        synchronize(pl_module.device)
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        synchronize(pl_module.device)
        self.seconds = time.perf_counter() - self.started


def one_epoch_trainer(timer: EpochTimer, **kwargs) -> pl.Trainer:
    """One epoch on one device, timed by ``timer``; no checkpoints, progress bar or summary (kwargs add to it)."""
    return pl.Trainer(
        max_epochs=1,
        accelerator="auto",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        **kwargs,
    )


def framework_epoch(model: AutoencoderBase, dm: ImageDataModule, max_steps: int = -1) -> tuple[float, int]:
    """Seconds and samples of one training epoch through ``Trainer.fit``."""
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = one_epoch_trainer(timer, max_steps=max_steps, logger=CSVLogger(log_dir), log_every_n_steps=50)
        trainer.fit(model, datamodule=dm)
    return timer.seconds, trainer.global_step * BATCH_SIZE


def hand_written_epoch(model: AutoencoderBase, images: torch.Tensor, device: torch.device, seed: int) -> float:
    """The reference: preloaded float tensor, index slicing, forward, MSE, backward, step. Nothing else."""
    encoder, decoder = model.encoder.to(device), model.decoder.to(device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *decoder.parameters()], lr=1e-3, weight_decay=0.0)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).to(device)
    synchronize(device)
    started = time.perf_counter()
    for index in order.split(BATCH_SIZE):
        x = images[index]
        loss = torch.nn.functional.mse_loss(torch.sigmoid(decoder(encoder(x))), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - started


class MinimalModule(pl.LightningModule):
    """(c): Lightning with nothing of this framework's: the same networks and loss, plain tensor batches, no logging."""

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def training_step(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.mse_loss(torch.sigmoid(self.decoder(self.encoder(x))), x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.0)


class FloatBatches:
    """The loop's batches (slices of the preloaded float tensor, per-epoch seeded permutation) as an iterable."""

    def __init__(self, images: torch.Tensor, seed: int) -> None:
        self.images, self.seed = images, seed

    def __len__(self) -> int:
        return -(-len(self.images) // BATCH_SIZE)

    def __iter__(self):
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.seed))
        for index in order.to(self.images.device).split(BATCH_SIZE):
            yield self.images[index]


def minimal_lightning_epoch(model: AutoencoderBase, images: torch.Tensor, seed: int) -> float:
    """Seconds of one epoch of (c) over ``images``."""
    timer = EpochTimer()
    minimal = MinimalModule(model.encoder, model.decoder)
    one_epoch_trainer(timer, logger=False).fit(minimal, train_dataloaders=FloatBatches(images, seed))
    return timer.seconds


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compare_with_loop(dm: ImageDataModule, rounds: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = (dm.splits["train"].images.float() / 255).to(device)
    kinds = ["framework", "loop", "minimal_lightning"]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_index in range(rounds):
        for which in kinds[round_index % 3 :] + kinds[: round_index % 3]:  # rotate who goes first
            pl.seed_everything(round_index, verbose=False)
            model = VARIANTS["Autoencoder"]()
            if which == "framework":
                seconds, samples = framework_epoch(model, dm)
                rates[which].append(samples / seconds)
            elif which == "loop":
                rates[which].append(len(images) / hand_written_epoch(model, images, device, round_index))
            else:
                rates[which].append(len(images) / minimal_lightning_epoch(model, images, round_index))
        framework, loop, minimal = (rates[kind][-1] for kind in kinds)
        print(
            f"round {round_index + 1}/{rounds}: framework {framework:.0f} samples/s, loop {loop:.0f}, "
            f"minimal LightningModule {minimal:.0f}; framework/loop {framework / loop:.3f}",
            flush=True,
        )
    loop = rates["loop"]
    return {
        "framework_samples_per_s": summary(rates["framework"]),
        "loop_samples_per_s": summary(loop),
        "minimal_lightning_samples_per_s": summary(rates["minimal_lightning"]),
        "ratio": summary([f / h for f, h in zip(rates["framework"], loop)]),
        "minimal_lightning_ratio": summary([m / h for m, h in zip(rates["minimal_lightning"], loop)]),
        "framework_over_minimal_lightning": summary(
            [f / m for f, m in zip(rates["framework"], rates["minimal_lightning"])]
        ),
    }


def per_step_overhead(dm: ImageDataModule, rounds: int, steps: int = 300) -> dict:
    """Milliseconds per step that are not computation: the same three with a tiny network (784-8-2), whose step
    is almost all framework, Lightning and optimizer bookkeeping; the loop's time is the floor of any trainer."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = (dm.splits["train"].images[: steps * BATCH_SIZE].float() / 255).to(device)
    tiny = {"hidden_dims": [8], "latent_dim": 2}
    times: dict[str, list[float]] = {"framework": [], "minimal_lightning": [], "loop": []}
    for round_index in range(rounds):
        pl.seed_everything(round_index, verbose=False)
        seconds, samples = framework_epoch(VARIANTS["Autoencoder"](**tiny), dm, max_steps=steps)
        times["framework"].append(seconds / (samples / BATCH_SIZE))
        times["minimal_lightning"].append(
            minimal_lightning_epoch(VARIANTS["Autoencoder"](**tiny), images, round_index) / steps
        )
        times["loop"].append(hand_written_epoch(VARIANTS["Autoencoder"](**tiny), images, device, round_index) / steps)
    ms = {kind: 1000 * statistics.median(values) for kind, values in times.items()}
    return {
        "step_ms": ms,
        "lightning_ms": ms["minimal_lightning"] - ms["loop"],
        "framework_beyond_lightning_ms": ms["framework"] - ms["minimal_lightning"],
    }


VARIANT_SETTINGS = {
    "Autoencoder": {},
    "DenoisingAutoencoder": {},
    "SparseAutoencoder (l1)": {"penalty": "l1"},
    "SparseAutoencoder (kl)": {"penalty": "kl"},
    "SparseAutoencoder (topk)": {"penalty": "topk"},
    "DropoutAutoencoder": {},
    "ContractiveAutoencoder (estimate)": {"jacobian": "estimate"},
    "ContractiveAutoencoder (exact)": {"jacobian": "exact"},
    "VariationalAutoencoder": {},
    "Autoencoder (data.loader=dataloader, 2 workers)": {},
}


def step_seconds(name: str, kwargs: dict, steps: int, root: str) -> float:
    model = VARIANTS[name.split(" ")[0]](**kwargs)
    noise = {"kind": "gaussian", "level": 0.3} if name.startswith("Denoising") else None
    loader = "dataloader" if "DataLoader" in name else "memory"
    seconds, samples = framework_epoch(model, data_module(root, noise, loader), max_steps=steps)
    return seconds / (samples / BATCH_SIZE)


def variant_ratios(root: str, steps: int, rounds: int) -> dict:
    """Each variant's step time over its reference's (the plain AE; the single-layer AE for the closed form), each
    timed right after its reference so that both see the same machine load; median of the per-round ratios."""
    single = {"hidden_dims": [], "latent_dim": 256}
    rows = [(name, "Autoencoder", {}, kwargs) for name, kwargs in VARIANT_SETTINGS.items() if name != "Autoencoder"]
    rows.append(("ContractiveAutoencoder (closed form)", "Autoencoder (single layer)", single, single))
    times: dict[str, list[float]] = {"Autoencoder": [], "Autoencoder (single layer)": []}
    ratios: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, reference, reference_kwargs, kwargs in rows:
            timed_steps = steps if "exact" not in name else max(2, steps // 10)
            reference_time = step_seconds("Autoencoder", reference_kwargs, timed_steps, root)
            variant_time = step_seconds(name, kwargs, timed_steps, root)
            times[reference].append(reference_time)
            times.setdefault(name, []).append(variant_time)
            ratios.setdefault(name, []).append(variant_time / reference_time)
    result = {"Autoencoder": {"step_ms": 1000 * statistics.median(times["Autoencoder"]), "ratio_to_ae": 1.0}}
    for name, reference, _, _ in rows:
        result[name] = {
            "step_ms": 1000 * statistics.median(times[name]),
            "ratio_to_ae": statistics.median(ratios[name]),
            "ratio_range": [min(ratios[name]), max(ratios[name])],
        }
        if reference != "Autoencoder":
            result[name]["compared_with"] = reference
            result[reference] = {"step_ms": 1000 * statistics.median(times[reference])}
    return result


def peak_rss_child(which: str, root: str) -> None:
    """One full epoch in this fresh process, then print its peak resident set in MiB."""
    pl.seed_everything(0, verbose=False)
    dm = data_module(root)
    model = VARIANTS["Autoencoder"]()
    if which == "framework":
        framework_epoch(model, dm)
    else:
        images = dm.splits.pop("train").images.float().div_(255)  # one float copy, no temporary
        dm.splits.clear()
        hand_written_epoch(model, images, torch.device("cpu"), 0)
    print(peak_rss_mb())  # VmHWM: ru_maxrss would carry over the parent's (this script's) peak


def peak_rss(root: str) -> dict:
    result = {}
    for which in ("loop", "framework"):
        output = subprocess.run(
            [sys.executable, __file__, "--root", root, "--rss-child", which], capture_output=True, text=True, check=True
        ).stdout
        result[which] = float(output.strip().splitlines()[-1])
    result["ratio"] = result["framework"] / result["loop"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="data", help="data directory (torchvision layout)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each times all three once)")
    parser.add_argument("--variant-steps", type=int, default=200, help="steps timed per variant")
    parser.add_argument("--variant-rounds", type=int, default=5, help="rounds of variant timings (median ratio)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--rss-child", choices=["framework", "loop"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        peak_rss_child(args.rss_child, args.root)
        return
    torch.set_float32_matmul_precision("high")
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
            "lightning": pl.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "command": " ".join(sys.argv),
        "framework_vs_loop": compare_with_loop(data_module(args.root), args.rounds),
        "per_step_overhead": per_step_overhead(data_module(args.root), args.rounds),
        "variants": variant_ratios(args.root, args.variant_steps, args.variant_rounds),
        "peak_rss_mb": peak_rss(args.root),
    }
    loop = results["framework_vs_loop"]
    print(
        f"\nframework / hand-written loop: {loop['ratio']['median']:.3f} "
        f"(range {loop['ratio']['min']:.3f}-{loop['ratio']['max']:.3f}); "
        f"framework {loop['framework_samples_per_s']['median']:.0f} samples/s, "
        f"loop {loop['loop_samples_per_s']['median']:.0f} samples/s"
    )
    print(
        f"minimal LightningModule / hand-written loop: {loop['minimal_lightning_ratio']['median']:.3f} "
        f"(range {loop['minimal_lightning_ratio']['min']:.3f}-{loop['minimal_lightning_ratio']['max']:.3f}): "
        f"the floor Lightning's per-step work sets; framework / minimal LightningModule "
        f"{loop['framework_over_minimal_lightning']['median']:.3f}"
    )
    overhead = results["per_step_overhead"]
    print(
        f"per-step work beyond computation (784-8-2 network): Lightning {overhead['lightning_ms']:.3f} ms, "
        f"this framework on top of Lightning {overhead['framework_beyond_lightning_ms']:.3f} ms "
        f"(ms/step: loop {overhead['step_ms']['loop']:.3f}, minimal LightningModule "
        f"{overhead['step_ms']['minimal_lightning']:.3f}, framework {overhead['step_ms']['framework']:.3f})"
    )
    for name, row in results["variants"].items():
        if "ratio_to_ae" not in row:
            print(f"{name:48s} {row['step_ms']:8.2f} ms/step")
            continue
        spread = " (range {:.2f}-{:.2f})".format(*row["ratio_range"]) if "ratio_range" in row else ""
        print(
            f"{name:48s} {row['step_ms']:8.2f} ms/step  {row['ratio_to_ae']:.2f} x "
            f"{row.get('compared_with', 'Autoencoder')}{spread}"
        )
    rss = results["peak_rss_mb"]
    print(
        f"peak RSS of a full epoch: framework {rss['framework']:.0f} MiB, loop {rss['loop']:.0f} MiB "
        f"({rss['ratio']:.3f} x)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
