"""Pure-function segmentation losses: `[B, *spatial, C]` logits, `[B, *spatial]` labels -> `[B]`."""

from topojax.losses._registry import LOSSES
from topojax.losses._registry import get_loss
from topojax.losses._registry import make_loss
from topojax.losses._segmentation import cedice
from topojax.losses._segmentation import cldice
from topojax.losses._segmentation import cross_entropy
from topojax.losses._segmentation import dice
from topojax.losses._segmentation import dice_cldice

__all__ = [
    "LOSSES",
    "cedice",
    "cldice",
    "cross_entropy",
    "dice",
    "dice_cldice",
    "get_loss",
    "make_loss",
]
