r"""The topological autoencoder loss (Moor, Horn, Rieck and Borgwardt 2020).

A mini-batch of inputs $X$ and its latent codes $Z$ each give a distance
matrix, $A^X$ and $A^Z$; the 0-dimensional persistence pairs of their
Vietoris–Rips filtrations are the edges $\pi^X$, $\pi^Z$ of a minimum spanning
tree of each. The loss asks every edge that is topologically relevant in one
space to have the same length in the other. The pairing runs on the device (an
exact Prim's algorithm, `topojax.ph.rips_h0`, that breaks ties as the original's
Kruskal does), so the loss works under `jit`, `vmap` and `grad`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax._src import numerics
from topojax.ph import rips_h0

# Flat edge indices lo * B + hi must fit in int32.
_MAX_POINTS = 46340


class TopoAEComponents(NamedTuple):
  r"""The parts of the topological autoencoder loss of one batch (or batches).

  Attributes:
    x_to_z: `[...]` $\lVert A^X[\pi^X] - A^Z[\pi^X]\rVert_2^2$, the MST edges
      of the input space measured in both spaces (the original's
      `metrics.distance1-2`).
    z_to_x: `[...]` $\lVert A^Z[\pi^Z] - A^X[\pi^Z]\rVert_2^2$ (its
      `metrics.distance2-1`).
    matched_pairs: `[...]` int32, how many MST edges the two spaces share (its
      `metrics.matched_pairs_0D`; B - 1 when the trees coincide).
    edges_x: `[..., B - 1, 2]` int32 MST edges $(i, j)$, $i < j$, of the
      input space: row $k$ is the edge through which point $k + 1$ joined the
      tree (a set: the row order carries no meaning).
    edges_z: `[..., B - 1, 2]` int32 MST edges of the latent space.
  """

  x_to_z: jax.Array
  z_to_x: jax.Array
  matched_pairs: jax.Array
  edges_x: jax.Array
  edges_z: jax.Array


def _components_single(x: jax.Array, z: jax.Array, latent_norm: jax.Array,
                       x_scale: jax.Array, scale_by_max: jax.Array) -> TopoAEComponents:
  """The loss components of one batch: `x` `[B, D]`, `z` `[B, d]`; `x_scale`
  is the input scale unless `scale_by_max` (a traced bool: one program)."""
  n = x.shape[0]
  frozen_x, frozen_z = lax.stop_gradient(x), lax.stop_gradient(z)
  dist_x = numerics.safe_norm(frozen_x[:, None, :] - frozen_x[None, :, :])
  dist_z = numerics.safe_norm(frozen_z[:, None, :] - frozen_z[None, :, :])

  # Scales (differentiable): the input's by a constant or its largest distance,
  # recomputed from the coordinates of the farthest pair.
  far = jnp.argmax(dist_x).astype(jnp.int32)
  largest = numerics.safe_norm(x[far // n] - x[far % n])
  scale_x = jnp.where(scale_by_max, jnp.where(largest > 0, largest, jnp.ones((), x.dtype)),
                      x_scale)
  scale_z = latent_norm

  # The pairing, on the scaled matrices as in the original.
  # `rips_h0` orders equal lengths by flat index: Kruskal's stable-sorted
  # upper triangle, as the original's union-find takes them.
  edges = rips_h0(jnp.stack([dist_x / lax.stop_gradient(scale_x),
                             dist_z / lax.stop_gradient(scale_z)]),
                  distance_matrix=True).death_index[:, 1:]
  lo, hi = edges // n, edges % n  # [2, B - 1] each

  # Edge lengths in both spaces, from the coordinates (gradient-safe sqrt).
  length_x = numerics.safe_norm(x[lo] - x[hi]) / scale_x
  length_z = numerics.safe_norm(z[lo] - z[hi]) / scale_z
  terms = jnp.sum(jnp.square(length_x - length_z), axis=-1)

  in_z = jnp.isin(edges[0], edges[1])
  return TopoAEComponents(
      x_to_z=terms[0],
      z_to_x=terms[1],
      matched_pairs=jnp.sum(in_z, dtype=jnp.int32),
      edges_x=jnp.stack([lo[0], hi[0]], axis=-1),
      edges_z=jnp.stack([lo[1], hi[1]], axis=-1),
  )


def _check_inputs(x, z, x_scale, latent_norm):
  x, z = jnp.asarray(x), jnp.asarray(z)
  checks.check_floating(x, "x")
  checks.check_floating(z, "z")
  if x.ndim < 2:
    raise ValueError(
        f"`x` must be [..., B, D]: a batch of B inputs flattened to D features "
        f"(reshape images to [B, -1]), got shape {x.shape}.")
  if z.ndim < 2:
    raise ValueError(f"`z` must be [..., B, d] latent codes, got shape {z.shape}.")
  if z.shape[:-1] != x.shape[:-1]:
    raise ValueError(
        f"`z` must have the batch shape of `x`, x.shape[:-1] = {x.shape[:-1]} "
        f"(one latent code per input), got z.shape = {z.shape}.")
  n = x.shape[-2]
  if not 1 <= n <= _MAX_POINTS:
    raise ValueError(
        f"`x` must hold 1 <= B <= {_MAX_POINTS} points per batch (int32 edge "
        f"indices), got B = {n} (shape {x.shape}).")
  if x.shape[-1] == 0 or z.shape[-1] == 0:
    raise ValueError(
        f"`x` and `z` need at least one feature, got shapes {x.shape} and {z.shape}.")
  with jax.numpy_dtype_promotion("standard"):
    dtype = jnp.promote_types(x.dtype, z.dtype)
  x, z = x.astype(dtype), z.astype(dtype)

  # A scalar array and a flag (traced, so that every choice runs one program).
  scale_by_max = isinstance(x_scale, str)
  if scale_by_max:
    if x_scale != "max":
      raise ValueError(
          f'`x_scale` must be "max", a positive number or None, got {x_scale!r}.')
    x_scale = jnp.ones((), dtype)
  elif x_scale is None:
    x_scale = jnp.ones((), dtype)
  else:
    x_scale = _positive_scalar(x_scale, "x_scale", dtype)
  latent_norm = _positive_scalar(latent_norm, "latent_norm", dtype)

  checks.raise_if_nonfinite(x, "x")
  checks.raise_if_nonfinite(z, "z")
  return x, z, x_scale, jnp.asarray(scale_by_max), latent_norm


def _positive_scalar(value, name: str, dtype) -> jax.Array:
  """A real scalar (maybe traced) as `dtype`; raises unless > 0 when concrete."""
  if isinstance(value, bool):
    raise ValueError(f"`{name}` must be a positive real scalar, got {value!r}.")
  value = jnp.asarray(value)
  if value.shape != () or not (jnp.issubdtype(value.dtype, jnp.floating)
                               or jnp.issubdtype(value.dtype, jnp.integer)):
    raise ValueError(
        f"`{name}` must be a positive real scalar, got {value.dtype} with shape "
        f"{value.shape}.")
  if not isinstance(value, jax.core.Tracer) and not 0 < float(value) < float("inf"):
    raise ValueError(f"`{name}` must be finite and > 0, got {float(value)}.")
  return value.astype(dtype)


def topological_autoencoder_components(
    x: jax.typing.ArrayLike, z: jax.typing.ArrayLike, *, x_scale: jax.typing.ArrayLike | str | None = "max",
    latent_norm: jax.typing.ArrayLike = 1.0) -> TopoAEComponents:
  r"""The two signature terms of `topological_autoencoder`, and the MST pairings.

  Same arguments as `topological_autoencoder`; returns a `TopoAEComponents`
  whose `x_to_z + z_to_x`, divided by the batch size B, is the loss. Useful
  for logging (the original logs both terms and the number of matched pairs)
  and for inspecting the pairings.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import topological_autoencoder_components
    >>> x = jnp.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> z = jnp.array([[0.0], [2.0], [3.0]])
    >>> c = topological_autoencoder_components(x, z, x_scale=None)
    >>> c.edges_x.tolist(), c.edges_z.tolist()
    ([[0, 1], [1, 2]], [[0, 1], [1, 2]])
    >>> float(c.x_to_z), float(c.z_to_x), int(c.matched_pairs)
    (2.0, 2.0, 2)
  """
  return _run(*_check_inputs(x, z, x_scale, latent_norm))[1]


@jax.jit
def _run(x, z, x_scale, scale_by_max, latent_norm) -> tuple[jax.Array, TopoAEComponents]:
  """(loss, components)."""
  batch_shape = x.shape[:-2]
  core = lambda a, b: _components_single(a, b, latent_norm, x_scale, scale_by_max)
  if not batch_shape:
    out = core(x, z)
  else:
    flat = jax.vmap(core)(x.reshape((-1,) + x.shape[-2:]), z.reshape((-1,) + z.shape[-2:]))
    out = jax.tree_util.tree_map(lambda a: a.reshape(batch_shape + a.shape[1:]), flat)
  scales = jnp.stack([latent_norm, x_scale])
  bad = ~(jnp.all(jnp.isfinite(x), axis=(-2, -1)) & jnp.all(jnp.isfinite(z), axis=(-2, -1))
          & jnp.all(jnp.isfinite(scales) & (scales > 0)))
  nan = jnp.full((), jnp.nan, x.dtype)
  out = out._replace(x_to_z=jnp.where(bad, nan, out.x_to_z),
                     z_to_x=jnp.where(bad, nan, out.z_to_x))
  return (out.x_to_z + out.z_to_x) / x.shape[-2], out


def topological_autoencoder(x: jax.typing.ArrayLike, z: jax.typing.ArrayLike, *,
                            x_scale: jax.typing.ArrayLike | str | None = "max",
                            latent_norm: jax.typing.ArrayLike = 1.0) -> jax.Array:
  r"""Topological autoencoder loss (Moor et al. 2020): the symmetric signature distance.

  For a batch of B inputs $x_i$ (flattened to D features) and their latent
  codes $z_i$, let

  $$A^X_{ij} = \frac{\lVert x_i - x_j\rVert_2}{s_X}, \qquad
    A^Z_{ij} = \frac{\lVert z_i - z_j\rVert_2}{s_Z}$$

  be the Euclidean distance matrices, and $\pi^X$, $\pi^Z$ the persistence
  pairs of the 0-dimensional Vietoris–Rips persistent homology of each,
  i.e. the $B - 1$ edges of a minimum spanning tree (each H0 class dies at an
  MST edge). The loss is

  $$\mathcal{L} = \frac{1}{B}\Big(\big\lVert A^X[\pi^X] - A^Z[\pi^X]\big\rVert_2^2
     + \big\lVert A^Z[\pi^Z] - A^X[\pi^Z]\big\rVert_2^2\Big):$$

  the input space's topologically relevant edges must keep their length in
  the latent space and vice versa (the original's `match_edges="symmetric"`,
  the loss of the paper). The pairings are piecewise constant (no gradient);
  the selected distances are differentiable in `x`, `z` and `latent_norm`.

  **Conventions of the original code** (BorgwardtLab/topological-autoencoders,
  `src/models/approx_based.py`, `TopologicallyRegularizedAutoencoder.forward`
  and `TopologicalSignatureDistance`; `src/topology.py`,
  `PersistentHomologyCalculation`), all kept here:

  * Euclidean distances ($p = 2$) between flattened inputs.
  * Input distances divided by their largest value in the batch, $s_X =
    \max_{ij} \lVert x_i - x_j\rVert$ (`x_scale="max"`, the original's choice
    for non-image data). For image batches `[B, C, H, W]` scaled to
    [-1, 1] the original divides by the theoretical maximum
    $\sqrt{4\,C H W}$ instead: pass `x_scale=2 * sqrt(D)` with
    $D = C H W$. `x_scale=None` leaves the distances as they are.
  * Latent distances divided by `latent_norm` $s_Z$, a learnable scalar in
    the original (`nn.Parameter`, initialised to 1): pass a parameter of your
    model and the gradient reaches it.
  * The pairing is Kruskal's algorithm on the scaled distance matrices, edges
    stable-sorted by length (equal lengths: row-major order of the upper
    triangle). This routine runs Prim's algorithm with the same tie-breaking,
    so it selects the very same edges, ties and duplicate points included.
  * The squared (not square-rooted) signature error, summed over both
    directions, divided by the batch size B (the original's
    `topo_error / batch_size`). The regularisation weight $\lambda$ (`lam`)
    is applied by the caller: `total = reconstruction + lam * loss`.

  Duplicate points (zero distances) have finite gradients: zero-length edges
  use a gradient-safe square root. If every input distance is 0, `"max"`
  scaling divides by 1 (the original divides by 0 and returns NaN). Under
  `jit`/`vmap`, NaN or inf in `x` or `z`, or a `latent_norm` or numeric
  `x_scale` that is not finite and positive, make the loss NaN; eager calls
  raise instead.

  Args:
    x: `[..., B, D]` floating inputs: a mini-batch of B points with D features
      (flatten images first). Leading axes are independent batches (vmapped).
    z: `[..., B, d]` floating latent codes of the same points (d may differ
      from D). If the dtypes of `x` and `z` differ both are cast to their
      promoted dtype.
    x_scale: `"max"` (default), a positive real scalar (may be traced), or
      None: what the input distances are divided by (see above).
    latent_norm: positive real scalar (may be traced): what the latent
      distances are divided by.

  Returns:
    `[...]` one loss per batch (a scalar for `[B, D]` inputs), in the
    promoted dtype of `x` and `z`. `topological_autoencoder_components`
    returns the two terms and the pairings.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import topological_autoencoder
    >>> x = jnp.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> z = jnp.array([[0.0], [2.0], [3.0]])  # MST edges (0, 1), (1, 2) in both
    >>> loss = topological_autoencoder(x, z, x_scale=None)
    >>> round(float(loss), 4)  # (2 (1 - 2)^2 + 2 (2 - 1)^2) / 3: both trees share both edges
    1.3333
    >>> g = jax.grad(lambda z: topological_autoencoder(x, z, x_scale=None))(z)
    >>> [round(v, 4) for v in g.ravel().tolist()]  # descent shortens z_0 z_1, lengthens z_1 z_2
    [-1.3333, 2.6667, -1.3333]
    >>> # Inputs scaled by their largest distance (3), latents by latent_norm:
    >>> float(topological_autoencoder(x, 3 * x, latent_norm=9.0))
    0.0
    >>> topological_autoencoder(jnp.stack([x, x]), jnp.stack([z, 2 * z])).shape
    (2,)

  References:
    Moor, Horn, Rieck and Borgwardt, "Topological Autoencoders", ICML 2020
    (github.com/BorgwardtLab/topological-autoencoders).
  """
  return _run(*_check_inputs(x, z, x_scale, latent_norm))[0]
