"""Datasets and input pipelines: synthetic TopoMortar-like brick walls and batching;
Spheres and digits point clouds for the topological autoencoder."""

from topojax.data._bricks import BrickWallConfig
from topojax.data._bricks import brick_walls
from topojax.data._pipeline import sample_batch
from topojax.data._spheres import digits
from topojax.data._spheres import spheres
from topojax.data._spheres import standardized_split

__all__ = [
    "BrickWallConfig",
    "brick_walls",
    "digits",
    "sample_batch",
    "spheres",
    "standardized_split",
]
