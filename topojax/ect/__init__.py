"""Euler characteristic transforms: exact and differentiable, banded, on the device."""

from topojax.ect._directions import circle_directions
from topojax.ect._directions import linear_thresholds
from topojax.ect._directions import multiview_directions
from topojax.ect._directions import project_to_sphere
from topojax.ect._directions import uniform_directions
from topojax.ect._ect import band_width
from topojax.ect._ect import ect
from topojax.ect._image import image_ect

__all__ = [
    "band_width",
    "circle_directions",
    "ect",
    "image_ect",
    "linear_thresholds",
    "multiview_directions",
    "project_to_sphere",
    "uniform_directions",
]
