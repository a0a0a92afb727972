"""Datasets and input pipelines: synthetic TopoMortar-like brick walls and batching."""

from topojax.data._bricks import BrickWallConfig
from topojax.data._bricks import brick_walls
from topojax.data._pipeline import sample_batch

__all__ = [
    "BrickWallConfig",
    "brick_walls",
    "sample_batch",
]
