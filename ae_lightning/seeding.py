"""One helper that seeds every random stream of a run, so runs of different seeds are independent.

A stream is named (``"order"``, ``"train"``, ``"split"`` …) and may be indexed (epoch, rank, split). Its seed is
drawn from ``numpy.random.SeedSequence(seed, spawn_key=(name, *index))`` — the hash-based mixer NumPy uses for
parallel streams — never ``seed + epoch``: with additions, seed 1's epoch 0 would be seed 0's epoch 1 and the
"independent" seeds of a suite would share their data orders (tests/test_seeding.py checks that no two
(seed, epoch) pairs of seeds 0–9 × epochs 0–99 give the same order or the same first draw).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

STREAMS = (
    "order",  # the training order of each epoch (index: epoch)
    "train",  # training-time draws of one rank: corruption, dropout, the VAE's ε (index: rank)
    "split",  # the train/validation split of the data
    "test_split",  # the held-out test part of a folder or tensors file
    "binarize",  # fixed Bernoulli draws of binarize: static, per split (index: split number)
    "eval_noise",  # the fixed corruption of the validation and test images (index: split number)
    "probe_split",  # the held-out fifth of training codes that picks the probe's L2 strength
    "trial",  # the training seed of a tuning trial (index: trial number)
    "sampler",  # the Optuna sampler of a tuning process (index: worker, trials so far)
    "loader_workers",  # the base seed a torch DataLoader hands its worker processes (they draw nothing today)
)


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """A seed in [0, 2⁶³) for stream ``stream`` (one of :data:`STREAMS`) of the run seeded ``seed``, at ``index``."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {list(STREAMS)}")
    if seed < 0 or any(i < 0 for i in index):
        raise ValueError(f"seeds and stream indices are >= 0 (got seed={seed}, index={index})")
    key = (zlib.crc32(stream.encode()), *index)
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) % 2**63)


def generator(seed: int, stream: str, *index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded for ``stream`` (see :func:`derive_seed`)."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, *index))
