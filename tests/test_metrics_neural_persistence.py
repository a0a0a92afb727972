"""Tests for `topojax.metrics.neural_persistence` (Rieck et al. 2019).

References: hand-computed layers; a numpy transcription of the original
(BorgwardtLab/Neural-Persistence `src/tda.py` with Aleph's
`calculateZeroDimensionalPersistenceDiagramOfMatrix(reverseFiltration=True,
vertexWeight=1, unpairedData=0)` and `pNorm`: a union-find over the edges
sorted by decreasing weight); networkx's maximum spanning tree.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from topojax.metrics import neural_persistence

# ---------------------------------------------------------------------------
# The original, in numpy.


def _aleph_diagram(m: np.ndarray) -> list[tuple[float, float]]:
  """Aleph's 0-dim diagram of a bipartite layer with weights `m` in [0, 1].

  Vertices 0..n_in-1 and n_in..n_in+n_out-1 enter at 1, edges at their weight,
  in decreasing order; each merge gives a pair (1, w). The one unpaired class
  gets death `unpairedData` = 0.
  """
  n_in, n_out = m.shape
  parent = list(range(n_in + n_out))

  def find(u):
    while parent[u] != u:
      parent[u] = parent[parent[u]]
      u = parent[u]
    return u

  edges = sorted(((float(m[i, j]), i, n_in + j) for i in range(n_in) for j in range(n_out)),
                 key=lambda e: -e[0])
  diagram = []
  for w, u, v in edges:
    ru, rv = find(u), find(v)
    if ru != rv:
      parent[ru] = rv
      diagram.append((1.0, w))
  roots = [v for v in range(n_in + n_out) if find(v) == v]
  assert len(roots) == 1
  diagram.append((1.0, 0.0))
  return diagram


def _original(layers, p=2.0, normalize=True, weight_scale="network", include_essential=True):
  """Per-layer values and their mean, as `PerLayerCalculation` computes them."""
  layers = [np.asarray(w, np.float64) for w in layers]
  w_min = min(np.min(w) for w in layers)
  w_max = max(np.max(w) for w in layers)
  network_scale = max(abs(w_min), abs(w_max))
  values = []
  for w in layers:
    scale = network_scale if weight_scale == "network" else np.max(np.abs(w))
    diagram = _aleph_diagram(np.abs(w) / scale)
    if not include_essential:
      diagram = diagram[:-1]
    value = sum(abs(death - birth) ** p for birth, death in diagram) ** (1 / p)
    if normalize:
      value /= (sum(w.shape) - 1) ** (1 / p)
    values.append(value)
  return np.array(values), np.mean(values)


def _networkx_sum_of_squares(w_scaled: np.ndarray) -> float:
  """Sum of (1 - w)^2 over a maximum spanning tree of the bipartite layer graph."""
  n_in, n_out = w_scaled.shape
  g = nx.Graph()
  g.add_weighted_edges_from((i, n_in + j, float(w_scaled[i, j]))
                            for i in range(n_in) for j in range(n_out))
  tree = nx.maximum_spanning_tree(g)
  assert tree.number_of_edges() == n_in + n_out - 1
  return sum((1 - d["weight"]) ** 2 for _, _, d in tree.edges(data=True))


def _network(rng, shapes, integers=False):
  if integers:  # many ties and zeros
    return [rng.integers(-2, 3, size=s).astype(np.float32) for s in shapes]
  return [rng.normal(size=s).astype(np.float32) for s in shapes]


SHAPES = [(6, 5), (5, 3), (3, 2)]

# ---------------------------------------------------------------------------
# Hand-computed cases.


def test_hand_computed_single_layer():
  w = np.array([[1.0, 0.5], [0.25, 0.0]], np.float32)
  # Maximum spanning tree: 1, 0.5, 0.25 -> persistences 0, 0.5, 0.75; essential 1.
  raw = np.sqrt(0.5 ** 2 + 0.75 ** 2 + 1)
  out = neural_persistence(w, normalize=False)
  np.testing.assert_allclose(out.per_layer, [raw], rtol=1e-6)
  np.testing.assert_allclose(neural_persistence(w).mean, raw / np.sqrt(3), rtol=1e-6)
  np.testing.assert_allclose(neural_persistence(w, include_essential=False).mean,
                             np.sqrt(0.5 ** 2 + 0.75 ** 2) / np.sqrt(3), rtol=1e-6)
  np.testing.assert_allclose(neural_persistence(w, p=1.0, normalize=False).mean,
                             0.5 + 0.75 + 1, rtol=1e-6)


def test_hand_computed_network_scale():
  # Largest absolute weight of the network: 2 (in the first layer).
  layers = [np.array([[2.0, -1.0]], np.float32), np.array([[0.5], [-1.0]], np.float32)]
  # Layer 1: w' = 1, 0.5 -> 0, 0.5 (+1): sqrt(1.25) / sqrt(2).
  # Layer 2: w' = 0.25, 0.5 -> 0.75, 0.5 (+1): sqrt(1.8125) / sqrt(2).
  want = np.sqrt([1.25, 1.8125]) / np.sqrt(2)
  out = neural_persistence(layers)
  np.testing.assert_allclose(out.per_layer, want, rtol=1e-6)
  np.testing.assert_allclose(out.mean, want.mean(), rtol=1e-6)
  # Per-layer scaling: layer 2's w' = 0.5, 1 -> 0.5, 0 (+1).
  np.testing.assert_allclose(neural_persistence(layers, weight_scale="layer").per_layer,
                             np.sqrt([1.25, 1.25]) / np.sqrt(2), rtol=1e-6)


def test_all_equal_weights():
  w = np.full((4, 3), -0.3, np.float32)  # every persistence 0
  np.testing.assert_allclose(neural_persistence(w).mean, 1 / np.sqrt(6), rtol=1e-6)
  assert float(neural_persistence(w, include_essential=False).mean) == 0.0
  layers = [np.full((4, 3), 2.0, np.float32), np.full((3, 2), 0.5, np.float32)]
  out = neural_persistence(layers, weight_scale="layer", include_essential=False)
  assert out.per_layer.tolist() == [0.0, 0.0]
  # Scaled by the network's largest weight, the second layer's edges persist 0.75.
  out = neural_persistence(layers, include_essential=False)
  np.testing.assert_allclose(out.per_layer, [0.0, 0.75], rtol=1e-6)


def test_upper_bound_is_attained():
  # One weight at the maximum and all others 0: n - 2 persistences 1 and the
  # essential class: NP = (n - 1)^(1/p), normalised 1.
  w = np.zeros((5, 4), np.float32)
  w[2, 1] = -3.0
  for p in (1.0, 2.0, 3.0):
    np.testing.assert_allclose(neural_persistence(w, p=p).mean, 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------
# Against the original and networkx.


@pytest.mark.parametrize("integers", [False, True])
def test_matches_original(integers):
  rng = np.random.default_rng(int(integers))
  configs = [dict(), dict(p=1.0), dict(p=3.5), dict(normalize=False),
             dict(include_essential=False), dict(weight_scale="layer")]
  for _ in range(4):
    layers = _network(rng, SHAPES, integers)
    for kwargs in configs:
      want_layers, want_mean = _original(layers, **kwargs)
      out = neural_persistence(layers, **kwargs)
      np.testing.assert_allclose(out.per_layer, want_layers, rtol=1e-5, err_msg=str(kwargs))
      np.testing.assert_allclose(out.mean, want_mean, rtol=1e-5, err_msg=str(kwargs))


def test_matches_networkx_maximum_spanning_tree():
  rng = np.random.default_rng(2)
  for integers in (False, True):
    layers = _network(rng, SHAPES, integers)
    largest = max(np.abs(w).max() for w in layers)
    out = neural_persistence(layers, normalize=False, include_essential=False)
    want = [np.sqrt(_networkx_sum_of_squares(np.abs(w) / largest)) for w in layers]
    np.testing.assert_allclose(out.per_layer, want, rtol=1e-5)


# ---------------------------------------------------------------------------
# Bounds and invariances.


def test_normalisation_bounds():
  rng = np.random.default_rng(3)
  for _ in range(5):
    layers = [w * np.float32(s) for w, s in zip(_network(rng, SHAPES), rng.uniform(0.1, 3, 3))]
    biggest = int(np.argmax([np.abs(w).max() for w in layers]))
    for p in (1.0, 2.0):
      for kwargs in (dict(include_essential=False), dict(weight_scale="layer")):
        values = np.asarray(neural_persistence(layers, p=p, **kwargs).per_layer)
        assert np.all((values >= 0) & (values <= 1 + 1e-6)), (kwargs, values)
      values = np.asarray(neural_persistence(layers, p=p).per_layer)
      assert 0 <= values[biggest] <= 1 + 1e-6
      n = np.array([sum(s) for s in SHAPES])
      assert np.all(values <= (n / (n - 1)) ** (1 / p) + 1e-6)


def test_original_convention_can_exceed_one():
  # A layer of weights far below the network's largest: every persistence is
  # close to 1, and with the essential class the sum nears n, not n - 1.
  layers = [np.ones((2, 2), np.float32), np.full((3, 3), 1e-3, np.float32)]
  values = neural_persistence(layers).per_layer
  want = np.sqrt(5 * (1 - 1e-3) ** 2 + 1) / np.sqrt(5)
  np.testing.assert_allclose(values[1], want, rtol=1e-6)
  assert float(values[1]) > 1


def test_invariances():
  rng = np.random.default_rng(4)
  layers = _network(rng, SHAPES)
  want = neural_persistence(layers).per_layer
  # Orientation, signs, neuron order and a global scale do not matter.
  np.testing.assert_allclose(neural_persistence([w.T for w in layers]).per_layer, want,
                             rtol=1e-6)
  np.testing.assert_allclose(neural_persistence([-w for w in layers]).per_layer, want,
                             rtol=1e-6)
  shuffled = [w[rng.permutation(w.shape[0])][:, rng.permutation(w.shape[1])] for w in layers]
  np.testing.assert_allclose(neural_persistence(shuffled).per_layer, want, rtol=1e-6)
  np.testing.assert_allclose(neural_persistence([7 * w for w in layers]).per_layer, want,
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# Inputs and transformations.


def test_jit():
  layers = [jnp.asarray(w) for w in _network(np.random.default_rng(5), SHAPES)]
  eager = neural_persistence(layers)
  jitted = jax.jit(neural_persistence)(layers)
  np.testing.assert_allclose(jitted.per_layer, eager.per_layer, rtol=1e-6)
  np.testing.assert_allclose(jitted.mean, eager.mean, rtol=1e-6)


def test_pytrees_and_nnx_modules():
  from flax import nnx

  class Mlp(nnx.Module):

    def __init__(self, rngs):
      self.fc1 = nnx.Linear(6, 5, rngs=rngs)
      self.fc2 = nnx.Linear(5, 3, rngs=rngs)

  model = Mlp(nnx.Rngs(0))
  kernels = [model.fc1.kernel[...], model.fc2.kernel[...]]
  want = neural_persistence(kernels)
  params = {"fc1": {"kernel": kernels[0], "bias": model.fc1.bias[...]},
            "fc2": {"kernel": kernels[1], "bias": model.fc2.bias[...]}}
  for weights in (model, params, tuple(kernels)):
    out = neural_persistence(weights)
    np.testing.assert_allclose(out.per_layer, want.per_layer, rtol=1e-6)
    np.testing.assert_allclose(out.mean, want.mean, rtol=1e-6)


def test_dtypes():
  w = np.random.default_rng(6).normal(size=(4, 3))
  out = neural_persistence([w.astype(jnp.bfloat16), w.astype(np.float32)])
  assert out.per_layer.dtype == jnp.float32
  np.testing.assert_allclose(out.per_layer[0], out.per_layer[1], rtol=2e-2)


def test_bad_inputs_name_the_argument():
  w = np.ones((3, 2), np.float32)
  with pytest.raises(ValueError, match=r"`weights\['conv'\]` has shape \(3, 3, 2, 4\)"):
    neural_persistence({"conv": np.ones((3, 3, 2, 4), np.float32), "dense": w})
  with pytest.raises(ValueError, match=r"`weights\[1\]` must have a floating dtype"):
    neural_persistence([w, np.ones((2, 2), np.int32)])
  with pytest.raises(ValueError, match=r"`weights\[0\]` is an empty weight matrix"):
    neural_persistence([np.ones((0, 2), np.float32)])
  with pytest.raises(ValueError, match="`weights` holds no 2-D weight matrix"):
    neural_persistence([np.ones(3, np.float32)])
  with pytest.raises(ValueError, match="`p` must be"):
    neural_persistence(w, p=0.0)
  with pytest.raises(ValueError, match="`p` must be"):
    neural_persistence(w, p=float("inf"))
  with pytest.raises(ValueError, match="`weight_scale`"):
    neural_persistence(w, weight_scale="global")
  bad = w.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match=r"`weights\[1\]` has NaN"):
    neural_persistence([w, bad])
  # Traced: NaN where the bad weights reach (all layers via the network scale).
  assert np.isnan(jax.jit(neural_persistence)([w, bad]).per_layer).tolist() == [True, True]
  per_layer = jax.jit(functools.partial(neural_persistence, weight_scale="layer"))
  assert np.isnan(per_layer([w, bad]).per_layer).tolist() == [False, True]
