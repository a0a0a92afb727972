"""Evaluation metrics on binary masks, as TopoMortar.

Every metric takes binary masks `[B, H, W]` (or `[B, D, H, W]` with `ndim=3`;
the batch axis is required) and returns one value per example: `[B]`, or
`[B, ndim]` for Betti numbers and errors. The evaluation metrics are numpy in,
numpy out; the topological ones also come as JAX functions that run on the
device under `jit` and `vmap` (`betti_numbers_device`, `betti_errors_device`,
`euler_characteristic`), computed with `topojax.ph`.
"""

from topojax.metrics._betti import betti_errors
from topojax.metrics._betti import betti_errors_device
from topojax.metrics._betti import betti_numbers
from topojax.metrics._betti import betti_numbers_device
from topojax.metrics._betti import euler_characteristic
from topojax.metrics._betti_matching import betti_matching_error
from topojax.metrics._distance import hd95
from topojax.metrics._neural_persistence import neural_persistence
from topojax.metrics._overlap import cldice
from topojax.metrics._overlap import dice

__all__ = [
    "betti_errors",
    "betti_errors_device",
    "betti_matching_error",
    "betti_numbers",
    "betti_numbers_device",
    "cldice",
    "dice",
    "euler_characteristic",
    "hd95",
    "neural_persistence",
]
