"""Evaluation metrics on binary masks (numpy in, numpy out), as TopoMortar.

Every metric takes binary masks `[B, H, W]` (or `[B, D, H, W]` with `ndim=3`;
the batch axis is required) and returns one value per example: `[B]`, or
`[B, ndim]` for Betti numbers and errors.
"""

from topojax.metrics._betti import betti_errors
from topojax.metrics._betti import betti_numbers
from topojax.metrics._distance import hd95
from topojax.metrics._overlap import cldice
from topojax.metrics._overlap import dice

__all__ = [
    "betti_errors",
    "betti_numbers",
    "cldice",
    "dice",
    "hd95",
]
