"""Topology-preserving thinning by subfields: kernel, reference, gradient.

One *iteration* visits the 4 (2D) or 8 (3D) subfields of the stride-2 lattice
in turn and deletes, in parallel, every foreground point of the subfield that
is simple and not protected as an end point. No two points of a subfield are
adjacent, so parallel deletion inside it is sequential deletion in any order,
and topology is preserved exactly.

* `thinning_iteration_reference`: one iteration in pure jnp (the XLA path).
* `thinning_iteration_pallas`: the same iteration as a Pallas kernel, one
  block of whole images per grid step (`BlockSizes.batch`); tested against the
  reference in interpret mode on CPU.
* `thin`: iterations to a fixed count or to stability, wrapped in a
  `custom_vjp` whose backward pass is a stored per-voxel multiplier, so memory
  is one array whatever the number of iterations.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from topojax._src import simple_points as sp

# End points are fixed once per iteration, before its subfields (Menten et
# al.), or not protected at all (homotopic thinning: every simple point may
# go). Re-deciding them before each subfield was tried: points that become end
# points halfway through an iteration then survive as spurs (2x scikit-image's
# skeleton size in 2D, 5x on a rod), where once per iteration stays within 10 %.
ENDPOINT_RULES = ("iteration", "none")


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Images per Pallas grid step; each block holds whole images (the passes
  need every neighbour, so images are not tiled)."""
  batch: int = 1


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Static description of one thinning run."""
  ndim: int
  connectivity: int
  endpoint_rule: str = "iteration"
  order: tuple[tuple[int, ...], ...] | None = None  # subfield parities; None: sp.parities

  @property
  def subfields(self) -> tuple[tuple[int, ...], ...]:
    return self.order if self.order is not None else tuple(sp.parities(self.ndim))


def _end_points(x: jax.Array, ndim: int) -> jax.Array:
  """At most one foreground neighbour (isolated points included)."""
  return sp.neighbour_count(sp.padded_neighbours(x, ndim), ndim) <= 1


def thinning_iteration_reference(x: jax.Array, schedule: Schedule) -> tuple[jax.Array, jax.Array]:
  """One iteration on a bool array `[..., *spatial]`.

  Returns:
    `(x_after, flagged)`: `flagged` marks the points for which "simple and not
    an end point" held when their subfield was visited, whatever their value
    (Menten et al.'s deletion mask, which also drives their gradient).
  """
  ndim = schedule.ndim
  flagged = jnp.zeros_like(x)
  protected = _end_points(x, ndim) if schedule.endpoint_rule == "iteration" else None
  for parity in schedule.subfields:
    index = sp.subfield_slices(x.ndim, ndim, parity)
    nb = sp.padded_neighbours(x, ndim, parity)
    flag = sp.simple_from_neighbours(nb, ndim, schedule.connectivity)
    if protected is not None:
      flag = flag & ~protected[index]
    x = x.at[index].set(x[index] & ~flag)
    flagged = flagged.at[index].set(flag)
  return x, flagged


def thinning_iteration_pallas(x: jax.Array, schedule: Schedule, *,
                              block_sizes: BlockSizes = BlockSizes(),
                              interpret: bool = False) -> tuple[jax.Array, jax.Array]:
  """`thinning_iteration_reference` as a Pallas kernel over blocks of images."""
  lead, spatial = x.shape[:x.ndim - schedule.ndim], x.shape[x.ndim - schedule.ndim:]
  images = x.reshape((math.prod(lead),) + spatial).astype(jnp.int8)
  batch = images.shape[0]
  bb = min(block_sizes.batch, batch)
  pad = -batch % bb
  images = jnp.pad(images, [(0, pad)] + [(0, 0)] * len(spatial))

  def kernel(x_ref, out_ref, flagged_ref):
    after, flagged = thinning_iteration_reference(x_ref[...] != 0, schedule)
    out_ref[...] = after.astype(jnp.int8)
    flagged_ref[...] = flagged.astype(jnp.int8)

  block = pl.BlockSpec((bb,) + spatial, lambda i: (i,) + (0,) * len(spatial))
  shape = jax.ShapeDtypeStruct(images.shape, jnp.int8)
  after, flagged = pl.pallas_call(
      kernel, grid=(images.shape[0] // bb,), in_specs=[block], out_specs=[block, block],
      out_shape=[shape, shape], interpret=interpret)(images)
  unpad = lambda a: (a[:batch] != 0).reshape(x.shape)
  return unpad(after), unpad(flagged)


def _iteration_fn(impl: str, block_sizes: BlockSizes):
  if impl == "xla":
    return thinning_iteration_reference
  interpret = impl == "pallas_interpret"
  return functools.partial(thinning_iteration_pallas, block_sizes=block_sizes,
                           interpret=interpret)


def thin_mask(x: jax.Array, schedule: Schedule, num_iter: int | None, *,
              tie_factor: float | None = None, impl: str = "xla",
              block_sizes: BlockSizes = BlockSizes()) -> tuple[jax.Array, jax.Array | None]:
  """Thins the bool array `x` for `num_iter` iterations or, with None, to stability.

  With `tie_factor`, also returns Menten et al.'s gradient multiplier: per
  iteration a voxel's gradient is multiplied by 0 if it is deleted, by
  `tie_factor` where their `min(x, 1 - delete)` is a tie (a kept foreground
  voxel, or a flagged background one), by 1 otherwise.

  Returns:
    `(thinned, multiplier or None)`.
  """
  iteration = _iteration_fn(impl, block_sizes)
  spatial = x.shape[x.ndim - schedule.ndim:]
  # Each unfinished iteration deletes a point: the voxel count bounds the loop.
  limit = num_iter if num_iter is not None else math.prod(spatial)
  track = tie_factor is not None
  multiplier = jnp.ones(x.shape, jnp.float32) if track else None

  def cond(state):
    i, _, changed, _ = state
    keep_going = (i < limit) & changed
    # A fixed count in compat mode runs to the end: the ties keep multiplying.
    return (i < limit) if (track and num_iter is not None) else keep_going

  def body(state):
    i, x, _, multiplier = state
    after, flagged = iteration(x, schedule)
    if track:
      deleted = x & ~after
      tie = x ^ flagged
      multiplier = multiplier * jnp.where(deleted, 0.0, jnp.where(tie, tie_factor, 1.0))
    return i + 1, after, jnp.any(after != x), multiplier

  _, x, _, multiplier = lax.while_loop(
      cond, body, (jnp.int32(0), x, jnp.bool_(True), multiplier))
  return x, multiplier


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def thin(x: jax.Array, schedule: Schedule, num_iter: int | None,
         tie_factor: float | None = None, impl: str = "xla",
         block_sizes: BlockSizes = BlockSizes()) -> jax.Array:
  """Thinning of a binary float array with a straight-through gradient.

  The output is `x * keep` (`keep` the surviving voxels of `x > 0.5`). The
  gradient is `g * multiplier`: with `tie_factor=None`, 0 on deleted voxels and
  1 elsewhere (the skeleton and the background pass gradients straight
  through, independent of the number of iterations); with a tie factor,
  Menten et al.'s product of per-iteration factors (`thin_mask`).
  """
  return _thin_fwd(x, schedule, num_iter, tie_factor, impl, block_sizes)[0]


def _thin_fwd(x, schedule, num_iter, tie_factor, impl, block_sizes):
  binary = x > 0.5
  kept, multiplier = thin_mask(binary, schedule, num_iter, tie_factor=tie_factor, impl=impl,
                               block_sizes=block_sizes)
  if multiplier is None:
    multiplier = ~(binary & ~kept)
  return jnp.where(kept, x, jnp.zeros_like(x)), multiplier


def _thin_bwd(schedule, num_iter, tie_factor, impl, block_sizes, multiplier, g):
  del schedule, num_iter, tie_factor, impl, block_sizes
  return (g * multiplier.astype(g.dtype),)


thin.defvjp(_thin_fwd, _thin_bwd)

