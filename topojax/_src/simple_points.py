"""Exact simple-point tests on 2D and 3D binary grids, vectorised.

A point p is *simple* for a set X when flipping it (deleting it from X, or
adding it) changes no topology. With each voxel a closed unit cube, deleting p
changes nothing iff the part of p's boundary that X's other voxels touch,

    K = boundary(p) ∩ union of the cubes of X ∩ N(p),

is contractible (a closed disc on the sphere or circle boundary(p)). This is
Bertrand and Malandain's characterisation by topological numbers seen
cubically: the components of K are the 26- (8-) components of X ∩ N*(p), and
the holes of K the 6- (4-) components of the background that touch p. For a
subcomplex of a sphere, contractible means connected with Euler characteristic
1; on a circle, Euler characteristic 1 alone. Everything below is Boolean
algebra on the 8 (26) neighbours, so it depends only on the neighbourhood,
never on p itself, and it is the same test for adding a background point.

The (4, 8) and (6, 26) tests are the (8, 4) and (26, 6) tests of the
complement: flipping p in X is flipping it in its complement.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Offset = tuple[int, ...]
# neighbour(offset) -> bool array: whether the voxel at p + offset is in X.
Neighbours = Callable[[Offset], jax.Array]

FOREGROUND_CONNECTIVITY = {2: (8, 4), 3: (26, 6)}


def check_connectivity(ndim: int, connectivity: int | None) -> int:
  """The foreground adjacency, default 8 (2D) / 26 (3D); 4 / 6 are allowed."""
  allowed = FOREGROUND_CONNECTIVITY[ndim]
  if connectivity is None:
    return allowed[0]
  if connectivity not in allowed:
    raise ValueError(
        f"`connectivity` must be one of {allowed} in {ndim}D (foreground "
        f"adjacency), got {connectivity!r}.")
  return connectivity


def _any(arrays):
  out = arrays[0]
  for a in arrays[1:]:
    out = out | a
  return out


def _count(arrays):
  return sum(a.astype(jnp.int8) for a in arrays)


def _cells_touched(nb: Neighbours, ndim: int, cell: Offset) -> jax.Array:
  """Whether a face of p's cube is in K: some neighbour holding it is in X.

  `cell` has entries in {-1, 0, 1}: a nonzero entry fixes that coordinate at
  the corresponding side of p, a zero leaves it free (a vertex has no zero, an
  edge one, a face of a 3D cube two). The voxels holding the cell are the
  nonzero offsets obtained by zeroing any subset of `cell`'s nonzero entries.
  """
  fixed = [a for a in range(ndim) if cell[a] != 0]
  holders = []
  for keep in itertools.product((0, 1), repeat=len(fixed)):
    offset = [0] * ndim
    for a, k in zip(fixed, keep):
      offset[a] = cell[a] * k
    if any(offset):
      holders.append(nb(tuple(offset)))
  return _any(holders)


def _vertex_index(cell: Offset) -> int:
  """Vertex (±1, ±1, ±1) as a bit position: bit a set where coordinate a is +1."""
  return sum(1 << a for a, s in enumerate(cell) if s > 0)


def _simple_max_connectivity(nb: Neighbours, ndim: int) -> jax.Array:
  """The (8, 4) test in 2D, (26, 6) in 3D (foreground of maximal adjacency)."""
  cells = [c for c in itertools.product((-1, 0, 1), repeat=ndim) if any(c)]
  present = {c: _cells_touched(nb, ndim, c) for c in cells}
  # Euler characteristic of K: vertices - edges (+ faces in 3D); a cell with k
  # nonzero entries has dimension ndim - k.
  euler = jnp.zeros(present[cells[0]].shape, jnp.int8)
  for c, inside in present.items():
    dim = ndim - sum(1 for s in c if s != 0)
    euler = euler + ((-1) ** dim) * inside.astype(jnp.int8)
  if ndim == 2:
    return euler == 1
  return (euler == 1) & _vertices_connected(present)


def _vertices_connected(present: dict) -> jax.Array:
  """Whether K's vertices form one component through K's edges (3D).

  The 8 vertices are bits of a uint8 (bit a of the index: coordinate a is +1);
  the edge along axis a joins v and v + 2**a. A seed (the lowest vertex of K)
  spreads along present edges; 7 steps cover any path on 8 vertices.
  """
  vertices = [c for c in present if all(c)]
  bits = lambda cs: sum(present[c].astype(jnp.uint8) << _vertex_index(c) for c in cs)
  vertex_mask = bits(vertices)
  low_ends = []  # per axis: bits of the vertices whose edge toward +axis is in K
  for axis in range(3):
    edges = [c for c in present if c[axis] == 0 and sum(1 for s in c if s) == 2]
    low = jnp.zeros(vertex_mask.shape, jnp.uint8)
    for c in edges:
      end = list(c)
      end[axis] = -1
      low = low | (present[c].astype(jnp.uint8) << _vertex_index(tuple(end)))
    low_ends.append(low)
  reach = vertex_mask & (jnp.uint8(0) - vertex_mask)  # lowest set bit
  for _ in range(7):
    spread = reach
    for axis, low in enumerate(low_ends):
      step = jnp.uint8(1 << axis)
      spread = spread | lax.shift_left(reach & low, step) | (lax.shift_right_logical(reach, step) & low)
    reach = spread
  return reach == vertex_mask


def simple_from_neighbours(nb: Neighbours, ndim: int, connectivity: int) -> jax.Array:
  """The simple-point test from a neighbour accessor (see module docstring)."""
  if connectivity == FOREGROUND_CONNECTIVITY[ndim][0]:
    return _simple_max_connectivity(nb, ndim)
  return _simple_max_connectivity(lambda offset: ~nb(offset), ndim)


def neighbour_count(nb: Neighbours, ndim: int) -> jax.Array:
  """Number of foreground voxels among the 8 (26) neighbours, int8."""
  offsets = [c for c in itertools.product((-1, 0, 1), repeat=ndim) if any(c)]
  return _count([nb(c) for c in offsets])


def padded_neighbours(x: jax.Array, ndim: int, parity: Offset | None = None) -> Neighbours:
  """Neighbour accessor on a bool array, outside = background.

  With `parity`, only the points whose spatial indices have that parity (the
  subfield, a stride-2 lattice) are addressed: accessed arrays have the
  subfield's shape.
  """
  pad = [(0, 0)] * (x.ndim - ndim) + [(1, 1)] * ndim
  padded = jnp.pad(x, pad)
  spatial = x.shape[x.ndim - ndim:]
  lead = (slice(None),) * (x.ndim - ndim)

  def nb(offset: Offset) -> jax.Array:
    if parity is None:
      index = tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, spatial))
    else:
      index = tuple(slice(1 + o + p, 1 + o + n, 2) for o, p, n in zip(offset, parity, spatial))
    return padded[lead + index]
  return nb


def simple_points(x: jax.Array, *, ndim: int, connectivity: int) -> jax.Array:
  """Bool mask of the points whose flip preserves topology (any value of x)."""
  return simple_from_neighbours(padded_neighbours(x, ndim), ndim, connectivity)


def parities(ndim: int) -> list[Offset]:
  """The 4 (8) subfields of the stride-2 lattice, (0, 0) first, last axis fastest."""
  return [tuple(p) for p in itertools.product((0, 1), repeat=ndim)]


def subfield_slices(x_ndim: int, ndim: int, parity: Offset) -> tuple[slice, ...]:
  return (slice(None),) * (x_ndim - ndim) + tuple(slice(p, None, 2) for p in parity)

