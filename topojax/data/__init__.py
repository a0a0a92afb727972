"""Datasets and input pipelines: synthetic TopoMortar-like brick walls and batching;
Spheres and digits point clouds for the topological autoencoder; digits and
3-D shapes as padded point clouds (and digit images) for the ECT experiments;
a loader for the real TopoMortar dataset in its own folder layout."""

from topojax.data._augment import AugmentConfig
from topojax.data._augment import augment_batch
from topojax.data._bricks import BrickWallConfig
from topojax.data._bricks import brick_walls
from topojax.data._pipeline import batch_dataset
from topojax.data._pipeline import batches
from topojax.data._pipeline import sample_batch
from topojax.data._shapes import SHAPE_CLASSES
from topojax.data._shapes import digits_images
from topojax.data._shapes import digits_point_clouds
from topojax.data._shapes import shapes_point_clouds
from topojax.data._spheres import digits
from topojax.data._spheres import spheres
from topojax.data._spheres import standardized_split
from topojax.data._synthetic_topomortar import synthetic_topomortar
from topojax.data._topomortar import TopoMortarIndex
from topojax.data._topomortar import TopoMortarSplit
from topojax.data._topomortar import load_topomortar
from topojax.data._topomortar import topomortar_index

__all__ = [
    "AugmentConfig",
    "BrickWallConfig",
    "SHAPE_CLASSES",
    "TopoMortarIndex",
    "TopoMortarSplit",
    "augment_batch",
    "batch_dataset",
    "batches",
    "brick_walls",
    "digits",
    "digits_images",
    "digits_point_clouds",
    "load_topomortar",
    "sample_batch",
    "shapes_point_clouds",
    "spheres",
    "standardized_split",
    "synthetic_topomortar",
    "topomortar_index",
]
