"""The batch every variant trains on: a small type of its own, so the variants depend on it and not on the data
module that makes it."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class Batch(NamedTuple):
    clean: Tensor  # x, float in [0, 1] after transfer (uint8 while in the loader)
    noisy: Tensor | None  # x̃, the corrupted view (None in the loader until drawn; equals clean without noise)
    label: Tensor
