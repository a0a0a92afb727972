"""The clDice morphological soft skeleton (Shit et al., CVPR 2021).

The stencils, the reference transcription, the Pallas kernels and the
hand-written reverse pass live in `topojax.kernels.soft_skeleton`; this module
checks arguments and picks the implementation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from topojax._src import checks
from topojax.kernels import soft_skeleton as kernel

IMPLS = ("auto",) + kernel.IMPLS


def _check_spatial_input(x, ndim):
  checks.check_ndim(ndim)
  x = jnp.asarray(x)
  checks.check_spatial(x, "x", ndim)
  return x


def soft_erode(x: jax.Array, *, ndim: int = 2) -> jax.Array:
  r"""Soft erosion: min over the cross (2D) / 6-neighbourhood (3D) element.

  It is the minimum of axis-aligned 3-long min-pools; pixels outside the image
  count as $+\infty$, so the border is not eroded (the clDice convention).

  Args:
    x: `[..., *spatial]`, the last `ndim` axes spatial.
    ndim: number of spatial axes, 2 or 3.

  Returns:
    Array of the shape and dtype of `x`.
  """
  return kernel.erode(_check_spatial_input(x, ndim), ndim)


def soft_dilate(x: jax.Array, *, ndim: int = 2) -> jax.Array:
  """Soft dilation: max over the full 3x3 (3x3x3) box, outside counts as -inf."""
  return kernel.dilate(_check_spatial_input(x, ndim), ndim)


def soft_open(x: jax.Array, *, ndim: int = 2) -> jax.Array:
  """Soft opening, dilate(erode(x)). Not a true opening: it can exceed `x`."""
  return soft_dilate(soft_erode(x, ndim=ndim), ndim=ndim)


def _check_skeleton_args(x, num_iter, ndim, impl="xla"):
  checks.check_positive_int(num_iter, "num_iter", allow_zero=True)
  if impl not in IMPLS:
    raise ValueError(f"`impl` must be one of {IMPLS}, got {impl!r}.")
  x = _check_spatial_input(x, ndim)
  checks.check_floating(x, "x")
  return x


@functools.partial(jax.jit, static_argnames=("num_iter", "ndim", "impl", "block_sizes"))
def soft_skeleton(x: jax.Array, *, num_iter: int = 10, ndim: int = 2, impl: str = "auto",
                  block_sizes: kernel.BlockSizes = kernel.BlockSizes()) -> jax.Array:
  r"""clDice soft skeleton of a soft (or binary) mask.

  With $E$ the soft erosion and $O = D \circ E$ the soft opening,

  $$S_0 = \mathrm{relu}(x - O(x)), \quad x_k = E^k(x),\quad
  \delta_k = \mathrm{relu}(x_k - O(x_k)),\quad
  S_k = S_{k-1} + \mathrm{relu}(\delta_k - S_{k-1}\,\delta_k),$$

  for $k = 1..K$ with $K$ = `num_iter`; returns $S_K$. Values are those of
  clDice's `soft_skel` and MONAI's `monai.losses.cldice.soft_skel`.

  The gradient is a hand-written reverse pass (reverse-mode only: `grad`,
  `vjp`; not `jvp`). It routes each pool's gradient to the first extremum of its
  window, as torch's pooling does; autodiff of `soft_skeleton_reference` splits
  exact ties instead, so the two differ only where neighbours are exactly equal.

  Args:
    x: floating array `[..., *spatial]` with values in [0, 1]; the last `ndim`
      axes are spatial, leading axes batch (no channel axis needed: pass one
      channel, or move channels in front).
    num_iter: number of erosion steps K (clDice's `iter_`); choose about the
      radius of the thickest structure.
    ndim: number of spatial axes, 2 or 3.
    impl: "xla" (stencils fused by XLA), "pallas" (compiled kernels over
      blocks of whole images; the backward pass recomputes the erosions
      in-kernel, so `x` is the only residual instead of 2 * num_iter + 3
      arrays) or "pallas_interpret"; "auto" is "xla": the kernels are validated
      in interpret mode only, and are not chosen before they are measured
      faster on a compiled backend.
    block_sizes: images per Pallas grid step (`topojax.kernels.soft_skeleton.BlockSizes`).

  Returns:
    The soft skeleton, shape and dtype of `x`, values in [0, 1] for inputs in
    [0, 1].

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.skeleton import soft_skeleton
    >>> bar = jnp.zeros((7, 9)).at[2:5, 1:8].set(1.0)
    >>> soft_skeleton(bar, num_iter=3)[3].astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 1, 0, 0]

  References:
    Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular
    Structure Segmentation", CVPR 2021.
  """
  x = _check_skeleton_args(x, num_iter, ndim, impl)
  impl = "xla" if impl == "auto" else impl
  return kernel.soft_skeleton(x, num_iter, ndim, impl, block_sizes)



@functools.partial(jax.jit, static_argnames=("num_iter", "ndim"))
def soft_skeleton_reference(x: jax.Array, *, num_iter: int = 10, ndim: int = 2) -> jax.Array:
  """Line-by-line transcription of clDice's `soft_skel` with `reduce_window`.

  The test oracle for `soft_skeleton` (same arguments and values).
  """
  x = _check_skeleton_args(x, num_iter, ndim)
  return kernel.soft_skeleton_reference(x, num_iter, ndim)
