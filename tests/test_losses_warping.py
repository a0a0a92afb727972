"""Homotopy warping loss against hand-worked cases and a sequential NumPy oracle.

The oracle is the original algorithm (HuXiaoling/Warping `warping_loss.py`)
written out: mismatched pixels sorted by the scipy EDT, flipped one at a time
when simple, false negatives of the source first, then its false positives.
Its simple-point test is brute force from the topological numbers
(`scipy.ndimage.label` in the punctured 3x3(x3) neighbourhood), not the
original's patch count (see `warping`'s docstring). With `repeat=True` the
two sorted passes are repeated until nothing flips, the fixed point the device
version also reaches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from topojax.losses import _warping as wp
from topojax.losses._warping import homotopy_warp
from topojax.losses._warping import warping
from topojax.losses._warping import warping_critical_pixels

# --- Oracle ----------------------------------------------------------------------------------

_L1 = {d: np.abs(np.indices((3,) * d) - 1).sum(0) for d in (2, 3)}
_CHEB = {d: np.abs(np.indices((3,) * d) - 1).max(0) for d in (2, 3)}


def _count(mask, structure, touch=None):
  labels, n = ndimage.label(mask, structure=structure)
  if touch is None:
    return n
  return len(set(np.unique(labels[touch & mask]).tolist()) - {0})


def bf_simple(patch, connectivity):
  """Bertrand's topological numbers of the centre of a 3^d patch (centre ignored)."""
  d = patch.ndim
  star = _CHEB[d] > 0  # N8* / N26*
  small = (_L1[d] > 0) & (_L1[d] < 3) if d == 3 else star  # N8* / N18*
  face = _L1[d] == 1  # the 4 / 6 face neighbours
  full = ndimage.generate_binary_structure(d, d)
  cross = ndimage.generate_binary_structure(d, 1)
  fg, bg = patch, ~patch
  if connectivity in (8, 26):
    fg, bg = bg, fg  # (8, 4) is (4, 8) of the complement
  return (_count(fg & small, cross, face), _count(bg & star, full)) == (1, 1)


def seq_warp(source, target, connectivity, repeat=True):
  """The original's sequential warp (exact simple test, outside = background)."""
  source, target = np.asarray(source, bool), np.asarray(target, bool)
  x = np.pad(source, 1)
  inner = (slice(1, -1),) * source.ndim
  stages = ((source & ~target, ndimage.distance_transform_edt(source)),
            (~source & target, ndimage.distance_transform_edt(~source)))
  while True:
    flips = 0
    for cand, dist in stages:
      points = np.argwhere(cand & (x[inner] != target))
      for p in points[np.argsort(dist[tuple(points.T)], kind="stable")]:
        if bf_simple(x[tuple(slice(i, i + 3) for i in p)], connectivity):
          x[tuple(p + 1)] ^= True
          flips += 1
    if not repeat or flips == 0:
      return x[inner]


def seq_critical(pred, label, connectivity, repeat=True):
  pred, label = np.asarray(pred, bool), np.asarray(label, bool)
  return ((pred != seq_warp(label, pred, connectivity, repeat))
          | (label != seq_warp(pred, label, connectivity, repeat)))


def topology(x, connectivity):
  """Components of the foreground and the (padded) background, and in 3D the
  Euler characteristic of the closed-voxel complex of the 26-adjacent side."""
  x = np.pad(np.asarray(x, bool), 1)
  d = x.ndim
  full = ndimage.generate_binary_structure(d, d)
  cross = ndimage.generate_binary_structure(d, 1)
  fg_s, bg_s = (cross, full) if connectivity in (4, 6) else (full, cross)
  out = (_count(x, fg_s), _count(~x, bg_s))
  if d == 2:
    return out
  closed = ~x if connectivity == 6 else x
  fine = np.zeros(tuple(2 * s + 1 for s in x.shape), bool)
  fine[1::2, 1::2, 1::2] = closed
  cells = ndimage.binary_dilation(fine, structure=full)
  dim = (np.indices(fine.shape) % 2).sum(0)  # a cell's dimension: its odd coordinates
  return out + (int(((-1) ** dim)[cells].sum()),)


def simple_mismatches(warped, target, connectivity):
  """Mismatched pixels of `warped` that are still simple (the warp could go on)."""
  x = np.pad(warped, 1)
  return [tuple(p) for p in np.argwhere(warped != target)
          if bf_simple(x[tuple(slice(i, i + 3) for i in p)], connectivity)]


