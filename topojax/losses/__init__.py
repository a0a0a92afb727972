"""Pure-function losses, per example `[B]`.

Segmentation losses (also the skeleton losses, rwloss and warping) take
`[B, *spatial, C]` logits and `[B, *spatial]` labels;
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
from topojax.losses._rwloss import rrw_map
from topojax.losses._rwloss import rwloss
from topojax.losses._segmentation import cedice
from topojax.losses._segmentation import cldice
from topojax.losses._segmentation import cross_entropy
from topojax.losses._segmentation import dice
from topojax.losses._segmentation import dice_cldice
from topojax.losses._skeleton import cbdice
from topojax.losses._skeleton import ce_skeleton_recall
from topojax.losses._skeleton import cedice_cbdice
from topojax.losses._skeleton import skeleton_recall
from topojax.losses._skeleton import tubed_skeleton
from topojax.losses._topo_malis import topo_malis
from topojax.losses._topo_malis import topo_malis_on_logits
from topojax.losses._warping import homotopy_warp
from topojax.losses._warping import warping
from topojax.losses._warping import warping_critical_pixels

__all__ = [
    "AUTOENCODER_LOSSES",
    "LOSSES",
    "TopoAEComponents",
    "betti_matching",
    "cbdice",
    "ce_skeleton_recall",
    "cedice",
    "cedice_cbdice",
    "cldice",
    "cross_entropy",
    "dice",
    "dice_cldice",
    "get_autoencoder_loss",
    "get_loss",
    "homotopy_warp",
    "make_autoencoder_loss",
    "make_loss",
    "on_foreground",
    "rrw_map",
    "rwloss",
    "skeleton_recall",
    "topo_malis",
    "topo_malis_on_logits",
    "topological_autoencoder",
    "topological_autoencoder_components",
    "topoloss",
    "tubed_skeleton",
    "warping",
    "warping_critical_pixels",
    "weight_schedule",
]
