"""Numerically safe primitives shared by the persistence code and the losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def safe_norm(diff: jax.Array) -> jax.Array:
  """`[..., D]` -> `[...]` Euclidean norm with a zero (not NaN) gradient at 0."""
  sq = jnp.sum(jnp.square(diff), axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), 0).astype(diff.dtype)
