"""Ground-truth simple-point tests from the topological numbers (the oracle).

Written from the definitions (Rosenfeld, Kong; Bertrand 1994), with
`scipy.ndimage.label` in the punctured neighbourhood, and slow on purpose:

- 2D (8,4): T8(p,X) = #8-components of X in N8*(p) (all are 8-adjacent to p)
  and T4(p,Xbar) = #4-components of Xbar in N8*(p) that contain a 4-neighbour
  of p (4-paths inside N8*); p is simple iff both are 1. (4,8) swaps the roles.
- 3D (26,6): T26(p,X) = #26-components of X in N26*(p) and T6(p,Xbar) =
  #6-components of Xbar in N18*(p) that contain a face neighbour of p
  (Bertrand's geodesic neighbourhood); simple iff both are 1. (6,26) swaps.

The centre of a patch is ignored. Outside an array is background.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

_FULL_2D = np.ones((3, 3), bool)
_CROSS_2D = ndimage.generate_binary_structure(2, 1)
_FULL_3D = np.ones((3, 3, 3), bool)
_CROSS_3D = ndimage.generate_binary_structure(3, 1)

_N8_STAR = np.ones((3, 3), bool)
_N8_STAR[1, 1] = False
_N4 = _CROSS_2D & _N8_STAR

_OFFSETS_3D = np.abs(np.indices((3, 3, 3)) - 1).sum(0)  # L1 distance to centre
_N26_STAR = _OFFSETS_3D > 0
_N18_STAR = (_OFFSETS_3D > 0) & (_OFFSETS_3D < 3)
_N6 = _OFFSETS_3D == 1


def _count(mask: np.ndarray, structure: np.ndarray, touch: np.ndarray | None = None) -> int:
  """Components of `mask` (given adjacency); only those meeting `touch` if given."""
  labels, n = ndimage.label(mask, structure=structure)
  if touch is None:
    return n
  return len(set(np.unique(labels[touch & mask]).tolist()) - {0})


def topological_numbers_2d(patch, fg_connectivity: int = 8) -> tuple[int, int]:
  """(T(p, X), T(p, Xbar)) for a 3x3 patch, as the (8,4) or (4,8) pair."""
  x = np.asarray(patch, bool)
  if x.shape != (3, 3):
    raise ValueError(f"patch must be 3x3, got {x.shape}")
  fg = x & _N8_STAR
  bg = ~x & _N8_STAR
  if fg_connectivity == 8:
    return _count(fg, _FULL_2D), _count(bg, _CROSS_2D, _N4)
  if fg_connectivity == 4:
    return _count(fg, _CROSS_2D, _N4), _count(bg, _FULL_2D)
  raise ValueError(f"fg_connectivity must be 4 or 8, got {fg_connectivity}")


def topological_numbers_3d(patch, fg_connectivity: int = 26) -> tuple[int, int]:
  """(T(p, X), T(p, Xbar)) for a 3x3x3 patch, as the (26,6) or (6,26) pair."""
  x = np.asarray(patch, bool)
  if x.shape != (3, 3, 3):
    raise ValueError(f"patch must be 3x3x3, got {x.shape}")
  if fg_connectivity == 26:
    return _count(x & _N26_STAR, _FULL_3D), _count(~x & _N18_STAR, _CROSS_3D, _N6)
  if fg_connectivity == 6:
    return _count(x & _N18_STAR, _CROSS_3D, _N6), _count(~x & _N26_STAR, _FULL_3D)
  raise ValueError(f"fg_connectivity must be 6 or 26, got {fg_connectivity}")


def is_simple_2d(patch, fg_connectivity: int = 8) -> bool:
  """Whether the centre of a 3x3 patch is simple ((8,4) or (4,8)); centre ignored."""
  return topological_numbers_2d(patch, fg_connectivity) == (1, 1)


def is_simple_3d(patch, fg_connectivity: int = 26) -> bool:
  """Whether the centre of a 3x3x3 patch is simple ((26,6) or (6,26)); centre ignored."""
  return topological_numbers_3d(patch, fg_connectivity) == (1, 1)


def simple_mask(x, ndim: int, fg_connectivity: int) -> np.ndarray:
  """The simple test at every pixel of `x` (whatever its value); outside is background."""
  x = np.asarray(x, bool)
  if x.ndim != ndim or ndim not in (2, 3):
    raise ValueError(f"expected a {ndim}D array, got shape {x.shape}")
  test = is_simple_2d if ndim == 2 else is_simple_3d
  padded = np.pad(x, 1)
  out = np.zeros(x.shape, bool)
  for idx in np.ndindex(*x.shape):
    out[idx] = test(padded[tuple(slice(i, i + 3) for i in idx)], fg_connectivity)
  return out


# -- independent global check: simple <=> deletion keeps the Betti numbers ------


def _betti_2d(x: np.ndarray) -> tuple[int, int]:
  """(b0, b1) of an 8-connected 2D set (4-connected background, padded)."""
  x = np.pad(x, 1)
  return _count(x, _FULL_2D), _count(~x, _CROSS_2D) - 1


def _betti_3d(x: np.ndarray) -> tuple[int, int, int]:
  """(b0, b1, b2) of a 26-connected 3D set, from the closed-cube complex."""
  x = np.pad(x, 1)
  b0 = _count(x, _FULL_3D)
  b2 = _count(~x, _CROSS_3D) - 1
  # Cells of the union of closed voxels on the doubled grid; dim = #odd coords.
  fine = np.zeros(tuple(2 * s + 1 for s in x.shape), bool)
  fine[1::2, 1::2, 1::2] = x
  cells = ndimage.binary_dilation(fine, structure=_FULL_3D)
  dim = sum(np.indices(fine.shape) % 2)
  chi = int(((-1) ** dim)[cells].sum())
  return b0, b0 + b2 - chi, b2


def _yokoi(patch: np.ndarray, fg_connectivity: int) -> int:
  """Yokoi's connectivity number of the centre (simple iff it is 1)."""
  ring = [(1, 2), (0, 2), (0, 1), (0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
  v = np.array([patch[i] for i in ring], int)
  if fg_connectivity == 8:
    v = 1 - v
  return int(sum(v[k] - v[k] * v[(k + 1) % 8] * v[(k + 2) % 8] for k in (0, 2, 4, 6)))


def _self_check(n_random: int = 2000, seed: int = 0) -> None:
  """Asserts known cases, duality, and agreement with a global Betti test."""
  # 2D known cases, (8,4).
  iso = np.zeros((3, 3), bool)
  assert not is_simple_2d(iso)
  assert not is_simple_2d(np.ones((3, 3), bool))  # interior point
  line = np.zeros((3, 3), bool)
  line[1, :2] = True
  assert is_simple_2d(line)  # end of a line
  line[1, 2] = True
  assert not is_simple_2d(line)  # middle of a line
  ring = np.zeros((5, 5), bool)
  ring[1:4, 1:4] = True
  ring[2, 2] = False
  assert not is_simple_2d(ring[0:3, 1:4])  # mid-edge pixel of a ring
  assert is_simple_2d(ring[0:3, 0:3])  # its corner is (8,4)-simple
  assert not is_simple_2d(ring[0:3, 0:3], 4)  # but not (4,8)-simple
  diamond = np.zeros((5, 5), bool)
  diamond[[1, 2, 2, 3], [2, 1, 3, 2]] = True
  assert not simple_mask(diamond, 2, 8)[diamond].any()
  half = np.zeros((3, 3), bool)
  half[2] = True
  assert is_simple_2d(half) and is_simple_2d(half, 4)  # border point

  # 2D: duality, Yokoi's connectivity number and the global Betti
  # characterisation on all 256 patches.
  for bits in itertools.product([False, True], repeat=8):
    p = np.insert(np.array(bits), 4, True).reshape(3, 3)
    s8 = is_simple_2d(p, 8)
    assert s8 == (_yokoi(p, 8) == 1), p
    assert is_simple_2d(p, 4) == (_yokoi(p, 4) == 1), p
    q = ~p
    q[1, 1] = True
    assert s8 == is_simple_2d(q, 4), p
    deleted = p.copy()
    deleted[1, 1] = False
    assert s8 == (_betti_2d(p) == _betti_2d(deleted)), p

  # 3D known cases, (26,6).
  assert not is_simple_3d(np.zeros((3, 3, 3), bool))
  assert not is_simple_3d(np.ones((3, 3, 3), bool))  # interior of a full cube
  rod = np.zeros((3, 3, 3), bool)
  rod[1, 1, :2] = True
  assert is_simple_3d(rod) and is_simple_3d(rod, 6)  # end of a line
  rod[1, 1, 2] = True
  assert not is_simple_3d(rod)  # middle of a line
  solid = np.zeros((3, 3, 3), bool)
  solid[1:] = True
  assert is_simple_3d(solid) and is_simple_3d(solid, 6)  # on a flat surface
  plate = np.zeros((3, 3, 3), bool)
  plate[1] = True
  assert not is_simple_3d(plate)  # inside a one-voxel-thick plate
  tube = np.ones((3, 3, 3), bool)
  tube[:, 1, 1] = False
  assert topological_numbers_3d(tube) == (1, 2)  # around a tunnel
  diag = np.zeros((3, 3, 3), bool)
  diag[0, 0, 0] = diag[2, 2, 2] = True
  assert topological_numbers_3d(diag) == (2, 1)

  # 3D: duality and the global Betti characterisation on random patches.
  rng = np.random.default_rng(seed)
  for i in range(n_random):
    p = rng.random((3, 3, 3)) < rng.uniform(0.2, 0.8)
    p[1, 1, 1] = True
    s26 = is_simple_3d(p, 26)
    q = ~p
    q[1, 1, 1] = True
    assert s26 == is_simple_3d(q, 6), p
    deleted = p.copy()
    deleted[1, 1, 1] = False
    if i < n_random // 4:
      assert s26 == (_betti_3d(p) == _betti_3d(deleted)), p
