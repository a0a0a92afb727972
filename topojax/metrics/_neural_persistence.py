r"""Neural persistence (Rieck et al. 2019): a complexity measure of a network's weights.

Every dense layer is a complete bipartite graph between its inputs and outputs,
weighted by the absolute weights. Filtering it from the largest weight down
(a superlevel filtration), the 0-dimensional persistence pairs are the edges
of a maximum spanning tree; neural persistence is the p-norm of their
persistences. The spanning trees come from `topojax.ph.rips_h0` on the
bipartite graph's "distance" $1 - |w|$, on the device.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp

from topojax._src import checks
from topojax.ph import rips_h0


class NeuralPersistence(NamedTuple):
  r"""Neural persistence of every layer and of the network.

  Attributes:
    per_layer: `[L]` one value per weight matrix, in the order of
      `jax.tree_util.tree_leaves(weights)`; divided by the bound
      $(n - 1)^{1/p}$ with `normalize=True` (see `neural_persistence` for
      when that keeps them in [0, 1]).
    mean: `[]` the mean of `per_layer`: with `normalize=True` the network's
      "mean normalised neural persistence" of the paper (the original's
      `accumulated_total_persistence_normalized`).
  """

  per_layer: jax.Array
  mean: jax.Array


def _weight_matrices(weights) -> tuple[list[jax.Array], list[str]]:
  """The 2-D leaves of `weights` (a matrix, a sequence, a pytree or an NNX module)."""
  nnx = sys.modules.get("flax.nnx")  # loaded whenever an NNX module exists
  if nnx is not None and isinstance(weights, nnx.Module):
    weights = nnx.state(weights, nnx.Param)
  leaves, _ = jax.tree_util.tree_flatten_with_path(weights)
  matrices, names = [], []
  for path, leaf in leaves:
    name = "weights" + jax.tree_util.keystr(path)
    leaf = jnp.asarray(leaf)
    if leaf.ndim < 2:  # biases, norm scales, step counters
      continue
    if leaf.ndim > 2:
      raise ValueError(
          f"`{name}` has shape {leaf.shape}: neural persistence is defined for "
          f"dense layers, 2-D weight matrices [n_in, n_out]. Pass only dense "
          f"kernels (or reshape a kernel to the bipartite graph you mean).")
    checks.check_floating(leaf, name)
    if 0 in leaf.shape:
      raise ValueError(f"`{name}` is an empty weight matrix: shape {leaf.shape}.")
    matrices.append(leaf)
    names.append(name)
  if not matrices:
    raise ValueError(
        "`weights` holds no 2-D weight matrix: pass a [n_in, n_out] array, a "
        "list of them, a pytree (e.g. a parameter dict) or an NNX module.")
  return matrices, names


def _mst_persistence(magnitude: jax.Array, scale: jax.Array) -> jax.Array:
  """`[n - 1]` persistences 1 - w of the maximum spanning tree of one layer,
  with weights w = `magnitude / scale` in [0, 1]."""
  n_in, n_out = magnitude.shape
  n = n_in + n_out
  # Vertices enter at 1, edge (i, j) at its weight w: the lengths 1 - w of an
  # MST of the bipartite graph are the deaths of a Rips H0 diagram with
  # "distances" 1 - w between the two sides and none (+inf) within a side.
  # (scale - |W|) / scale is exactly 0 for the largest weights (1 - |W| / scale
  # need not be, when XLA divides by multiplying with the reciprocal).
  gap = (scale - magnitude) / scale
  dist = jnp.full((n, n), jnp.inf, magnitude.dtype)
  dist = dist.at[:n_in, n_in:].set(gap).at[n_in:, :n_in].set(gap.T)
  dist = jnp.where(jnp.eye(n, dtype=bool), jnp.zeros((), magnitude.dtype), dist)
  dgm = rips_h0(dist, distance_matrix=True)
  # Slot 0 holds the essential class (the graph is connected); slots 1..n-1
  # the tree edges.
  return jnp.abs(dgm.death[1:])


def neural_persistence(weights, *, p: float = 2.0, normalize: bool = True,
                       weight_scale: str = "network",
                       include_essential: bool = True) -> NeuralPersistence:
  r"""Neural persistence of a network's dense layers (Rieck et al. 2019).

  Layer k with weights $W \in \mathbb{R}^{n_\text{in}\times n_\text{out}}$
  is the complete bipartite graph $G_k$ on $n = n_\text{in} + n_\text{out}$
  vertices with edge weights $w'_{ij} = |W_{ij}| / w_\max$, where $w_\max$ is
  the largest absolute weight **of the whole network** (`weight_scale=
  "network"`, the original's choice) or of the layer (`"layer"`). In the
  superlevel filtration every vertex is present from 1 on and edge (i, j)
  enters at $w'_{ij}$, so the 0-dimensional persistence pairs are
  $(1, w'_e)$ for the $n - 1$ edges $e$ of a maximum spanning tree, plus one
  essential class that the original closes at 0 (persistence 1). Then

  $$\mathrm{NP}(G_k) = \lVert D_k \rVert_p = \Big(\sum_{e \in \mathrm{MST}}
     (1 - w'_e)^p + 1\Big)^{1/p},
     \qquad \widetilde{\mathrm{NP}}(G_k) = \frac{\mathrm{NP}(G_k)}{(n - 1)^{1/p}},$$

  and the network's value is the mean of the normalised layer values,
  $\frac{1}{L}\sum_k \widetilde{\mathrm{NP}}(G_k)$.

  **Conventions of the original code** (BorgwardtLab/Neural-Persistence,
  `src/tda.py`, `PerLayerCalculation`, with Aleph's
  `calculateZeroDimensionalPersistenceDiagramOfMatrix(|M| / W,
  reverseFiltration=True, vertexWeight=1.0, unpairedData=0.0)` and
  `norms.pNorm`), kept by default:

  * weights normalised by the largest absolute weight of the whole network,
    biases excluded;
  * the essential class counted with persistence 1 (`include_essential=True`;
    `False` drops it, so that $\sum_e (1 - w'_e)^p$ alone is normed);
  * normalisation by $\sqrt{n - 1}$, the paper's bound $(n-1)^{1/p}$ at the
    code's only $p = 2$ (for other p this routine divides by $(n-1)^{1/p}$);
  * zero-persistence pairs (edges of weight $w_\max$) count as 0.

  **Bounds.** Each of the $n$ persistences lies in [0, 1], and the spanning
  tree holds the layer's largest weight. So $\widetilde{\mathrm{NP}} \in
  [0, 1]$ for the layer holding the network's largest weight, for every layer
  with `weight_scale="layer"`, and for every layer with
  `include_essential=False`; $\widetilde{\mathrm{NP}} = 1$ when a single
  weight is $w_\max$ and all others are 0. With the original's defaults a
  layer whose weights are all small compared with the network's largest one
  can exceed 1, up to $(n / (n - 1))^{1/p}$. A layer whose weights all equal
  the largest one has $\mathrm{NP} = 1$ (only the essential class), i.e. 0
  with `include_essential=False`. An all-zero network is scaled by 1 (the
  original divides by 0).

  The spanning trees are `topojax.ph.rips_h0` on the n x n matrix of
  $1 - w'$ between the two sides of the layer (+inf within a side): O(n^2)
  memory per layer, on the device. Works under `jit` (hyperparameters are
  static Python values); eager calls raise on NaN or inf weights, traced ones
  return NaN for the layer (for every layer with `weight_scale="network"`,
  whose common scale it spoils).

  Args:
    weights: the weight matrices `[n_in, n_out]` (either orientation: the
      graph is the same): one array, a list or tuple of them, any pytree (e.g.
      a Flax parameter dict; leaves with fewer than 2 axes, such as biases, are
      skipped; leaves with more than 2 axes raise), or an `nnx.Module` (its
      `nnx.Param` leaves).
    p: the order of the norm, 0 < p < inf (2 in the paper and the code).
    normalize: divide each layer's value by $(n - 1)^{1/p}$.
    weight_scale: `"network"` (the original) or `"layer"`: whose largest
      absolute weight scales the weights to [0, 1].
    include_essential: count the essential class (persistence 1), as the
      original does.

  Returns:
    A `NeuralPersistence` with `per_layer` `[L]` (in the order of
    `jax.tree_util.tree_leaves`; a plain `dict` is ordered by sorted keys) and
    `mean` `[]`, floating (at least float32).

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.metrics import neural_persistence
    >>> w = jnp.array([[1.0, 0.5], [0.25, 0.0]])  # spanning tree: 1, 0.5, 0.25
    >>> out = neural_persistence(w, normalize=False)
    >>> round(float(out.mean), 4)  # sqrt(0^2 + 0.5^2 + 0.75^2 + 1)
    1.3463
    >>> round(float(neural_persistence(w).mean), 4)  # divided by sqrt(4 - 1)
    0.7773
    >>> layers = [jnp.ones((3, 4)), 0.5 * jnp.ones((4, 2))]
    >>> # 1 / sqrt(6) (the essential class only); sqrt(5 * 0.5^2 + 1) / sqrt(5)
    >>> [round(v, 4) for v in neural_persistence(layers).per_layer.tolist()]
    [0.4082, 0.6708]
    >>> neural_persistence(layers, include_essential=False).per_layer.tolist()
    [0.0, 0.5]

  References:
    Rieck, Togninalli, Bock, Moor, Horn, Gumbsch and Borgwardt, "Neural
    Persistence: A Complexity Measure for Deep Neural Networks Using Algebraic
    Topology", ICLR 2019 (github.com/BorgwardtLab/Neural-Persistence).
  """
  if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < float("inf"):
    raise ValueError(f"`p` must be a finite number > 0, got {p!r}.")
  p = float(p)
  if weight_scale not in ("network", "layer"):
    raise ValueError(f'`weight_scale` must be "network" or "layer", got {weight_scale!r}.')
  matrices, names = _weight_matrices(weights)
  with jax.numpy_dtype_promotion("standard"):
    dtype = jnp.result_type(jnp.float32, *(m.dtype for m in matrices))
  for m, name in zip(matrices, names):
    checks.raise_if_nonfinite(m, name)
  # One compiled program per layer shape (hyperparameters are traced), shared
  # by every network and setting; under an outer `jit` it all inlines.
  matrices = [m.astype(dtype) for m in matrices]
  p, normalize = jnp.asarray(p, dtype), jnp.asarray(bool(normalize))
  include_essential = jnp.asarray(bool(include_essential))
  largest, finite = zip(*(_layer_stats(m) for m in matrices))
  if weight_scale == "network":
    # A bad value anywhere spoils the common scale, hence every layer.
    largest = [jnp.max(jnp.stack(largest))] * len(matrices)
    finite = [jnp.all(jnp.stack(finite))] * len(matrices)
  per_layer = jnp.stack([
      _layer_value(m, scale, ok, p, normalize, include_essential)
      for m, scale, ok in zip(matrices, largest, finite)])
  return NeuralPersistence(per_layer=per_layer, mean=jnp.mean(per_layer))


@jax.jit
def _layer_stats(w: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The largest absolute weight, and whether all weights are finite."""
  return jnp.max(jnp.abs(w)), jnp.all(jnp.isfinite(w))


@jax.jit
def _layer_value(w: jax.Array, scale: jax.Array, finite: jax.Array, p: jax.Array,
                 normalize: jax.Array, include_essential: jax.Array) -> jax.Array:
  """Neural persistence of one layer with weights |w| / scale (NaN unless `finite`)."""
  dtype = w.dtype
  scale = jnp.where(scale > 0, scale, jnp.ones((), dtype))  # all-zero weights
  persistence = _mst_persistence(jnp.abs(w), scale)
  # The original gives the one essential class death 0 (`unpairedData=0`):
  # persistence |0 - 1| = 1.
  total = jnp.sum(persistence ** p) + include_essential.astype(dtype)
  bound = jnp.where(normalize, jnp.asarray(sum(w.shape) - 1, dtype) ** (1 / p),
                    jnp.ones((), dtype))
  return jnp.where(finite, total ** (1 / p) / bound, jnp.full((), jnp.nan, dtype))
