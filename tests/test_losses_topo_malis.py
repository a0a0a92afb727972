"""TOPO (windowed MALIS) loss against a NumPy/SciPy replica of TopoMortar's `MSETopoWinLoss`.

The oracle's MALIS weights are a plain sequential Kruskal with union-find and a
label histogram per component, written from the algorithm of
`malis.malis_loss_weights` (TuragaLab/malis, `malis_cpp.cpp`: edges by
decreasing weight, per merge the products of the two sides' label counts, label
0 unlabelled). Its ties go by edge index (the C++'s `std::sort` leaves them
unspecified). The `malis` package itself no longer builds (2016 sdist).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from topojax._src import morphology as grid_morphology
from topojax.losses import _topo_malis as tm
from topojax.losses import topo_malis


# --- Oracle ----------------------------------------------------------------------------------


def oracle_edges(window):
  nodes = np.arange(window * window).reshape(window, window)
  first = np.concatenate([nodes[:, :-1].ravel(), nodes[:-1, :].ravel()])
  second = np.concatenate([nodes[:, 1:].ravel(), nodes[1:, :].ravel()])
  return first, second


def oracle_malis_counts(seg, first, second, cost, pos):
  """Pair counts per edge: Kruskal by decreasing cost (ties: lower index first)."""
  parent = list(range(len(seg)))
  bags = [{int(s): 1} if s != 0 else {} for s in seg]

  def find(x):
    while parent[x] != x:
      parent[x] = parent[parent[x]]
      x = parent[x]
    return x

  counts = np.zeros(len(cost), np.int64)
  for e in sorted(range(len(cost)), key=lambda e: (-float(cost[e]), e)):
    a, b = find(first[e]), find(second[e])
    if a == b:
      continue
    for la, na in bags[a].items():
      for lb, nb in bags[b].items():
        if (la == lb) == bool(pos):
          counts[e] += na * nb
    if len(bags[a]) < len(bags[b]):
      a, b = b, a
    for lb, nb in bags[b].items():
      bags[a][lb] = bags[a].get(lb, 0) + nb
    bags[b] = {}
    parent[b] = a
  return counts


def truncated_edt(mask, dmax):
  """min(EDT, D) by scipy; D without any zero pixel (scipy's output there is an artefact)."""
  if mask.all():
    return np.full(mask.shape, dmax)
  return np.minimum(ndimage.distance_transform_edt(mask), dmax)


def oracle_loss(pred, target, *, alpha=1e-3, window=64, dmax=20.0, dmin=10.0, lr=1.0,
                lr_pos=0.1, dilation=5, convention="topomortar"):
  """TopoMortar's MSETopoWinLoss (or Oner's TOPO-Windowed-Loss) in NumPy, per example.

  Returns the `[B]` losses and the `[B, H, W]` gradient with respect to `pred`.
  """
  pred = np.asarray(pred, np.float64)
  target = np.asarray(target)
  batch, h, w = pred.shape
  first, second = oracle_edges(window)
  weights_n = np.zeros(pred.shape)
  weights_p = np.zeros(pred.shape)
  if convention == "topomortar":
    regress = np.stack([truncated_edt(t != 0, dmax) for t in target])
    truth = (target != 0).astype(np.float64)
    structure = None  # scipy's default: 4-connected
  else:
    regress = np.stack([truncated_edt(t == 0, dmax) for t in target])
    truth = regress
    structure = np.ones((3, 3))  # skimage.measure.label's default in 2D
  for b in range(batch):
    for k in range(h // window):
      for j in range(w // window):
        sl = (b, slice(k * window, (k + 1) * window), slice(j * window, (j + 1) * window))
        p, g = pred[sl], truth[sl]
        cost = np.concatenate([(p[:, :-1] + p[:, 1:]).ravel(), (p[:-1] + p[1:]).ravel()])
        gcost = np.concatenate([(g[:, :-1] + g[:, 1:]).ravel(), (g[:-1] + g[1:]).ravel()])
        cost = cost.astype(np.float32)
        cost_n, cost_p = cost.copy(), cost.copy()
        cost_n[gcost > dmax] = dmax
        cost_p[gcost < dmin] = 0
        gcost = np.minimum(gcost, dmax)
        if dilation > 0:
          grown = ndimage.binary_dilation(g == 0, iterations=dilation)
        else:
          grown = g == 0
        seg = ndimage.label(~grown, structure=structure)[0].ravel()
        wn = oracle_malis_counts(seg, first, second, cost_n, 0).astype(np.float64)
        wp = oracle_malis_counts(seg, first, second, cost_p, 1).astype(np.float64)
        if wn.sum() > 0:
          wn /= wn.sum()
        if wp.sum() > 0:
          wp /= wp.sum()
        wn[gcost >= dmin] = 0
        wp[gcost < dmax] = 0
        for weights, we in ((weights_n, wn), (weights_p, wp)):
          node = np.zeros((window, window))
          half = window * (window - 1)
          horizontal = we[:half].reshape(window, window - 1)
          vertical = we[half:].reshape(window - 1, window)
          node[:, :-1] += horizontal
          node[:, 1:] += horizontal
          node[:-1] += vertical
          node[1:] += vertical
          weights[sl] = node
  loss = (alpha * (pred - regress) ** 2 + lr * weights_n * pred ** 2
          + lr_pos * weights_p * (dmax - pred) ** 2).sum(axis=(1, 2))
  grad = (2 * alpha * (pred - regress) + 2 * lr * weights_n * pred
          - 2 * lr_pos * weights_p * (dmax - pred))
  return loss, grad


_counts = jax.jit(tm.malis_pair_counts, static_argnums=2)


def jax_counts(costs, segs, window):
  """`malis_pair_counts` on windows `[W, E]`, `[W, N]` with the oracle's labels (0 = none)."""
  n = window * window
  compact = np.stack([np.unique(s, return_inverse=True)[1].ravel() for s in segs])  # ids < n
  labels = np.where(segs > 0, compact, n).astype(np.int32)
  pos, neg = _counts(jnp.asarray(costs, jnp.float32), jnp.asarray(labels), window)
  return np.asarray(pos), np.asarray(neg)


def check_against_oracle(costs, segs, window):
  first, second = oracle_edges(window)
  pos, neg = jax_counts(costs, segs, window)
  for i, (cost, seg) in enumerate(zip(costs, segs)):
    cost = np.float32(cost)
    np.testing.assert_array_equal(pos[i], oracle_malis_counts(seg, first, second, cost, 1))
    np.testing.assert_array_equal(neg[i], oracle_malis_counts(seg, first, second, cost, 0))


def random_seg(rng, window, num_labels, unlabelled):
  seg = rng.integers(1, num_labels + 1, size=window * window)
  seg[rng.random(window * window) < unlabelled] = 0
  return seg


# --- MALIS pair counts -----------------------------------------------------------------------


def test_counts_strip_by_hand():
  # 2x2 window; edges: h (0,1), h (2,3), v (0,2), v (1,3). Labels 1 1 / 2 0.
  seg = np.array([[1, 1, 2, 0]])
  cost = np.array([[4.0, 1.0, 3.0, 2.0]])
  pos, neg = jax_counts(cost, seg, 2)
  # Kruskal: (0,1) joins the two 1s -> 1 positive pair; (0,2) joins {0,1} with {2}:
  # 2 negative pairs; (1,3) adds the unlabelled pixel: nothing; (2,3) not in the tree.
  np.testing.assert_array_equal(pos, [[1, 0, 0, 0]])
  np.testing.assert_array_equal(neg, [[0, 0, 2, 0]])


def test_counts_plateau_ties_by_edge_index():
  seg = np.array([[1, 2, 1, 2]])
  cost = np.zeros((1, 4))  # every edge tied: Kruskal takes them in index order
  pos, neg = jax_counts(cost, seg, 2)
  # (0,1): 1 neg; (2,3): 1 neg; (0,2): {0,1}+{2,3}: pos 1*1 + 1*1 = 2, neg 2; (1,3) unused.
  np.testing.assert_array_equal(pos, [[0, 0, 2, 0]])
  np.testing.assert_array_equal(neg, [[1, 1, 2, 0]])


def varied_windows(rng, window):
  """Windows of every kind in one batch: random costs, plateaus (ties), one label,
  many labels, mostly or fully unlabelled, all costs equal."""
  num_edges = 2 * window * (window - 1)
  cases = [(None, 3, 0.2), (4, 2, 0.0), (None, 1, 0.5), (2, 60, 0.1), (None, 5, 0.9),
           (None, 4, 1.0), (1, 3, 0.3), (3, 500, 0.0)]
  costs, segs = [], []
  for levels, labels, unlabelled in cases:
    cost = rng.random(num_edges)
    costs.append(cost if levels is None else np.floor(cost * levels))
    segs.append(random_seg(rng, window, labels, unlabelled))
  return np.stack(costs), np.stack(segs)


def test_counts_match_oracle():
  rng = np.random.default_rng(0)
  check_against_oracle(*varied_windows(rng, 11), 11)


@pytest.mark.slow
@pytest.mark.parametrize("window", [2, 5, 23])
def test_counts_match_oracle_more_sizes(window):
  rng = np.random.default_rng(window)
  check_against_oracle(*varied_windows(rng, window), window)


def test_counts_sum_to_all_pairs():
  rng = np.random.default_rng(1)
  costs, segs = varied_windows(rng, 11)
  pos, neg = jax_counts(costs, segs, 11)
  for p, n, seg in zip(pos, neg, segs):
    sizes = np.bincount(seg, minlength=2)[1:]
    labelled = sizes.sum()
    assert p.sum() == (np.sum(sizes ** 2) - labelled) // 2
    assert n.sum() == (labelled ** 2 - np.sum(sizes ** 2)) // 2


# --- Distance maps and regions ---------------------------------------------------------------


@pytest.mark.parametrize("shape,fill,dmax", [((2, 30, 41), 0.9, 20.0), ((1, 1, 9), 0.7, 2.0)])
def test_truncated_edt_matches_scipy(shape, fill, dmax):
  rng = np.random.default_rng(3)
  mask = rng.random(shape) < fill
  mask[:, 0, 0] = False  # at least one background pixel per image
  ours = np.asarray(tm.truncated_edt(jnp.asarray(mask), dmax))
  ref = np.stack([np.minimum(ndimage.distance_transform_edt(m), dmax) for m in mask])
  np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_truncated_edt_without_background_is_the_truncation():
  ours = np.asarray(tm.truncated_edt(jnp.ones((1, 4, 5), bool), 20.0))
  np.testing.assert_array_equal(ours, 20.0)
  np.testing.assert_array_equal(np.asarray(tm.truncated_edt(jnp.zeros((1, 4, 5), bool), 20.0)),
                                0.0)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_regions_match_scipy(connectivity):
  rng = np.random.default_rng(4)
  region = rng.random((4, 20, 20)) < 0.55
  labels = np.asarray(tm._label_components(jnp.asarray(region), connectivity))
  structure = None if connectivity == 4 else np.ones((3, 3))
  for r, lab in zip(region, labels):
    ref = ndimage.label(r, structure=structure)[0].ravel()
    ours = lab
    assert np.all((ours == 400) == (ref == 0))
    # Same partition: a bijection between label values.
    pairs = set(zip(ours[ref > 0].tolist(), ref[ref > 0].tolist()))
    assert len(pairs) == len(set(ref[ref > 0].tolist())) == len(set(ours[ref > 0].tolist()))


def test_dilation_matches_scipy():
  rng = np.random.default_rng(5)
  x = rng.random((2, 23, 19)) < 0.03
  ours = np.asarray(grid_morphology.dilate_cross(jnp.asarray(x), 2, 5))
  ref = np.stack([ndimage.binary_dilation(a, iterations=5) for a in x])
  np.testing.assert_array_equal(ours, ref)


# --- The loss --------------------------------------------------------------------------------


def bricks(rng, batch, h, w, *, mortar=3, brick=(9, 14)):
  """Brick-wall-like masks: mortar (1) lines around offset bricks, plus noise."""
  target = np.zeros((batch, h, w), np.int32)
  for b in range(batch):
    row_step, col_step = brick
    for r in range(0, h, row_step):
      target[b, r:r + mortar] = 1
      offset = (r // row_step % 2) * col_step // 2 + rng.integers(0, 3)
      for c in range(offset, w, col_step):
        target[b, r:r + row_step, c:c + mortar] = 1
  return target


def noisy_distance(rng, target, dmax, convention="topomortar"):
  mask = target != 0 if convention == "topomortar" else target == 0
  edt = np.stack([np.minimum(ndimage.distance_transform_edt(m), dmax) for m in mask])
  return np.maximum(edt + rng.normal(0, 1.0, target.shape), 0).astype(np.float32)


_SLOW = pytest.mark.slow


@pytest.mark.parametrize("convention,shape,window,kw", [
    ("topomortar", (2, 32, 32), 16, dict(dilation=1, dmax=4.0, dmin=2.0)),
    ("oner", (1, 37, 29), 12, dict(dilation=2, dmax=5.0, dmin=3.0)),  # remainder strips
    # D <= 2: TopoMortar's positive term is live.
    pytest.param("topomortar", (1, 24, 24), 8, dict(dilation=0, dmax=2.0, dmin=1.0),
                 marks=_SLOW),
    pytest.param("oner", (1, 24, 24), 8, dict(dilation=0, dmax=2.0, dmin=1.0), marks=_SLOW),
])
def test_loss_and_gradient_match_oracle(convention, shape, window, kw):
  rng = np.random.default_rng(6)
  target = bricks(rng, shape[0], shape[1], shape[2], mortar=2, brick=(7, 9))
  pred = noisy_distance(rng, target, kw["dmax"], convention)
  ref_loss, ref_grad = oracle_loss(pred, target, window=window, convention=convention,
                                   alpha=0.01, lr=1.0, lr_pos=0.5, **kw)
  args = dict(alpha=0.01, window=window, max_distance=kw["dmax"], min_distance=kw["dmin"],
              negative_weight=1.0, positive_weight=0.5, dilation=kw["dilation"],
              convention=convention)
  loss = topo_malis(pred, target, **args)
  np.testing.assert_allclose(loss, ref_loss, rtol=2e-5)
  grad = jax.grad(lambda y: topo_malis(y, target, **args).sum())(jnp.asarray(pred))
  np.testing.assert_allclose(grad, ref_grad, rtol=2e-4, atol=1e-6)


@pytest.mark.slow
def test_topomortar_defaults_on_a_64_window():
  rng = np.random.default_rng(7)
  target = bricks(rng, 1, 64, 70, mortar=12, brick=(30, 40))
  pred = noisy_distance(rng, target, 20.0)
  ref_loss, _ = oracle_loss(pred, target)
  np.testing.assert_allclose(topo_malis(pred, target), ref_loss, rtol=2e-5)


def test_empty_and_full_masks():
  pred = jnp.full((2, 16, 16), 0.5)
  target = np.zeros((2, 16, 16), np.int32)
  target[1] = 1
  for convention in ("topomortar", "oner"):
    ref, _ = oracle_loss(np.asarray(pred), target, window=8, dmax=3.0, dmin=1.0, dilation=1,
                         convention=convention)
    got = topo_malis(pred, target, window=8, max_distance=3.0, min_distance=1.0, dilation=1,
                     convention=convention)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_image_smaller_than_window_is_regression_only():
  rng = np.random.default_rng(8)
  target = (rng.random((1, 10, 12)) < 0.5).astype(np.int32)
  pred = rng.random((1, 10, 12)).astype(np.float32)
  ref, _ = oracle_loss(pred, target, window=16)
  np.testing.assert_allclose(topo_malis(pred, target, window=16), ref, rtol=1e-6)


@pytest.mark.slow
def test_jit_vmap_and_per_example():
  rng = np.random.default_rng(9)
  target = bricks(rng, 3, 24, 24, mortar=2, brick=(7, 9))
  pred = jnp.asarray(noisy_distance(rng, target, 4.0))
  kw = dict(window=12, max_distance=4.0, min_distance=2.0, dilation=1)
  full = topo_malis(pred, target, **kw)
  jitted = jax.jit(lambda p, t: topo_malis(p, t, **kw))(pred, target)
  mapped = jax.vmap(lambda p, t: topo_malis(p[None], t[None], **kw)[0])(pred, target)
  np.testing.assert_allclose(jitted, full, rtol=1e-6)
  np.testing.assert_allclose(mapped, full, rtol=1e-6)


def test_gradient_finite_and_pushes_cuts_down():
  # Two mortar pieces joined by a thin bridge: after erosion they are two regions,
  # and the negative term lowers the predicted values on the bridge.
  target = np.zeros((1, 16, 16), np.int32)
  target[0, 2:7, 2:14] = 1
  target[0, 9:14, 2:14] = 1
  target[0, 7:9, 7:9] = 1
  pred = jnp.asarray(np.minimum(ndimage.distance_transform_edt(target[0]), 4.0)[None]
                     + 0.5, jnp.float32)
  kw = dict(window=16, max_distance=4.0, min_distance=10.0, dilation=1, alpha=0.0)
  grad = jax.grad(lambda y: topo_malis(y, target, **kw).sum())(pred)
  assert np.all(np.isfinite(grad))
  assert float(grad[0, 7:9, 7:9].max()) > 0
  assert float(jnp.abs(grad).sum()) == pytest.approx(float(jnp.abs(grad[0, 6:10, 6:10]).sum()))


def test_on_logits_adapter(window=32):
  rng = np.random.default_rng(10)
  labels = bricks(rng, 2, 16, 16, mortar=2, brick=(7, 9))
  logits = jnp.asarray(rng.normal(size=(2, 16, 16, 2)), jnp.float32)
  kw = dict(window=window, max_distance=3.0, min_distance=1.0, dilation=1)
  got = tm.topo_malis_on_logits(logits, labels, **kw)
  want = topo_malis(jax.nn.relu(logits[..., 1] - logits[..., 0]), labels, **kw)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  one = tm.topo_malis_on_logits(logits[..., :1], labels, **kw)
  np.testing.assert_allclose(one, topo_malis(jax.nn.relu(logits[..., 0]), labels, **kw),
                             rtol=1e-6)
  grad = jax.grad(lambda l: tm.topo_malis_on_logits(l, labels, **kw).sum())(logits)
  assert np.all(np.isfinite(grad))
  assert float(jnp.abs(grad).sum()) > 0


def test_bfloat16_pred_reduces_in_float32():
  pred = jnp.ones((1, 8, 8), jnp.bfloat16)
  out = topo_malis(pred, jnp.zeros((1, 8, 8), jnp.int32), window=8)
  assert out.dtype == jnp.float32


@pytest.mark.parametrize("call,match", [
    (lambda: topo_malis(jnp.zeros((8, 8)), jnp.zeros((8, 8))), "pred"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8), jnp.int32), jnp.zeros((1, 8, 8))), "pred"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 9))), "target"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), window=1), "window"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), window=200), "window"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), window=8.0), "window"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), max_distance=0.0),
     "max_distance"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), alpha=-1.0), "alpha"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), dilation=-1), "dilation"),
    (lambda: topo_malis(jnp.zeros((1, 8, 8)), jnp.zeros((1, 8, 8)), convention="x"),
     "convention"),
    (lambda: tm.topo_malis_on_logits(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8), jnp.int32)),
     "logits"),
    (lambda: tm.topo_malis_on_logits(jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 8), bool)), "labels"),
])
def test_bad_inputs(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.slow
def test_counts_match_oracle_on_a_64_window_batch():
  rng = np.random.default_rng(11)
  check_against_oracle(*varied_windows(rng, 64), 64)
