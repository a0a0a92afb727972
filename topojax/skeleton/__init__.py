"""Differentiable skeletonization."""

from topojax.skeleton._soft import soft_dilate
from topojax.skeleton._soft import soft_erode
from topojax.skeleton._soft import soft_open
from topojax.skeleton._soft import soft_skeleton
from topojax.skeleton._soft import soft_skeleton_reference

__all__ = [
    "soft_dilate",
    "soft_erode",
    "soft_open",
    "soft_skeleton",
    "soft_skeleton_reference",
]
