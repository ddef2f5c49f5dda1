"""ae-lightning's VAE against pythae's ``VAE`` trained by its own trainer, at equal settings:

MLP encoder 784-512-256 → (μ, log σ²) of 32 units, decoder 32-256-512-784 (Bernoulli likelihood), 20 epochs,
batch 128, Adam at 1e-3, the same statically binarised training images (``data.binarize: static``), and the
importance-weighted NLL with k = 1000 on the same binarised test images — by each library's own estimator and by
one estimator for both (this project's ``importance_weighted_log_likelihood``).

    python benchmarks/pythae_vae.py --data-root DATA                    # Fashion-MNIST (offline on Debian)
    python benchmarks/pythae_vae.py --data-root DATA --dataset mnist    # where MNIST can be had
    python benchmarks/pythae_vae.py --data-root DATA --epochs 2 --iw-images 200 --json out.json   # a quick look

Needs pythae (``pip install pythae``; 0.1.2 runs with this project's torch).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time

import pytorch_lightning as pl
import torch
from torch import nn

from ae_lightning import ImageDataModule, VariationalAutoencoder
from ae_lightning.evaluation.battery import importance_weighted_log_likelihood
from ae_lightning.variants.vae import bernoulli_nll

HIDDEN, LATENT, BATCH, LEARNING_RATE = (512, 256), 32, 128, 1e-3


def binarised_splits(name: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) float images in {0, 1}: one fixed Bernoulli draw per image (seeded), as the suites use."""
    dm = ImageDataModule(name=name, root=root, val_size=0, binarize="static", batch_size=BATCH)
    dm.prepare_data()
    dm.setup("fit")
    return dm.splits["train"].images.float() / 255, dm.splits["test"].images.float() / 255


def train_ours(name: str, root: str, epochs: int, seed: int) -> tuple[VariationalAutoencoder, float]:
    pl.seed_everything(seed, verbose=False)
    dm = ImageDataModule(name=name, root=root, val_size=0, binarize="static", batch_size=BATCH)
    model = VariationalAutoencoder(latent_dim=LATENT, hidden_dims=HIDDEN, learning_rate=LEARNING_RATE)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return model.eval(), time.perf_counter() - started


def pythae_networks():
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
            self.mu, self.log_var = nn.Linear(256, LATENT), nn.Linear(256, LATENT)

        def forward(self, x):
            h = self.body(x)
            return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784)
            )

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.body(z)).view(-1, 1, 28, 28))

    return Encoder(), Decoder()


def train_pythae(train: torch.Tensor, epochs: int, seed: int):
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    torch.manual_seed(seed)
    encoder, decoder = pythae_networks()
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"), encoder, decoder)
    with tempfile.TemporaryDirectory() as output_dir:
        config = BaseTrainerConfig(
            output_dir=output_dir,
            num_epochs=epochs,
            per_device_train_batch_size=BATCH,
            learning_rate=LEARNING_RATE,
            optimizer_cls="Adam",
            seed=seed,
            no_cuda=not torch.cuda.is_available(),
        )
        started = time.perf_counter()
        dataset = BaseDataset(train, torch.zeros(len(train)))  # pythae's dataset type (labels unused)
        BaseTrainer(model, train_dataset=dataset, training_config=config).train()
        seconds = time.perf_counter() - started
    return model.eval(), seconds


class PythaeAsPosterior(nn.Module):
    """pythae's VAE seen through this project's estimator: q(z|x) from its encoder, Bernoulli logits from its
    decoder's probabilities."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.decoder = lambda z: torch.logit(model.decoder(z).reconstruction.clamp(1e-7, 1 - 1e-7))

    def posterior(self, x):
        out = self.model.encoder(x)
        return out.embedding, out.log_covariance

    def negative_log_likelihood(self, logits, x):
        return bernoulli_nll(logits, x)


@torch.no_grad()
def our_estimate(model, test: torch.Tensor, k: int, seed: int) -> float:
    torch.manual_seed(seed)
    return -torch.cat([importance_weighted_log_likelihood(model, x, k) for x in test.split(10)]).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--iw-images", type=int, default=2000, help="test images the NLL is estimated on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    train, test = binarised_splits(args.dataset, args.data_root)
    test = test[: args.iw_images]
    ours, our_seconds = train_ours(args.dataset, args.data_root, args.epochs, args.seed)
    theirs, their_seconds = train_pythae(train, args.epochs, args.seed)
    started = time.perf_counter()
    their_own = theirs.get_nll(test, n_samples=args.k, batch_size=min(args.k, 1000))
    their_own_seconds = time.perf_counter() - started
    results = {
        "dataset": args.dataset,
        "protocol": (
            f"static binarisation (seeded), Bernoulli likelihood, MLP 784-512-256-{LATENT}, {args.epochs} epochs, "
            f"batch {BATCH}, Adam {LEARNING_RATE}, IW-NLL k={args.k} on the first {len(test)} binarised test images"
        ),
        "ae_lightning": {
            "nll_iw": our_estimate(ours, test, args.k, args.seed),
            "fit_seconds": our_seconds,
        },
        "pythae": {
            "nll_iw_pythae_get_nll": float(their_own),
            "nll_iw_same_estimator": our_estimate(PythaeAsPosterior(theirs), test, args.k, args.seed),
            "fit_seconds": their_seconds,
            "get_nll_seconds": their_own_seconds,
        },
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", CPU"),
        "torch": torch.__version__,
    }
    print(json.dumps(results, indent=2))
    difference = results["ae_lightning"]["nll_iw"] - results["pythae"]["nll_iw_same_estimator"]
    print(f"ae-lightning − pythae (same estimator): {difference:+.2f} nats ({'better' if difference < 0 else 'worse'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    assert math.isfinite(difference)


if __name__ == "__main__":
    main()
