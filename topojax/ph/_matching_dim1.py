"""Betti matching in dimension 1 of 3D volumes: a host fallback by matrix reduction.

Dimension 1 of a 3D cubical complex has no union-find formulation, so the
pairs and the matching come from the standard column reduction over Z/2 of
the boundary matrix of the squares (columns) over the edges (rows), with the
twist: the cubes' matrix is reduced first, and the squares that are its
pivots (squares that create a void) are skipped in the squares' reduction.

- Each image's own pairs: columns and rows in the image's order; a column
  whose lowest row is edge e after reduction is the pair (e, square).
- The matching (Bauer-Lesnick, through image persistence, as
  Betti-Matching-3D): with the union, the inclusion X_t ⊆ C_t maps each
  input X into the comparison C. Reducing C's columns in C's order with the
  rows in X's order, the lowest row of a comparison pair's death square is the
  birth edge of the X pair mapped onto it. Pairs of P and G are matched when
  both map onto the same comparison pair. With the intersection C_t ⊆ X_t
  and the roles swap: X's columns, rows in C's order, and a comparison pair
  is named by its birth edge.

Cells are ordered by (value, index), the index being `anchor * 3 + type`
with the anchor pixel's C-order index; cells enter at the largest value of
their pixels (V construction) and are reported by the first of those pixels,
in C order, that has it. Pure Python: meant for volumes up to a few ten
thousand voxels (seconds); it runs one volume at a time through
`jax.pure_callback`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np


@functools.lru_cache(maxsize=8)
def _complex(shape: tuple[int, int, int]):
  """Edges, squares and cubes of the V complex: their pixels and faces.

  Returns `(edge_pixels [Ne, 2], square_pixels [Ns, 4], square_faces [Ns, 4],
  cube_faces [Nc, 6], edge_index [Ne], square_index [Ns])`, pixels as C-order
  flat indices in C order, faces as row numbers, indices `anchor * 3 + type`.
  """
  n = int(np.prod(shape))
  coords = np.indices(shape).reshape(3, n)
  strides = np.array([shape[1] * shape[2], shape[2], 1])
  pixel = np.arange(n)
  edge_id = np.full((n, 3), -1)
  edge_pixels, edge_index = [], []
  count = 0
  for k in range(3):
    anchors = pixel[coords[k] < shape[k] - 1]
    edge_id[anchors, k] = np.arange(count, count + len(anchors))
    count += len(anchors)
    edge_pixels.append(np.stack([anchors, anchors + strides[k]], axis=1))
    edge_index.append(anchors * 3 + k)
  square_id = np.full((n, 3), -1)
  square_pixels, square_faces, square_index = [], [], []
  count = 0
  for missing in range(3):
    a, b = (k for k in range(3) if k != missing)
    anchors = pixel[(coords[a] < shape[a] - 1) & (coords[b] < shape[b] - 1)]
    square_id[anchors, missing] = np.arange(count, count + len(anchors))
    count += len(anchors)
    square_pixels.append(np.sort(np.stack(
        [anchors, anchors + strides[a], anchors + strides[b], anchors + strides[a] + strides[b]],
        axis=1), axis=1))
    square_faces.append(np.stack([edge_id[anchors, a], edge_id[anchors, b],
                                  edge_id[anchors + strides[a], b],
                                  edge_id[anchors + strides[b], a]], axis=1))
    square_index.append(anchors * 3 + missing)
  inner = pixel[np.all(coords < np.array(shape)[:, None] - 1, axis=0)]
  cube_faces = np.stack([square_id[inner + shift * strides[m], m]
                         for m in range(3) for shift in (0, 1)], axis=1)
  cat = lambda parts, width: (np.concatenate(parts) if parts else
                              np.zeros((0, width), np.int64))
  return (cat(edge_pixels, 2), cat(square_pixels, 4), cat(square_faces, 4),
          cube_faces.reshape(-1, 6), np.concatenate(edge_index), np.concatenate(square_index))


class _Filtration:
  """One image's values on the cells and their orders."""

  def __init__(self, f: np.ndarray):
    edge_pixels, square_pixels, _, cube_faces, edge_index, square_index = _complex(f.shape)
    flat = f.reshape(-1)
    self.edge_value, self.edge_voxel = _value_and_voxel(flat, edge_pixels)
    self.square_value, self.square_voxel = _value_and_voxel(flat, square_pixels)
    self.edge_rank = _ranks(self.edge_value, edge_index)
    self.square_rank = _ranks(self.square_value, square_index)
    # Cubes: only their order matters (to find the squares that create voids).
    cube_value = self.square_value[cube_faces].max(axis=1) if len(cube_faces) else np.zeros(0)
    self.cube_order = np.lexsort((np.arange(len(cube_value)), cube_value))
    self.square_order = np.argsort(self.square_rank)


def _value_and_voxel(flat, pixels):
  values = flat[pixels]
  best = values.max(axis=1) if pixels.shape[0] else np.zeros(0, flat.dtype)
  first = np.argmax(values == best[:, None], axis=1) if pixels.shape[0] else np.zeros(0, int)
  return best, pixels[np.arange(len(pixels)), first]


def _ranks(value, index):
  order = np.lexsort((index, value))
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order))
  return rank


