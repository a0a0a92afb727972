"""Working around XLA:CPU's fusion decisions without changing results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def materialised(live, fn, *args):
  """`fn(*args)` behind a conditional that is always taken (`live` is true).

  XLA:CPU fuses a stencil into whatever reads it, and a gather or a shifted
  read then recomputes the whole stencil per element read (2.5-10x slower in
  the soft skeleton and the H0 stencils). A conditional's outputs are buffers,
  so `fn` runs once per element. `live` must be a run-time value so that the
  conditional is not folded away; the other branch returns zeros.
  """
  def skipped(*args):
    return jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(fn, *args))
  return lax.cond(live, fn, skipped, *args)
