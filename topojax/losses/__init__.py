"""Pure-function losses, per example `[B]`.

Segmentation losses take `[B, *spatial, C]` logits and `[B, *spatial]` labels;
persistence losses take real-valued maps `pred`, `target` `[B, *spatial]`
(`on_foreground` adapts them to logits and labels, as the registry does).
"""

from topojax.losses._registry import AUTOENCODER_LOSSES
from topojax.losses._registry import LOSSES
from topojax.losses._registry import get_autoencoder_loss
from topojax.losses._registry import get_loss
from topojax.losses._registry import make_autoencoder_loss
from topojax.losses._registry import make_loss
from topojax.losses._registry import on_foreground
from topojax.losses._registry import weight_schedule
from topojax.losses._autoencoder import TopoAEComponents
from topojax.losses._autoencoder import topological_autoencoder
from topojax.losses._autoencoder import topological_autoencoder_components
from topojax.losses._persistence import betti_matching
from topojax.losses._persistence import topoloss
from topojax.losses._segmentation import cedice
from topojax.losses._segmentation import cldice
from topojax.losses._segmentation import cross_entropy
from topojax.losses._segmentation import dice
from topojax.losses._segmentation import dice_cldice
from topojax.losses._topo_malis import topo_malis
from topojax.losses._topo_malis import topo_malis_on_logits

__all__ = [
    "AUTOENCODER_LOSSES",
    "LOSSES",
    "TopoAEComponents",
    "betti_matching",
    "cedice",
    "cldice",
    "cross_entropy",
    "dice",
    "dice_cldice",
    "get_autoencoder_loss",
    "get_loss",
    "make_autoencoder_loss",
    "make_loss",
    "on_foreground",
    "topo_malis",
    "topo_malis_on_logits",
    "topological_autoencoder",
    "topological_autoencoder_components",
    "topoloss",
    "weight_schedule",
]
