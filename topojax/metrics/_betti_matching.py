"""Betti matching error: features of either map that the other lacks in place."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from topojax import ph


def betti_matching_error(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike, *,
                         filtration: str = "superlevel", comparison: str = "union",
                         dims=None) -> jax.Array:
  r"""Number of unmatched bars under the induced (Betti) matching, per example.

  $\mathrm{BME} = |U_P| + |U_G|$, the pairs of `pred` and of `target` that the
  induced matching (`topojax.ph.betti_matching`) leaves without a partner,
  summed over `dims`. On binary masks it counts the components and holes of
  either mask that have no spatially corresponding feature in the other; it is
  0 for identical inputs. Runs on the device under `jit` and `vmap`.

  Args:
    pred: `[B, H, W]` or `[B, D, H, W]` maps or binary masks (floating).
    target: same shape.
    filtration: "superlevel" (foreground = high values) or "sublevel".
    comparison: "union" or "intersection".
    dims: homology dimensions; default `(0, d-1)` (on the device; 3D dimension 1
      runs on the host, see `topojax.ph.betti_matching`).

  Returns:
    `[B]` int32.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.metrics import betti_matching_error
    >>> ring = jnp.ones((1, 5, 5)).at[0, 2, 2].set(0.)
    >>> blob = jnp.ones((1, 5, 5))
    >>> betti_matching_error(ring, blob).tolist(), betti_matching_error(ring, ring).tolist()
    ([1], [0])

  References:
    Stucki et al., "Topologically faithful image segmentation via induced
    matching of persistence barcodes", ICML 2023.
  """
  m = ph.betti_matching(pred, target, filtration=filtration, comparison=comparison,
                        dims=dims)
  return (jnp.sum(m.pred_unmatched, axis=1, dtype=jnp.int32)
          + jnp.sum(m.target_unmatched, axis=1, dtype=jnp.int32))
