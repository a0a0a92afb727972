"""The pixel graphs of cubical complexes: neighbour offsets, shifts and orders.

H0 of a cubical filtration is H0 of a graph on the pixels (voxels): the V
construction joins face neighbours (4-/6-connectivity), the T construction all
neighbours that share a corner (8-/26-). An edge's value is the larger value of
its two pixels.

Ties are broken by two fixed orders, chosen to reproduce cripser's 2D V output:

* pixels by (value, Fortran index), the index that runs fastest along axis 0
  (cripser's `x + nx * y + nx * ny * z`);
* edges by (value, edge type, Fortran index of the edge's anchor pixel), the
  anchor being the pixel the forward offset starts from. Types are numbered as
  in cripser (`dense_cubical_grids`), so an edge's tie key is
  `type_rank * num_pixels + fortran_index(anchor)`.

`_h0` works on the images with their axes reversed, where C order is the
Fortran order of the original.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Forward edge offsets in cripser's type order (x = axis 0, y = axis 1, z = axis 2).
_T3_OFFSETS = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (0, -1, 1),
               (0, 1, 1), (1, -1, 1), (1, 0, 1), (1, 1, 1), (1, -1, -1), (1, 0, -1),
               (1, 1, -1))


def edge_offsets(ndim: int, construction: str) -> tuple[tuple[int, ...], ...]:
  """Forward offsets of the pixel graph's edges, in tie-breaking order.

  Each undirected edge appears once, as `(p, p + offset)` with anchor `p`.
  """
  if construction == "V":
    return tuple(tuple(int(i == axis) for i in range(ndim)) for axis in range(ndim))
  if ndim == 2:
    return ((1, 0), (0, 1), (1, 1), (1, -1))
  return _T3_OFFSETS


def dual_construction(construction: str) -> str:
  """Alexander duality swaps face and corner connectivity."""
  return "T" if construction == "V" else "V"


def max_independent_set(shape: tuple[int, ...], construction: str) -> int:
  """Size of a largest independent set of the pixel graph.

  A bound on the number of regional minima, hence on the number of H0 bars.
  """
  if construction == "V":  # bipartite grid: the larger colour class
    return (int(np.prod(shape)) + 1) // 2
  return int(np.prod([(n + 1) // 2 for n in shape]))


def fortran_to_flat(fortran: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Maps axis-0-fastest indices to C-order flat indices."""
  coords = []
  for n in shape:
    coords.append(fortran % n)
    fortran = fortran // n
  flat = jnp.zeros_like(fortran)
  for coord, n in zip(coords, shape):
    flat = flat * n + coord
  return flat


def flat_offset(offset: tuple[int, ...], shape: tuple[int, ...]) -> int:
  """The C-order flat index difference of a spatial offset."""
  strides = np.cumprod((1,) + tuple(shape[::-1]))[:-1][::-1]
  return int(np.dot(offset, strides))


def all_offsets(offsets):
  """Each forward offset with its sign: the 2M directions of incident edges."""
  return [(rank, sign, tuple(sign * o for o in offset))
          for rank, offset in enumerate(offsets) for sign in (1, -1)]


def lex_less(value_a, tie_a, value_b, tie_b):
  """`(value_a, tie_a) < (value_b, tie_b)` lexicographically."""
  return (value_a < value_b) | ((value_a == value_b) & (tie_a < tie_b))

