"""Trainer pieces: sharding, checkpointing, metric writing, reports."""

from topojax.train.checkpoint import Checkpointer
from topojax.train.metric_writer import MetricWriter
from topojax.train.metric_writer import read_metrics
from topojax.train.sharding import make_data_mesh
from topojax.train.sharding import put_batch

__all__ = [
    "Checkpointer",
    "MetricWriter",
    "make_data_mesh",
    "put_batch",
    "read_metrics",
]
