"""Directions on the unit sphere and threshold grids for the ECT.

Directions are `[num_directions, ambient_dim]` everywhere in `topojax.ect`
(one row per direction; dect stores the transpose).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from topojax._src import checks


def _check_dim(dim: int) -> int:
  checks.check_positive_int(dim, "dim")
  return dim


def uniform_directions(key: jax.Array, num: int, dim: int) -> jax.Array:
  """`num` directions drawn uniformly on the sphere S^{dim-1} (seeded).

  Normalised Gaussian vectors, the rotation-invariant distribution.

  Examples:
    >>> import jax
    >>> from topojax.ect import uniform_directions
    >>> v = uniform_directions(jax.random.key(0), 5, 3)
    >>> v.shape, bool(jax.numpy.allclose(jax.numpy.linalg.norm(v, axis=1), 1.0))
    ((5, 3), True)
  """
  checks.check_positive_int(num, "num")
  _check_dim(dim)
  return project_to_sphere(jax.random.normal(key, (num, dim)))


def circle_directions(num: int, *, endpoint: bool = False) -> jax.Array:
  r"""`num` evenly spaced directions $(\cos\theta, \sin\theta)$ on the circle.

  Args:
    num: number of directions.
    endpoint: include $\theta = 2\pi$, so the first and last directions
      coincide (the DECT paper's fixed directions do this).

  Returns:
    `[num, 2]`.
  """
  checks.check_positive_int(num, "num")
  theta = jnp.linspace(0.0, 2 * jnp.pi, num, endpoint=endpoint)
  return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)


def multiview_directions(num_per_circle: int, dim: int) -> jax.Array:
  """Evenly spaced directions on each of the C(dim, 2) coordinate great circles.

  Circle (i, j) for axes i < j in lexicographic order holds directions
  `cos(theta) e_i + sin(theta) e_j`; reshape the result to
  `[C(dim, 2), num_per_circle, dim]` to treat each circle as one view (an ECT
  channel).

  Returns:
    `[C(dim, 2) * num_per_circle, dim]`.
  """
  _check_dim(dim)
  if dim < 2:
    raise ValueError(f"`dim` must be >= 2 for great circles, got {dim}.")
  circle = circle_directions(num_per_circle)
  views = []
  for i, j in itertools.combinations(range(dim), 2):
    view = jnp.zeros((num_per_circle, dim)).at[:, i].set(circle[:, 0]).at[:, j].set(circle[:, 1])
    views.append(view)
  return jnp.concatenate(views)


def project_to_sphere(v: jax.Array) -> jax.Array:
  """Rows of `v` divided by their norms: learnable directions stay unit vectors
  when the layer stores an unconstrained `v` and uses `project_to_sphere(v)`."""
  v = jnp.asarray(v)
  checks.check_floating(v, "v")
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def linear_thresholds(radius: float, num: int) -> jax.Array:
  """`linspace(-radius, radius, num)`, both ends included (the DECT convention)."""
  checks.check_positive_int(num, "num")
  if not radius > 0:
    raise ValueError(f"`radius` must be > 0, got {radius}.")
  return jnp.linspace(-radius, radius, num)
