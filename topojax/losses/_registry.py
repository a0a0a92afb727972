"""Losses by name, and weighted sums of them built from a config.

The trainer never imports a loss directly: it asks `make_loss` for the weighted
sum a config names, so an ablation is a config edit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from topojax._src import registry
from topojax.losses import _segmentation

LossFn = Callable[[jax.Array, jax.Array], jax.Array]

LOSSES: Mapping[str, Callable[..., jax.Array]] = {
    "cross_entropy": _segmentation.cross_entropy,
    "dice": _segmentation.dice,
    "cldice": _segmentation.cldice,
    "dice_cldice": _segmentation.dice_cldice,
    "cedice": _segmentation.cedice,
}


def get_loss(name: str) -> Callable[..., jax.Array]:
  """The loss function registered under `name`."""
  return registry.lookup(LOSSES, name, "loss")


def make_loss(weights: Mapping[str, float],
              options: Mapping[str, Mapping[str, Any]] | None = None) -> LossFn:
  r"""Weighted sum $\sum_k w_k \mathcal{L}_k$ of registered losses, per example.

  Args:
    weights: loss name -> weight, e.g. TopoMortar's "clDice" is
      `{"dice": 0.5, "cldice": 0.5}` with `options={"cldice": {"num_iter": 3}}`.
    options: loss name -> keyword hyperparameters of that loss.

  Returns:
    `fn(logits, labels) -> [B]`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import make_loss
    >>> loss = make_loss({"cross_entropy": 1.0, "dice": 1.0})
    >>> loss(jnp.zeros((2, 8, 8, 2)), jnp.zeros((2, 8, 8), jnp.int32)).shape
    (2,)
  """
  options = dict(options or {})
  if not weights:
    raise ValueError("`weights` must name at least one loss.")
  unused = set(options) - set(weights)
  if unused:
    raise ValueError(f"`options` given for losses without a weight: {sorted(unused)}.")
  terms = [(get_loss(name), float(w), dict(options.get(name, {})))
           for name, w in weights.items()]

  def loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return sum(w * fn(logits, labels, **kw) for fn, w, kw in terms)
  return loss
