"""Numerically safe primitives shared by the persistence code and the losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def safe_norm(diff: jax.Array) -> jax.Array:
  """`[..., D]` -> `[...]` Euclidean norm with a zero (not NaN) gradient at 0."""
  sq = jnp.sum(jnp.square(diff), axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), 0).astype(diff.dtype)


def sortable_int32(value: jax.Array) -> jax.Array:
  """int32 keys in the order of the float32 `value`s (-0.0 and 0.0 equal).

  Integer comparisons and scatter-mins are several times faster than float
  ones on XLA:CPU, and the keys are exact for every float32.
  """
  value = value.astype(jnp.float32)
  bits = lax.bitcast_convert_type(value, jnp.int32)
  return jnp.where(value == 0, 0, jnp.where(bits < 0, bits ^ 0x7FFFFFFF, bits))
