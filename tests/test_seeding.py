"""Every random stream of a run comes from (run seed, stream, index) through one mixer: runs of different seeds
share no data order and no training draws (the defect this replaced: epoch e of seed s was seed s+1's epoch e−1)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from ae_lightning import Autoencoder
from ae_lightning.data import ImageDataModule
from ae_lightning.data.datamodule import EpochPermutation
from ae_lightning.seeding import STREAMS, derive_seed, generator

from conftest import quiet_trainer


def test_no_two_seed_epoch_pairs_share_an_order_or_a_first_draw():
    orders, first_draws = set(), set()
    for seed in range(10):
        permutation = EpochPermutation(500, shuffle=True, seed=seed)
        for epoch in range(100):
            permutation.set_epoch(epoch)
            orders.add(tuple(permutation.indices().tolist()))
            first_draws.add(torch.randn(1, generator=generator(seed, "order", epoch)).item())
    assert len(orders) == 1000 and len(first_draws) == 1000


def test_streams_of_a_seed_are_distinct_and_in_range():
    seeds = {derive_seed(seed, stream, index) for seed in range(10) for stream in STREAMS for index in range(20)}
    assert len(seeds) == 10 * len(STREAMS) * 20
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(3, "order", 5) == derive_seed(3, "order", 5)  # a function of its arguments only
    with pytest.raises(ValueError, match="unknown random stream 'shuffle'"):
        derive_seed(0, "shuffle")


def test_ranks_keep_disjoint_shares_of_every_epoch():
    for epoch in (0, 7):
        shares = []
        for rank in range(3):
            permutation = EpochPermutation(100, shuffle=True, seed=4, rank=rank, world_size=3)
            permutation.set_epoch(epoch)
            shares.append(set(permutation.indices().tolist()))
        assert all(len(share) == 33 for share in shares)
        assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])


def test_run_seeds_do_not_share_epoch_orders_through_the_datamodule(data_root):
    def first_batch(shuffle_seed: int, epoch: int) -> list[int]:
        datamodule = ImageDataModule(
            name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50, shuffle_seed=shuffle_seed
        )
        datamodule.setup("fit")
        permutation = EpochPermutation(len(datamodule.splits["train"].labels), True, datamodule.shuffle_seed)
        permutation.set_epoch(epoch)
        return permutation.indices()[:50].tolist()

    assert first_batch(1, 0) != first_batch(0, 1)  # seed + epoch would make these equal
    assert first_batch(2, 0) != first_batch(0, 2)


class TrainingSeed(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.seed = torch.initial_seed()


def test_training_draws_come_from_the_run_seeds_train_stream(data_root):
    """Initialisation draws from the run seed (seed_everything); training draws (noise, dropout, ε) from the
    run's own 'train' stream, per rank."""
    seen = []
    for seed in (0, 1):
        pl.seed_everything(seed)
        model = Autoencoder(input_shape=(1, 28, 28))
        datamodule = ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)
        callback = TrainingSeed()
        quiet_trainer(max_steps=1, limit_val_batches=0, callbacks=[callback]).fit(model, datamodule=datamodule)
        assert callback.seed == derive_seed(seed, "train", 0)
        seen.append(callback.seed)
    assert seen[0] != seen[1]
