"""Losses by name, and scheduled weighted sums of them built from a config.

The trainer never imports a loss directly: it asks `make_loss` for the weighted
sum a config names, so an ablation is a config edit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax._src import registry
from topojax.losses import _autoencoder
from topojax.losses import _persistence
from topojax.losses import _rwloss
from topojax.losses import _segmentation
from topojax.losses import _skeleton
from topojax.losses import _topo_malis
from topojax.losses import _warping

LossFn = Callable[..., jax.Array]


def on_foreground(loss: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """A loss on maps `(pred, target)` as a loss on `(logits, labels)`.

  `pred` is the foreground probability $1 - \\mathrm{softmax}(\\text{logits})_0$
  and `target` the foreground mask `labels > 0` as floats (soft labels, the
  foreground probability, are the target as they are), so that every loss in
  the registry has the trainer's signature.
  """
  def on_logits(logits: jax.Array, labels: jax.Array, **hyperparameters) -> jax.Array:
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    checks.check_logits_and_labels(logits, labels)
    # At least float32 (persistence pairs low-precision values badly).
    dtype = jnp.float32 if jnp.finfo(logits.dtype).bits < 32 else logits.dtype
    background = jax.nn.softmax(logits.astype(dtype), axis=-1)[..., 0]
    target = labels if checks.is_soft(labels) else labels > 0
    return loss(1 - background, target.astype(background.dtype), **hyperparameters)
  on_logits.__name__ = on_logits.__qualname__ = loss.__name__
  on_logits.__doc__ = f"`{loss.__name__}` on logits and labels (see `on_foreground`)."
  return on_logits


LOSSES: Mapping[str, LossFn] = {
    "cross_entropy": _segmentation.cross_entropy,
    "dice": _segmentation.dice,
    "cldice": _segmentation.cldice,
    "dice_cldice": _segmentation.dice_cldice,
    "cedice": _segmentation.cedice,
    "betti_matching": on_foreground(_persistence.betti_matching),
    "topoloss": on_foreground(_persistence.topoloss),
    "topo_malis": _topo_malis.topo_malis_on_logits,
    "skeleton_recall": _skeleton.skeleton_recall,
    "cbdice": _skeleton.cbdice,
    "warping": _warping.warping,
    "rwloss": _rwloss.rwloss,
}


def get_loss(name: str) -> LossFn:
  """The loss function registered under `name` (signature `(logits, labels, **kw)`)."""
  return registry.lookup(LOSSES, name, "loss")


def weight_schedule(name: str = "constant", *, start_fraction: float = 0.0,
                    end_fraction: float = 1.0) -> Callable[[jax.Array, int], jax.Array]:
  r"""A loss weight's multiplier as a function of `(step, total_steps)`.

  - "constant": 1.
  - "step": 0 before `start_fraction * total_steps`, then 1 (TopoMortar's
    topology terms: `start_fraction=0.7`, the last 30 % of iterations).
  - "linear": 0 before `start_fraction`, rising linearly to 1 at `end_fraction`.

  Examples:
    >>> from topojax.losses import weight_schedule
    >>> late = weight_schedule("step", start_fraction=0.7)
    >>> [float(late(s, 100)) for s in (0, 69, 70, 100)]
    [0.0, 0.0, 1.0, 1.0]
  """
  if not 0.0 <= start_fraction <= end_fraction <= 1.0:
    raise ValueError(f"Need 0 <= `start_fraction` <= `end_fraction` <= 1, got "
                     f"{start_fraction} and {end_fraction}.")

  def constant(step, total_steps):
    del step, total_steps
    return jnp.ones((), jnp.float32)

  def step_(step, total_steps):
    return (jnp.asarray(step, jnp.float32) >= start_fraction * total_steps).astype(jnp.float32)

  def linear(step, total_steps):
    start, end = start_fraction * total_steps, end_fraction * total_steps
    step = jnp.asarray(step, jnp.float32)
    ramp = jnp.clip((step - start) / max(end - start, 1.0), 0.0, 1.0)
    return jnp.where(step >= start, ramp, 0.0)

  return registry.lookup({"constant": constant, "step": step_, "linear": linear}, name,
                         "weight schedule")


def _weighted_terms(get: Callable[[str], LossFn], weights: Mapping[str, float],
                    options: Mapping[str, Mapping[str, Any]] | None,
                    schedules: Mapping[str, Mapping[str, Any]] | None,
                    total_steps: int | None) -> list[tuple[str, LossFn, float, dict, Any]]:
  """`[(name, fn, weight, options, schedule or None)]` of a weighted sum of the
  losses `get` looks up; checks that the tables agree (`make_loss`'s Raises)."""
  options, schedules = dict(options or {}), dict(schedules or {})
  if not weights:
    raise ValueError("`weights` must name at least one loss.")
  for what, table in (("options", options), ("schedules", schedules)):
    unused = set(table) - set(weights)
    if unused:
      raise ValueError(f"`{what}` given for losses without a weight: {sorted(unused)}.")
  if schedules and total_steps is None:
    raise ValueError("`total_steps` is required with `schedules`.")
  return [(name, get(name), float(w), dict(options.get(name, {})),
           weight_schedule(**schedules[name]) if name in schedules else None)
          for name, w in weights.items()]


def make_loss(weights: Mapping[str, float],
              options: Mapping[str, Mapping[str, Any]] | None = None,
              schedules: Mapping[str, Mapping[str, Any]] | None = None, *,
              total_steps: int | None = None) -> LossFn:
  r"""Weighted sum $\sum_k s_k(t)\, w_k \mathcal{L}_k$ of registered losses, per example.

  Args:
    weights: loss name -> weight, e.g. TopoMortar's "clDice" is
      `{"dice": 0.5, "cldice": 0.5}` with `options={"cldice": {"num_iter": 3}}`.
    options: loss name -> keyword hyperparameters of that loss.
    schedules: loss name -> `weight_schedule` arguments, e.g.
      `{"betti_matching": {"name": "step", "start_fraction": 0.7}}`. A term
      whose multiplier is 0 is not computed (`lax.cond`), so a late topology
      loss costs nothing before it starts.
    total_steps: the run's length; required with `schedules`.

  Returns:
    `fn(logits, labels, step=None) -> [B]`; `step` is required with `schedules`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import make_loss
    >>> loss = make_loss({"cross_entropy": 1.0, "dice": 1.0})
    >>> loss(jnp.zeros((2, 8, 8, 2)), jnp.zeros((2, 8, 8), jnp.int32)).shape
    (2,)
  """
  terms = [term[1:] for term in _weighted_terms(get_loss, weights, options, schedules,
                                                 total_steps)]

  def loss(logits: jax.Array, labels: jax.Array, step=None) -> jax.Array:
    total = 0
    for fn, w, kw, schedule in terms:
      if schedule is None:
        total += w * fn(logits, labels, **kw)
        continue
      if step is None:
        raise ValueError("This loss has scheduled terms: pass `step`.")
      multiplier = schedule(step, total_steps)
      on = lambda l, y, fn=fn, kw=kw: fn(l, y, **kw)
      off = lambda l, y, out=jax.eval_shape(on, logits, labels): jnp.zeros(out.shape, out.dtype)
      term = lax.cond(multiplier > 0, on, off, logits, labels)
      total += w * multiplier * term
    return total
  return loss


# ----------------------------------------------------------------------------
# Autoencoder losses: one number per batch from the inputs `x` `[B, D]`, their
# latent codes `z` `[B, d]` and reconstructions `x_hat` `[B, D]`; the
# topological autoencoder loss compares the whole batch's distances, so these
# are batch losses (`[]`), not per-example ones.
# ----------------------------------------------------------------------------


def _check_autoencoder_batch(x: jax.Array, z: jax.Array, x_hat: jax.Array) -> None:
  for name, value in (("x", x), ("z", z), ("x_hat", x_hat)):
    checks.check_floating(value, name)
    if value.ndim != 2:
      raise ValueError(f"`{name}` must be [B, features], got shape {value.shape}.")
  if x_hat.shape != x.shape:
    raise ValueError(f"`x_hat` must have the shape of `x`, {x.shape}, got {x_hat.shape}.")
  if z.shape[0] != x.shape[0]:
    raise ValueError(
        f"`z` must hold one latent code per input: z.shape[0] = {z.shape[0]}, "
        f"x.shape[0] = {x.shape[0]}.")


def reconstruction(x: jax.Array, z: jax.Array, x_hat: jax.Array, *,
                   latent_norm: jax.typing.ArrayLike = 1.0) -> jax.Array:
  r"""Mean squared reconstruction error $\frac{1}{BD}\sum_{ij}(\hat x_{ij} - x_{ij})^2$, `[]`.

  The original's `nn.MSELoss()` (mean over every entry). `z` and
  `latent_norm` are unused: the autoencoder losses share one signature.
  """
  del z, latent_norm
  return jnp.mean(jnp.square(x_hat - x))


def topological_autoencoder_term(x: jax.Array, z: jax.Array, x_hat: jax.Array, *,
                                 latent_norm: jax.typing.ArrayLike = 1.0,
                                 x_scale: jax.typing.ArrayLike | str | None = "max") -> jax.Array:
  """`topojax.losses.topological_autoencoder(x, z)` in the autoencoder signature, `[]`.

  `latent_norm` is the model's learnable latent scale; `x_scale` an option.
  """
  del x_hat
  return _autoencoder.topological_autoencoder(x, z, x_scale=x_scale, latent_norm=latent_norm)


AUTOENCODER_LOSSES: Mapping[str, LossFn] = {
    "reconstruction": reconstruction,
    "topological_autoencoder": topological_autoencoder_term,
}


def get_autoencoder_loss(name: str) -> LossFn:
  """The autoencoder loss registered under `name` (signature
  `(x, z, x_hat, *, latent_norm, **kw) -> []`)."""
  return registry.lookup(AUTOENCODER_LOSSES, name, "autoencoder loss")


def make_autoencoder_loss(
    weights: Mapping[str, float],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    schedules: Mapping[str, Mapping[str, Any]] | None = None, *,
    total_steps: int | None = None,
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
  r"""Weighted sum $\sum_k s_k(t)\, w_k \mathcal{L}_k$ of autoencoder losses, per batch.

  `make_loss` for autoencoders: the same `weights`, `options`, `schedules`
  and `total_steps` (and the same errors), over `AUTOENCODER_LOSSES`:

  - "reconstruction": mean squared error of `x_hat` (`reconstruction`);
  - "topological_autoencoder": Moor et al.'s loss on `x` and `z` with the
    model's `latent_norm` (`topojax.losses.topological_autoencoder`; option
    `x_scale`).

  The original's objective `reconstruction + lam * topological` is
  `{"reconstruction": 1.0, "topological_autoencoder": lam}`.

  Returns:
    `fn(x, z, x_hat, *, latent_norm=1.0, step=None) -> (total, terms)` for
    `x` `[B, D]`, `z` `[B, d]`, `x_hat` `[B, D]`: `total` `[]` the weighted
    sum, `terms` loss name -> `[]` its unweighted value (0 while a schedule
    holds the term off), for logging. `step` is required with `schedules`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import make_autoencoder_loss
    >>> loss = make_autoencoder_loss({"reconstruction": 1.0, "topological_autoencoder": 0.5})
    >>> x = jnp.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> total, terms = loss(x, x[:, :1], x + 1.0)  # z: the first coordinate
    >>> {name: round(float(v), 4) for name, v in terms.items()}
    {'reconstruction': 1.0, 'topological_autoencoder': 1.4815}
    >>> round(float(total), 4)  # 1.0 + 0.5 * 1.4815
    1.7407
    >>> # Input distances are divided by their largest (3): a latent scale of 3 matches.
    >>> float(loss(x, x[:, :1], x, latent_norm=3.0)[0])
    0.0
  """
  terms = _weighted_terms(get_autoencoder_loss, weights, options, schedules, total_steps)

  def loss(x: jax.Array, z: jax.Array, x_hat: jax.Array, *,
           latent_norm: jax.typing.ArrayLike = 1.0,
           step=None) -> tuple[jax.Array, dict[str, jax.Array]]:
    x, z, x_hat = jnp.asarray(x), jnp.asarray(z), jnp.asarray(x_hat)
    _check_autoencoder_batch(x, z, x_hat)
    total, values = 0, {}
    for name, fn, w, kw, schedule in terms:
      if schedule is None:
        values[name] = fn(x, z, x_hat, latent_norm=latent_norm, **kw)
        total += w * values[name]
        continue
      if step is None:
        raise ValueError("This loss has scheduled terms: pass `step`.")
      multiplier = schedule(step, total_steps)
      on = lambda x, z, x_hat, s, fn=fn, kw=kw: fn(x, z, x_hat, latent_norm=s, **kw)
      scale = jnp.asarray(latent_norm, x.dtype)
      out = jax.eval_shape(on, x, z, x_hat, scale)
      values[name] = lax.cond(multiplier > 0, on,
                              lambda *_, out=out: jnp.zeros(out.shape, out.dtype),
                              x, z, x_hat, scale)
      total += w * multiplier * values[name]
    return total, values
  return loss