def reduce_columns(faces, column_order, row_rank, skip=frozenset()):
  """Column reduction over Z/2: `{column: lowest row}` for the non-zero columns."""
  owner, low_of = {}, {}
  rank_to_row = np.argsort(row_rank)
  for column in column_order:
    column = int(column)
    if column in skip:
      continue
    cells = set(int(r) for r in row_rank[faces[column]])
    while cells:
      low = max(cells)
      if low not in owner:
        owner[low] = cells
        low_of[column] = int(rank_to_row[low])
        break
      cells ^= owner[low]
  return low_of


class Level(NamedTuple):
  """One image's order on two consecutive dimensions of cells (columns: the
  higher; rows: their faces)."""
  column_order: np.ndarray  # columns in filtration order
  column_rank: np.ndarray
  column_value: np.ndarray
  row_rank: np.ndarray
  row_value: np.ndarray
  skip: frozenset = frozenset()  # columns known to reduce to zero


def induced_matching(faces, levels: tuple[Level, Level, Level], comparison: str):
  """Pairs of P and G (`levels[0]`, `levels[1]`) and their matching through
  the comparison C (`levels[2]`), by column reductions.

  Returns `(own_p, own_g, matches)`: `{death column: birth row}` for the
  pairs of positive persistence, and `{P death column: G death column}`.
  """
  def own_pairs(level):
    low = reduce_columns(faces, level.column_order, level.row_rank, level.skip)
    return {s: e for s, e in low.items() if level.row_value[e] != level.column_value[s]}

  own = [own_pairs(level) for level in levels]
  keyed = []
  for level, pairs in zip(levels[:2], own[:2]):
    if comparison == "union":
      # C's columns, X's rows: the comparison pair dying at column s takes
      # the X pair born at the lowest row.
      low = reduce_columns(faces, levels[2].column_order, level.row_rank, levels[2].skip)
      born = {e: s for s, e in pairs.items()}
      keyed.append({s: born[e] for s, e in low.items() if s in own[2] and e in born})
    else:
      # X's columns, C's rows: the X pair dying at column s maps onto the
      # comparison pair born at the lowest row.
      low = reduce_columns(faces, level.column_order, levels[2].row_rank, level.skip)
      births = set(own[2].values())
      keyed.append({low[s]: s for s in pairs if s in low and low[s] in births})
  matches = {keyed[0][k]: keyed[1][k] for k in keyed[0] if k in keyed[1]}
  return own[0], own[1], matches


def matching_dim1(p: np.ndarray, g: np.ndarray, comparison: str):
  """Dimension-1 pairs of two 3D sublevel filtrations and their matching.

  Returns `(pairs_p, pairs_g, matches)`: pairs as `[K, 2]` (birth pixel, death
  pixel) arrays in order of death, matches as `[M, 2]` (index in pairs_p,
  index in pairs_g).
  """
  c = np.minimum(p, g) if comparison == "union" else np.maximum(p, g)
  _, _, faces, cube_faces, _, _ = _complex(p.shape)
  images = [_Filtration(x) for x in (p, g, c)]
  levels = []
  for x in images:
    # Squares that are pivots of the cubes' reduced matrix create voids.
    voids = reduce_columns(cube_faces, x.cube_order, x.square_rank).values()
    levels.append(Level(x.square_order, x.square_rank, x.square_value, x.edge_rank,
                        x.edge_value, frozenset(voids)))
  own_p, own_g, matches = induced_matching(faces, tuple(levels), comparison)

  def as_pairs(x, pairs):
    deaths = sorted(pairs, key=lambda s: x.square_rank[s])
    slot = {s: k for k, s in enumerate(deaths)}
    table = np.array([[x.edge_voxel[pairs[s]], x.square_voxel[s]] for s in deaths],
                     np.int64).reshape(-1, 2)
    return table, slot

  pairs_p, slot_p = as_pairs(images[0], own_p)
  pairs_g, slot_g = as_pairs(images[1], own_g)
  matches = np.array(sorted((slot_p[a], slot_g[b]) for a, b in matches.items()),
                     np.int64).reshape(-1, 2)
  return pairs_p, pairs_g, matches


def padded_matching_dim1(p, g, *, comparison: str, capacity: int):
  """`matching_dim1` as fixed-size int32 arrays for `jax.pure_callback`:
  births, deaths `[capacity]` per image, counts, and the two match maps."""
  p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
  pairs_p, pairs_g, matches = matching_dim1(p, g, comparison)
  out = []
  for pairs in (pairs_p, pairs_g):
    birth = np.full((capacity,), -1, np.int32)
    death = np.full((capacity,), -1, np.int32)
    kept = min(capacity, len(pairs))
    birth[:kept], death[:kept] = pairs[:kept, 0], pairs[:kept, 1]
    out += [birth, death, np.int32(len(pairs))]
  p_match = np.full((capacity,), -1, np.int32)
  g_match = np.full((capacity,), -1, np.int32)
  stored = (matches[:, 0] < capacity) & (matches[:, 1] < capacity)
  p_match[matches[stored, 0]] = matches[stored, 1]
  g_match[matches[stored, 1]] = matches[stored, 0]
  return tuple(out) + (p_match, g_match)

