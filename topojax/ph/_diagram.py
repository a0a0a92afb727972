"""The `Diagram` pytree: a persistence diagram in fixed-capacity, masked arrays.

Every persistence routine in `topojax.ph` returns a `Diagram`, so that results
have static shapes under `jit` and batch under `vmap` (leading axes).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from topojax._src import checks


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Diagram:
  r"""A persistence diagram with a fixed capacity of `P` pair slots.

  Slot `i` holds a pair when `valid[i]`; the other slots are padding (values
  0, indices -1). Leading axes (from `vmap`) are batch axes: every field has
  shape `[..., P]` except the flags `overflow` and `nonfinite`, `[...]`.

  **Values and gradients.** `birth` and `death` are gathered from the input at
  `birth_index` and `death_index` (flat, C-order indices into the input), so
  `jax.grad` of anything written on them flows one-hot to the critical cells;
  the pairing itself is piecewise constant, as in every differentiable PH
  method.

  **Essential classes** (bars that never die) have `death = +inf` for a
  sublevel filtration (`-inf` for superlevel) and `death_index = -1`; their
  gradient flows through `birth` only. A cubical complex on a box is
  contractible, so its one essential class is the H0 class born at the global
  minimum (maximum for superlevel).

  **Capacity.** When a routine finds more pairs than fit, it keeps the first
  ones it finds (documented per routine) and sets `overflow`; it never drops
  pairs silently. **Bad values** (NaN or ±inf in the input) set `nonfinite`
  when the input is traced (under `jit`/`vmap`); eager calls raise instead.

  Attributes:
    birth: `[..., P]` birth values (padding: 0).
    death: `[..., P]` death values, `±inf` for essential classes (padding: 0).
    birth_index: `[..., P]` int32 flat index of the birth cell in the input.
    death_index: `[..., P]` int32 flat index of the death cell, -1 if essential.
    dim: `[..., P]` int32 homology dimension of each pair (padding: -1).
    valid: `[..., P]` bool, which slots hold pairs.
    overflow: `[...]` bool, True when pairs were dropped for lack of capacity.
    nonfinite: `[...]` bool, True when the input held NaN or ±inf: the pairs
      are then meaningless.
  """

  birth: jax.Array
  death: jax.Array
  birth_index: jax.Array
  death_index: jax.Array
  dim: jax.Array
  valid: jax.Array
  overflow: jax.Array
  nonfinite: jax.Array

  @property
  def capacity(self) -> int:
    """Number of pair slots `P`."""
    return self.birth.shape[-1]

  @property
  def essential(self) -> jax.Array:
    """`[..., P]` bool: valid pairs that never die."""
    return self.valid & jnp.isinf(self.death)

  @property
  def finite(self) -> jax.Array:
    """`[..., P]` bool: valid pairs with a finite death."""
    return self.valid & ~jnp.isinf(self.death)

  @property
  def persistence(self) -> jax.Array:
    """`[..., P]` `|death - birth|`: inf for essential pairs, 0 for padding."""
    return jnp.where(self.valid, jnp.abs(self.death - self.birth), 0)

  @property
  def num_pairs(self) -> jax.Array:
    """`[...]` int32 number of valid pairs."""
    return jnp.sum(self.valid, axis=-1, dtype=jnp.int32)

  def in_dim(self, dim: int) -> jax.Array:
    """`[..., P]` bool: valid pairs of homology dimension `dim`."""
    return self.valid & (self.dim == dim)

  def to_numpy(self) -> np.ndarray:
    """One unbatched diagram as an `(n, 3)` float64 array `[dim, birth, death]`.

    Rows are the valid pairs, sorted by dimension, then birth, then death — the
    layout of cripser's and GUDHI's outputs, for comparisons and plotting.
    Raises if the diagram is batched or overflowed.
    """
    if self.birth.ndim != 1:
      raise ValueError(
          f"`to_numpy` takes one diagram; this one has batch shape "
          f"{self.birth.shape[:-1]} (index it first).")
    if bool(self.overflow):
      raise ValueError("The diagram overflowed its capacity: pairs are missing. "
                       "Recompute with a larger `max_pairs`.")
    if bool(self.nonfinite):
      raise ValueError("The diagram was computed from an input with NaN or inf values.")
    valid = np.asarray(self.valid)
    rows = np.stack([np.asarray(self.dim)[valid],
                     np.asarray(self.birth, np.float64)[valid],
                     np.asarray(self.death, np.float64)[valid]], axis=1)
    return rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]


def empty_diagram(capacity: int, dtype) -> Diagram:
  """A diagram with `capacity` padding slots (no pairs)."""
  return Diagram(
      birth=jnp.zeros((capacity,), dtype),
      death=jnp.zeros((capacity,), dtype),
      birth_index=jnp.full((capacity,), -1, jnp.int32),
      death_index=jnp.full((capacity,), -1, jnp.int32),
      dim=jnp.full((capacity,), -1, jnp.int32),
      valid=jnp.zeros((capacity,), bool),
      overflow=jnp.zeros((), bool),
      nonfinite=jnp.zeros((), bool),
  )


def concatenate(diagrams: list[Diagram]) -> Diagram:
  """Joins unbatched diagrams slot-wise; overflow if any overflowed."""
  flags = ("overflow", "nonfinite")
  fields = {f.name: jnp.concatenate([getattr(d, f.name) for d in diagrams], axis=-1)
            for f in dataclasses.fields(Diagram) if f.name not in flags}
  for flag in flags:
    fields[flag] = jnp.any(jnp.stack([getattr(d, flag) for d in diagrams]), axis=0)
  return Diagram(**fields)


def gather_values(values: jax.Array, index: jax.Array, valid: jax.Array) -> jax.Array:
  """`values.ravel()[index]` where `valid` (0 elsewhere), differentiable in `values`."""
  flat = values.reshape(-1)
  return jnp.where(valid, flat[jnp.where(valid, index, 0)], 0).astype(values.dtype)


def diagram_from_pairs(pairs, *, capacity: int | None = None,
                       dtype=jnp.float32) -> Diagram:
  r"""Builds an unbatched `Diagram` from `(n, 3)` rows `[dim, birth, death]`.

  The inverse of `Diagram.to_numpy` (up to the slot order): for diagrams that
  come from elsewhere (GUDHI, cripser, a file) or are written by hand. The
  pairs fill the first `n` slots, the rest is padding; `birth_index` and
  `death_index` are -1 since there is no input to index. Runs eagerly (NumPy),
  not under `jit`.

  Args:
    pairs: `(n, 3)` array-like of rows `[dim, birth, death]`; `death = ±inf`
      marks an essential class. `(0, 3)` (or an empty list) gives an empty
      diagram.
    capacity: number of slots P >= n (default n).
    dtype: floating dtype of `birth` and `death`.

  Returns:
    A `Diagram` with fields of shape `[P]`.

  Examples:
    >>> import numpy as np
    >>> from topojax.ph import diagram_from_pairs
    >>> d = diagram_from_pairs([[0, 0.0, np.inf], [0, 1.0, 3.0], [1, 2.0, 4.0]],
    ...                        capacity=5)
    >>> d.capacity, int(d.num_pairs)
    (5, 3)
    >>> d.to_numpy().tolist()
    [[0.0, 0.0, inf], [0.0, 1.0, 3.0], [1.0, 2.0, 4.0]]
  """
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"`dtype` must be a floating dtype, got {dtype}.")
  rows = np.asarray(pairs, dtype=np.float64)
  if rows.size == 0:
    rows = rows.reshape(0, 3)
  if rows.ndim != 2 or rows.shape[1] != 3:
    raise ValueError(
        f"`pairs` must have shape (n, 3) with rows [dim, birth, death], got {rows.shape}.")
  n = rows.shape[0]
  capacity = n if capacity is None else checks.check_positive_int(
      capacity, "capacity", allow_zero=True)
  if n > capacity:
    raise ValueError(f"`pairs` has {n} rows, more than `capacity` = {capacity}.")
  dims = rows[:, 0]
  if np.any(dims != np.round(dims)) or np.any(dims < 0):
    raise ValueError("`pairs[:, 0]` (dim) must hold non-negative integers.")
  if np.any(np.isnan(rows[:, 1:])) or np.any(np.isinf(rows[:, 1])):
    raise ValueError("`pairs` births must be finite and deaths not NaN.")
  pad = capacity - n

  def padded(values, fill, dt):
    return jnp.asarray(np.concatenate([values, np.full(pad, fill)]).astype(dt))

  return dataclasses.replace(
      empty_diagram(capacity, dtype),
      birth=padded(rows[:, 1], 0, dtype),
      death=padded(rows[:, 2], 0, dtype),
      dim=padded(dims, -1, np.int32),
      valid=padded(np.ones(n, bool), False, bool),
  )
