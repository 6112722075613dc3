"""Type aliases shared by every layer, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

Params = Any  # a pytree of parameter arrays, e.g. {'encoder': ..., 'decoder': ...}
Config = ml_collections.ConfigDict  # a run config, as `configs/default.py` builds it
Batch = dict[str, np.ndarray]  # 'image' [B, H, W, C] uint8 as stored, plus e.g. 'label' [B], 'index' [B]
Metrics = dict[str, jax.Array]  # scalar metrics named `train_*`, on device
# `(x [B, H, W, C], batch, key) -> condition [B, ...]` of a conditional VAE, or None for an unconditional one.
ConditionFn = Callable[[jax.Array, Batch, jax.Array], jax.Array | None]
