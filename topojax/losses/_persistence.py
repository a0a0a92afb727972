"""Losses on persistence barcodes: Betti matching.

They take real-valued maps `pred` and `target`, `[B, H, W]` or `[B, D, H, W]`
(e.g. foreground probabilities and binary labels as floats), and return one
value per example, `[B]`. Barcodes come from `topojax.ph`; their values are
gathered from `pred`, so gradients reach the critical pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from topojax import ph


def _finite_deaths(diagram: ph.Diagram, filtration: str) -> jax.Array:
  """Deaths with the essential classes' infinity replaced by the end of [0, 1]:
  1 for sublevel filtrations, 0 for superlevel (Betti matching's convention)."""
  end = 1.0 if filtration == "sublevel" else 0.0
  return jnp.where(diagram.essential, end, diagram.death)


def betti_matching(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike, *,
                   filtration: str = "superlevel", comparison: str = "union",
                   dims=None, include_essential: bool = False,
                   include_unmatched_target: bool = True) -> jax.Array:
  r"""Betti matching loss (Stucki et al. 2023), per example.

  With $\mathcal{M}$ the induced matching of the barcodes of `pred` and
  `target` (`topojax.ph.betti_matching`) and $U_P$, $U_G$ their unmatched
  pairs,

  $$\mathcal{L} = \sum_{(p, g) \in \mathcal{M}} 2\big[(b_p - b_g)^2 + (d_p - d_g)^2\big]
     + \sum_{p \in U_P} (b_p - d_p)^2 + \sum_{g \in U_G} (b_g - d_g)^2 :$$

  matched pairs are pulled onto each other, unmatched prediction pairs onto
  the diagonal. The target term has no gradient (drop it with
  `include_unmatched_target=False`). Essential classes, when included, die at
  1 (sublevel) or 0 (superlevel), as in the original code.

  Args:
    pred: `[B, H, W]` or `[B, D, H, W]` predicted map (e.g. foreground
      probabilities).
    target: same shape, the target map (e.g. binary labels as floats).
    filtration: "superlevel" (foreground = high values) or "sublevel".
    comparison: "union" or "intersection" (see `topojax.ph.betti_matching`).
    dims: homology dimensions, a subset of `(0, d-1)`; default both.
    include_essential: add the essential H0 classes (always matched).
    include_unmatched_target: add the (constant) unmatched-target term.

  Returns:
    `[B]` losses.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from topojax.losses import betti_matching
    >>> target = jnp.zeros((1, 5, 7)).at[0, 1:4, 1:3].set(1.).at[0, 1:4, 4:6].set(1.)
    >>> pred = 0.8 * target.at[0, 1:4, 4:6].set(0.2)  # the second blob is faint
    >>> round(float(betti_matching(pred, target)[0]), 4)  # 2 (0.16 - 1)^2
    1.4112
    >>> round(float(betti_matching(pred, target, include_essential=True)[0]), 4)
    1.4912
    >>> grad = jax.grad(lambda p: betti_matching(p, target).sum())(pred)
    >>> round(float(grad[0, 1, 4]), 4)  # raises the faint blob's birth pixel
    -3.36

  References:
    Stucki, Paetzold, Shit, Menze, Bauer, "Topologically faithful image
    segmentation via induced matching of persistence barcodes", ICML 2023.
  """
  m = ph.betti_matching(pred, target, filtration=filtration, comparison=comparison,
                        dims=dims, include_essential=include_essential)
  pred_death = _finite_deaths(m.pred, filtration)
  target_death = _finite_deaths(m.target, filtration)
  partner = jnp.maximum(m.pred_match, 0)
  matched = m.pred_match >= 0
  take = lambda x: jnp.take_along_axis(x, partner, axis=1)
  pull = 2 * ((m.pred.birth - take(m.target.birth)) ** 2
              + (pred_death - take(target_death)) ** 2)
  loss = (jnp.sum(jnp.where(matched, pull, 0), axis=1)
          + jnp.sum(jnp.where(m.pred_unmatched, (m.pred.birth - pred_death) ** 2, 0), axis=1))
  if include_unmatched_target:
    loss += jnp.sum(jnp.where(m.target_unmatched, (m.target.birth - target_death) ** 2, 0),
                    axis=1)
  return loss