def blobby(rng, shape, density, sigma=1.2):
  noise = ndimage.gaussian_filter(rng.random(shape), sigma)
  return noise > np.quantile(noise, 1 - density)


def random_pairs(rng, shape, count):
  """Label and prediction: blobby label, prediction = label with blobs toggled."""
  pairs = []
  for _ in range(count):
    label = blobby(rng, shape, rng.uniform(0.3, 0.6))
    pred = label ^ blobby(rng, shape, rng.uniform(0.1, 0.3), sigma=0.8)
    pairs.append((pred, label))
  return pairs


# --- Calls on fixed shapes: every compile is shared by the tests below ----------------------

SHAPE_2D, BATCH_2D = (11, 12), 12
SHAPE_3D, BATCH_3D = (7, 7, 9), 6


def on_batch(fn, a, b, batch, **kw):
  """`fn(a, b, **kw)` on `a`, `b` padded with empty images to `batch`."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  single = a.ndim == len(SHAPE_2D if kw.get("ndim", 2) == 2 else SHAPE_3D)
  if single:
    a, b = a[None], b[None]
  pad = [(0, batch - len(a))] + [(0, 0)] * (a.ndim - 1)
  out = np.asarray(fn(np.pad(a, pad), np.pad(b, pad), **kw))[:len(a)]
  return out[0] if single else out


def critical_2d(pred, label, **kw):
  return on_batch(warping_critical_pixels, pred, label, BATCH_2D, **kw)


def critical_3d(pred, label):
  return on_batch(warping_critical_pixels, pred, label, BATCH_3D, ndim=3)


def warp_batch(sources, targets, ndim):
  return on_batch(homotopy_warp, sources, targets, BATCH_2D if ndim == 2 else BATCH_3D,
                  ndim=ndim)


# --- Hand-worked cases (2D, foreground 4 / background 8) ---------------------------------------


def canvas():
  return np.zeros(SHAPE_2D, bool)


def case_line_gap():
  label = canvas()
  label[3, 1:10] = True
  pred = label.copy()
  pred[3, 4:7] = False  # a gap of three pixels breaks the line in two
  expected = canvas()
  expected[3, 4:7] = True  # the label cannot lose them: all three are critical
  return pred, label, expected


def case_merge():
  label = canvas()
  label[3, 1:4] = label[3, 7:10] = True
  pred = label.copy()
  pred[3, 4:7] = True  # a bridge merges the two segments
  expected = canvas()
  expected[3, 4:7] = True  # the prediction cannot lose any bridge pixel
  return pred, label, expected


def case_spurious_blob():
  # An isolated blob can never be grown in the label (its first pixel would
  # be a new component: not simple), so all of it stays critical, although
  # the prediction can shrink it to one pixel.
  label = canvas()
  label[1, 1:10] = True
  pred = label.copy()
  pred[4:6, 6:8] = True
  expected = canvas()
  expected[4:6, 6:8] = True
  return pred, label, expected


def case_missing_blob():
  pred, label, expected = case_spurious_blob()
  return label, pred, expected


def case_filled_hole():
  label = canvas()
  label[1:6, 2:8] = True
  label[3, 4:6] = False  # a two-pixel hole
  pred = canvas()
  pred[1:6, 2:8] = True
  expected = canvas()
  expected[3, 4:6] = True  # carving it into the prediction would make a hole
  return pred, label, expected


def case_thicker():
  label = canvas()
  label[3, 2:9] = True
  pred = canvas()
  pred[2:5, 1:10] = True  # same topology, thicker and longer
  return pred, label, canvas()


def case_thinner_ring():
  label = canvas()
  label[1:6, 2:9] = True
  label[3, 5] = False  # thick ring
  pred = canvas()
  pred[2:5, 4:7] = True
  pred[3, 5] = False  # thin ring around the same hole
  return pred, label, canvas()


def case_diagonal_touch():
  # Under 4-adjacency a pixel touching a segment only diagonally is its own
  # component: the label cannot grow into it (the original's patch test would).
  label = canvas()
  label[3, 1:5] = True
  pred = label.copy()
  pred[4, 5] = True
  expected = canvas()
  expected[4, 5] = True
  return pred, label, expected


HAND_CASES = {
    "line_gap": case_line_gap,
    "merge": case_merge,
    "spurious_blob": case_spurious_blob,
    "missing_blob": case_missing_blob,
    "filled_hole": case_filled_hole,
    "thicker": case_thicker,
    "thinner_ring": case_thinner_ring,
    "diagonal_touch": case_diagonal_touch,
}


def test_hand_cases_2d():
  cases = {name: make() for name, make in HAND_CASES.items()}
  pred = np.stack([c[0] for c in cases.values()])
  label = np.stack([c[1] for c in cases.values()])
  for ordering in wp.ORDERINGS:
    got = critical_2d(pred, label, ordering=ordering)
    for i, (name, (p, l, expected)) in enumerate(cases.items()):
      np.testing.assert_array_equal(got[i], expected, err_msg=f"{name}, {ordering}")
  for name, (p, l, expected) in cases.items():  # the oracle agrees, original order too
    np.testing.assert_array_equal(seq_critical(p, l, 4), expected, err_msg=name)
    if name not in ("thicker", "thinner_ring"):  # see the next test
      np.testing.assert_array_equal(seq_critical(p, l, 4, repeat=False), expected, err_msg=name)
  assert not critical_2d(label, label).any()  # equal masks: nothing critical


def test_single_pass_leaves_pixels_that_became_simple():
  # The original visits each mismatched pixel once. Shrinking the thick
  # prediction onto the line in EDT (then raster) order, it visits (4, 8)
  # while (4, 9) still hangs on (4, 8) alone, so removing (4, 8) would cut it
  # off; (4, 9) goes next, after which (4, 8) is simple but never revisited,
  # and counts as critical. The warp here revisits it.
  pred, label, _ = case_thicker()
  once = seq_critical(pred, label, 4, repeat=False)
  assert [tuple(p) for p in np.argwhere(once)] == [(4, 8)]
  assert simple_mismatches(seq_warp(pred, label, 4, repeat=False), label, 4) == [(4, 8)]
  assert not critical_2d(pred, label).any()


def test_thick_cut_keeps_the_deepest_pixels_in_the_label():
  # A 5-thick bar cut by the prediction: the label loses the cut from the
  # boundary inward (EDT order) and keeps a bridge on the bar's middle row.
  label = canvas()
  label[1:6, :] = True
  pred = label.copy()
  pred[1:6, 5:7] = False
  bridge = canvas()
  bridge[3, 5:7] = True
  warped_label, warped_pred = warp_batch(np.stack([label, pred]), np.stack([pred, label]), 2)
  np.testing.assert_array_equal(warped_label != pred, bridge)
  np.testing.assert_array_equal(seq_warp(label, pred, 4) != pred, bridge)
  # The prediction closes the cut but for one separating 8-path of pixels.
  assert topology(warped_pred, 4) == topology(pred, 4)
  for ordering in ("edt", "exact_edt"):
    critical = critical_2d(pred, label, ordering=ordering)
    assert critical[bridge].all() and critical.sum() <= 2 + 5, ordering


def test_connectivity_8_joins_diagonals():
  pred, label, _ = case_diagonal_touch()
  assert not critical_2d(pred, label, connectivity=8).any()
  np.testing.assert_array_equal(seq_critical(pred, label, 8), np.zeros_like(pred))


# --- Hand-worked cases (3D, foreground 6 / background 26) -------------------------------------


def test_hand_cases_3d():
  tube = np.zeros(SHAPE_3D, bool)
  tube[3, 3, 1:8] = True
  broken = tube.copy()
  broken[3, 3, 3:5] = False
  gap = tube & ~broken

  cube = np.zeros(SHAPE_3D, bool)
  cube[1:6, 1:6, 1:6] = True
  hollow = cube.copy()
  hollow[3, 3, 3] = False  # a cavity
  cavity = cube & ~hollow

  blob = tube.copy()
  blob[5:7, 5:7, 6:8] = True
  spurious = blob & ~tube

  thick = np.zeros(SHAPE_3D, bool)
  thick[2:5, 2:5, :] = True  # a thick rod around the tube

  ring = np.zeros(SHAPE_3D, bool)
  ring[1:6, 1:6, 4] = True
  ring[2:5, 2:5, 4] = False  # a loop: one tunnel
  plate = np.zeros(SHAPE_3D, bool)
  plate[1:6, 1:6, 4] = True  # the tunnel filled: no pixel of it can be carved out
  hole = plate & ~ring

  cases = [(broken, tube, gap), (cube, hollow, cavity), (blob, tube, spurious),
           (thick, tube, np.zeros(SHAPE_3D, bool)), (plate, ring, hole), (ring, plate, hole)]
  got = critical_3d(np.stack([c[0] for c in cases]), np.stack([c[1] for c in cases]))
  for i, (p, l, expected) in enumerate(cases):
    np.testing.assert_array_equal(got[i], expected, err_msg=f"case {i}")
  for p, l, expected in cases[:2]:
    np.testing.assert_array_equal(seq_critical(p, l, 6), expected)


# --- Against the sequential oracle on random masks ---------------------------------------------


def check_warp(source, target, warped, connectivity):
  assert ((warped == source) | (warped == target)).all()  # only mismatches, toward target
  assert topology(warped, connectivity) == topology(source, connectivity)
  assert simple_mismatches(warped, target, connectivity) == []


@pytest.mark.parametrize("ndim", [2, 3])
def test_random_warps_are_maximal_and_homotopic(ndim):
  rng = np.random.default_rng(ndim)
  shape, batch = (SHAPE_2D, BATCH_2D) if ndim == 2 else (SHAPE_3D, BATCH_3D)
  pairs = random_pairs(rng, shape, batch // 2)
  pred = np.stack([p for p, _ in pairs])
  label = np.stack([l for _, l in pairs])
  connectivity = wp._DEFAULT_CONNECTIVITY[ndim]
  sources, targets = np.concatenate([label, pred]), np.concatenate([pred, label])
  warped = warp_batch(sources, targets, ndim)
  for i in range(len(sources)):
    check_warp(sources[i], targets[i], warped[i], connectivity)
    if ndim == 2:  # the oracle reaches a fixed point with the same properties
      check_warp(sources[i], targets[i], seq_warp(sources[i], targets[i], connectivity),
                 connectivity)
  n = len(pairs)
  critical = critical_2d(pred, label) if ndim == 2 else critical_3d(pred, label)
  np.testing.assert_array_equal(critical, (pred != warped[:n]) | (label != warped[n:]))
  assert 0 < critical.sum() < (pred != label).sum()


@pytest.mark.parametrize("ndim", [2, 3])
def test_sparse_mismatches_match_the_oracle(ndim):
  # Mismatched pixels pairwise non-adjacent: the flips are independent, so any
  # order, the original's single pass included, gives the same critical set.
  rng = np.random.default_rng(10 + ndim)
  shape = SHAPE_2D if ndim == 2 else SHAPE_3D
  connectivity = wp._DEFAULT_CONNECTIVITY[ndim]
  preds, labels = [], []
  for _ in range(6 if ndim == 2 else 2):
    label = blobby(rng, shape, 0.45)
    toggled = np.zeros(shape, bool)
    for p in rng.permutation(np.argwhere(np.ones(shape, bool)))[:40]:
      window = tuple(slice(max(i - 1, 0), i + 2) for i in p)
      if not toggled[window].any():
        toggled[tuple(p)] = True
    preds.append(label ^ toggled)
    labels.append(label)
  critical = critical_2d if ndim == 2 else critical_3d
  got = critical(np.stack(preds), np.stack(labels))
  for i, (p, l) in enumerate(zip(preds, labels)):
    expected = seq_critical(p, l, connectivity, repeat=False)
    assert 0 < expected.sum() < (p != l).sum()  # both kinds occur
    np.testing.assert_array_equal(got[i], expected)


# --- Distance levels -------------------------------------------------------------------------


def test_distance_levels_are_floored_edt():
  levels = np.asarray(wp._levels(jnp.ones((1, 3, 40), bool).at[0, 1, 0].set(False), 2, "edt"))
  np.testing.assert_array_equal(levels[0, 1, :6], [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(levels[0, 0, :3], [1, 1, 2])  # 1, sqrt 2, sqrt 5


# --- The loss --------------------------------------------------------------------------------

CE_3 = float(np.log1p(np.exp(3.0)))  # -log softmax((3, 0))[1]


def onehot_logits(classes, num_classes=2, scale=3.0):
  return scale * jax.nn.one_hot(jnp.asarray(classes), num_classes, dtype=jnp.float32)


def gap_batch():
  """Two examples: the broken line (3 critical pixels) and a perfect one."""
  pred, label, expected = case_line_gap()
  labels = jnp.asarray(np.stack([label, label]), jnp.int32)
  logits = onehot_logits(np.stack([pred, label]).astype(np.int32))
  return logits, labels, expected


def test_loss_values():
  logits, labels, expected = gap_batch()
  loss = warping(logits, labels)
  assert loss.shape == (2,) and loss.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(loss), [expected.sum() * CE_3 / expected.size, 0.0],
                             rtol=1e-5)


def test_grad_under_jit_hu2022():
  logits, labels, expected = gap_batch()
  k, n = int(expected.sum()), expected.size
  fn = jax.jit(jax.value_and_grad(
      lambda z, y: jnp.sum(warping(z, y, normalization="hu2022"))))
  value, grad = fn(logits, labels)
  np.testing.assert_allclose(float(value), k * k * CE_3 / n, rtol=1e-5)
  grad = np.asarray(grad)
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(np.abs(grad).sum(-1) > 0, np.stack([expected, canvas()]))
  # d/dz_1 of k/n * CE at a critical pixel (label 1, logits (3, 0)): k/n * (p_1 - 1).
  np.testing.assert_allclose(grad[0][expected][:, 1], -k / n * np.exp(3.0) / (1 + np.exp(3.0)),
                             rtol=1e-5)


def test_vmap_critical_normalization_and_invalid_labels():
  logits, labels, expected = gap_batch()
  bad = labels.at[1, 0, 0].set(2)  # out of range: NaN under a transformation
  out = jax.vmap(lambda z, y: warping(z, y, normalization="critical"))(
      jnp.stack([logits, logits]), jnp.stack([labels, bad]))
  np.testing.assert_allclose(np.asarray(out), [[CE_3, 0.0], [CE_3, np.nan]], rtol=1e-5)
  with pytest.raises(ValueError, match="labels"):
    warping(logits, bad)  # eagerly, an error


def test_multiclass_foreground_union_low_precision():
  label = np.zeros((1,) + SHAPE_2D, np.int32)
  label[0, 3, 1:10] = 1
  label[0, 3, 5:10] = 2
  swapped = np.where(label > 0, 3 - label, 0)  # wrong classes, right foreground
  gap = swapped.copy()
  gap[0, 3, 4] = 0  # now broken: one critical pixel, of class 1
  logits = onehot_logits(np.concatenate([swapped, gap]), 3).astype(jnp.bfloat16)
  loss = warping(logits, jnp.asarray(np.concatenate([label, label])))
  assert loss.dtype == jnp.float32
  ce = np.log(2.0 + np.exp(3.0))  # label 1, logits (3, 0, 0)
  np.testing.assert_allclose(np.asarray(loss), [0.0, ce / label[0].size], rtol=1e-5)


def test_loss_3d():
  tube = np.zeros((1,) + SHAPE_3D, np.int32)
  tube[0, 3, 3, 1:8] = 1
  broken = tube.copy()
  broken[0, 3, 3, 3:5] = 0
  loss = warping(onehot_logits(np.concatenate([broken, tube])),
                 jnp.asarray(np.concatenate([tube, tube])))
  np.testing.assert_allclose(np.asarray(loss), [2 * CE_3 / tube[0].size, 0.0], rtol=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda: warping(jnp.zeros((1, 8, 8, 2), jnp.int32), jnp.zeros((1, 8, 8), jnp.int32)),
     "logits"),
    (lambda: warping(jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 7), jnp.int32)), "labels"),
    (lambda: warping(jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 8), jnp.int32),
                     connectivity=6), "connectivity"),
    (lambda: warping(jnp.zeros((1, 4, 4, 4, 2)), jnp.zeros((1, 4, 4, 4), jnp.int32),
                     connectivity=8), "connectivity"),
    (lambda: warping(jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 8), jnp.int32),
                     ordering="random"), "ordering"),
    (lambda: warping(jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 8), jnp.int32),
                     normalization="sum"), "normalization"),
    (lambda: warping_critical_pixels(jnp.zeros((8, 8)), jnp.zeros((8, 7))), "same shape"),
    (lambda: warping_critical_pixels(jnp.zeros((8, 8)), jnp.zeros((8, 8)), ndim=4), "ndim"),
    (lambda: homotopy_warp(jnp.zeros((8,)), jnp.zeros((8,))), "source"),
    (lambda: homotopy_warp(jnp.zeros((4, 4), jnp.complex64), jnp.zeros((4, 4))), "source"),
])
def test_bad_inputs(call, match):
  with pytest.raises(ValueError, match=match):
    call()
