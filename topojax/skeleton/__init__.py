"""Differentiable skeletonization: the clDice soft skeleton and a
topology-preserving skeleton (exact simple points, subfield thinning)."""

from topojax.skeleton._skeletonize import binarize
from topojax.skeleton._skeletonize import simple_points
from topojax.skeleton._skeletonize import skeletonize
from topojax.skeleton._soft import soft_dilate
from topojax.skeleton._soft import soft_erode
from topojax.skeleton._soft import soft_open
from topojax.skeleton._soft import soft_skeleton
from topojax.skeleton._soft import soft_skeleton_reference

__all__ = [
    "binarize",
    "simple_points",
    "skeletonize",
    "soft_dilate",
    "soft_erode",
    "soft_open",
    "soft_skeleton",
    "soft_skeleton_reference",
]
