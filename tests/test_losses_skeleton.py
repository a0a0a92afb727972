"""Exact EDT, Skeleton Recall and cbDice: scipy/NumPy oracles, hand cases, transformations, bad input.

Compilation dominates the run time, so the loss tests share two shapes: S2
(2D, batch 2) and S3 (3D, batch 1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import ndimage

from topojax._src import morphology as grid_morphology
from topojax._src.distance import edt
from topojax.losses import _skeleton as sk
from topojax.losses import cross_entropy
from topojax.losses import dice

morphology = pytest.importorskip("skimage.morphology")

S2 = (2, 16, 18)
S3 = (1, 12, 7, 7)


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _blobs(seed, shape, num_classes=2, sigma=1.5, scale=6.0):
  """Smooth random logits and labels, with structures a skeleton can thin."""
  rng = np.random.default_rng(seed)
  sigmas = (0,) + (sigma,) * (len(shape) - 1) + (0,)
  noise = ndimage.gaussian_filter(rng.normal(size=(*shape, num_classes)), sigmas)
  logits = (scale * noise / noise.std()).astype(np.float32)
  truth = ndimage.gaussian_filter(rng.normal(size=(*shape, num_classes)), sigmas)
  bias = np.array([0.3] + [0.0] * (num_classes - 1))
  labels = np.argmax(truth / truth.std() + bias, -1).astype(np.int32)
  return logits, labels


# ---------------------------------------------------------------- EDT


@pytest.mark.parametrize("shape,ndim", [
    ((3, 17, 23), 2), ((2, 1, 9), 2), ((2, 3, 8, 9), 2), ((2, 6, 11, 7), 3), ((1, 5, 1, 4), 3)])
def test_edt_matches_scipy(shape, ndim):
  rng = np.random.default_rng(len(shape) + shape[-1])
  flat_shape = (-1, *shape[-ndim:])
  for density in (0.02, 0.3, 0.9):
    mask = rng.random(shape) < density
    mask.reshape(flat_shape)[0] = True  # one image without any zero (scipy's phantom)
    ours = np.asarray(edt(mask, ndim=ndim))
    expected = np.stack([ndimage.distance_transform_edt(m) for m in mask.reshape(flat_shape)])
    np.testing.assert_allclose(ours, expected.reshape(shape), rtol=1e-6, atol=1e-6)
    assert ours.dtype == np.float32


def test_edt_empty_full_inf_and_numeric_masks():
  np.testing.assert_array_equal(edt(np.zeros((2, 5, 7), np.float32), ndim=2), 0.0)
  full = np.ones((1, 3, 4, 5), np.int32)
  np.testing.assert_allclose(edt(full, ndim=3), ndimage.distance_transform_edt(full[0])[None], rtol=1e-6)
  mixed = np.ones((2, 6, 6), bool)
  mixed[1, 5, 0] = False
  out = np.asarray(edt(mixed, ndim=2, no_zero="inf"))
  assert np.all(np.isinf(out[0]))
  np.testing.assert_allclose(out[1], ndimage.distance_transform_edt(mixed[1]), rtol=1e-6)
  corner = np.ones((1, 40, 33), np.float32)  # one far zero: the envelope runs to large offsets
  corner[0, 0, 32] = 0.0
  np.testing.assert_allclose(edt(corner, ndim=2)[0], ndimage.distance_transform_edt(corner[0]), rtol=1e-6)


def test_edt_jit_vmap():
  mask = np.random.default_rng(0).random((4, 13, 10)) < 0.8
  eager = edt(mask, ndim=2)
  np.testing.assert_array_equal(jax.jit(lambda m: edt(m, ndim=2))(mask), eager)
  np.testing.assert_array_equal(jax.vmap(lambda m: edt(m, ndim=2))(mask), eager)


@pytest.mark.parametrize("kwargs,match", [(dict(ndim=4), "ndim"), (dict(ndim=2, no_zero="max"), "no_zero")])
def test_edt_bad_args(kwargs, match):
  with pytest.raises(ValueError, match=match):
    edt(np.ones((2, 4, 4)), **kwargs)
  with pytest.raises(ValueError, match="empty spatial axis"):
    edt(np.ones((2, 0, 4)), ndim=2)


# ---------------------------------------------------------------- tube


def _bar_and_line():
  masks = np.zeros(S2, bool)
  masks[0, 2:9, 1:17] = True  # 7 rows high, centre row 5
  masks[1, 3, 1:17] = True  # a one-pixel line
  return masks


def test_tube_of_a_bar_and_a_line_by_hand():
  masks = _bar_and_line()
  skel = np.asarray(sk.tubed_skeleton(masks, ndim=2, tube_radius=0))
  np.testing.assert_array_equal(skel[0], np.zeros((16, 18), bool) | (
      (np.arange(16)[:, None] == 5) & (np.arange(18) >= 5) & (np.arange(18) <= 13)))
  tube = np.asarray(sk.tubed_skeleton(masks, ndim=2))
  rows, cols = np.mgrid[:16, :18]
  to_segment = np.abs(rows - 5) + np.maximum(np.maximum(5 - cols, cols - 13), 0)  # l1 distance
  np.testing.assert_array_equal(tube[0], (to_segment <= 2) & masks[0])
  np.testing.assert_array_equal(tube[0][:, 9], np.isin(np.arange(16), [3, 4, 5, 6, 7]))
  np.testing.assert_array_equal(tube[1], masks[1])  # a thin line is its own skeleton and tube


def test_tube_of_a_3d_rod_is_an_l1_ball_cross_section():
  rod = np.zeros(S3, bool)
  rod[0, 1:11, 1:6, 1:6] = True  # 5x5 cross-section, axis at (3, 3)
  tube = np.asarray(sk.tubed_skeleton(rod, ndim=3))[0]
  yy, xx = np.mgrid[:7, :7]
  ball = (np.abs(yy - 3) + np.abs(xx - 3)) <= 2
  for z in (5, 6):
    np.testing.assert_array_equal(tube[z], ball)


@pytest.mark.parametrize("shape,ndim", [((3, 9, 11), 2), ((2, 5, 6, 7), 3), ((1, 1, 6, 5), 3)])
def test_cross_dilation_is_skimage_default_footprint(shape, ndim):
  sparse = np.random.default_rng(ndim).random(shape) < 0.1
  ours = np.asarray(grid_morphology.dilate_cross(jnp.asarray(sparse), ndim, 2))
  expected = np.stack([morphology.dilation(morphology.dilation(m.astype(np.int16))) > 0
                       for m in sparse.reshape(-1, *shape[-ndim:])]).reshape(shape)
  np.testing.assert_array_equal(ours, expected)


def test_tube_is_our_skeleton_dilated_twice_with_skimage_default_footprint():
  mask = _blobs(0, S2)[1] > 0
  skel = np.asarray(sk.tubed_skeleton(mask, ndim=2, tube_radius=0))
  expected = np.stack([morphology.dilation(morphology.dilation(s.astype(np.int16))) > 0 for s in skel])
  np.testing.assert_array_equal(sk.tubed_skeleton(mask, ndim=2), expected & mask)


# ---------------------------------------------------------------- Skeleton Recall


def _numpy_skeleton_recall(logits, labels, tube, smooth):
  """The reference: y = one_hot(tube * seg)[:, 1:], rec per (b, c), -mean over c."""
  num_classes = logits.shape[-1]
  probs = _softmax(logits.astype(np.float64))[..., 1:]
  y = np.eye(num_classes)[tube.astype(np.int64) * labels][..., 1:]
  axes = tuple(range(1, labels.ndim))
  rec = ((probs * y).sum(axes) + smooth) / np.clip(y.sum(axes) + smooth, 1e-8, None)
  return -rec.mean(-1)


# Calls with default hyperparameters share compilations across the tests (a
# keyword passed explicitly is another jit signature).
@pytest.mark.parametrize("shape,num_classes", [(S2, 2), (S2, 3), (S3, 2)])
def test_skeleton_recall_matches_reference_formula(shape, num_classes):
  logits, labels = _blobs(1, shape, num_classes)
  tube = np.asarray(sk.tubed_skeleton(labels > 0, ndim=len(shape) - 1))
  np.testing.assert_allclose(sk.skeleton_recall(logits, labels),
                             _numpy_skeleton_recall(logits, labels, tube, 1e-5), rtol=1e-5, atol=1e-6)
  if num_classes == 2 and len(shape) == 3:
    np.testing.assert_allclose(sk.skeleton_recall(logits, labels, smooth=1.0),
                               _numpy_skeleton_recall(logits, labels, tube, 1.0), rtol=1e-5, atol=1e-6)


def test_skeleton_recall_per_class_tubes():
  logits, labels = _blobs(2, S2, 3)
  probs = _softmax(logits.astype(np.float64))
  tubes = np.asarray(sk.tubed_skeleton(np.stack([labels == 1, labels == 2], 1), ndim=2))
  rec = [((probs[..., c] * tubes[:, c - 1]).sum((1, 2)) + 1e-5) / (tubes[:, c - 1].sum((1, 2)) + 1e-5)
         for c in (1, 2)]
  np.testing.assert_allclose(sk.skeleton_recall(logits, labels, per_class=True), -np.mean(rec, 0), rtol=1e-5)


def test_skeleton_recall_hand_cases():
  labels = np.zeros(S2, np.int32)
  labels[0] = _bar_and_line()[0]
  perfect = np.asarray(20.0 * jax.nn.one_hot(labels, 2))
  np.testing.assert_allclose(sk.skeleton_recall(perfect, labels), [-1.0, -1.0], atol=1e-6)  # incl. empty
  tube = np.asarray(sk.tubed_skeleton(labels > 0, ndim=2))[0]
  only_centre_row = np.zeros((*S2, 2), np.float32)
  only_centre_row[..., 0] = 15.0
  only_centre_row[:, 5, :, 1] = 30.0  # p = 1 on row 5, 0 elsewhere
  expected = -(tube[5].sum() + 1e-5) / (tube.sum() + 1e-5)
  np.testing.assert_allclose(sk.skeleton_recall(only_centre_row, labels), [expected, -1.0], rtol=1e-5)
  # False positives outside the tube cost nothing: recall only.
  everything = np.broadcast_to(np.array([0.0, 30.0], np.float32), (*S2, 2))
  np.testing.assert_allclose(sk.skeleton_recall(everything, labels), [-1.0, -1.0], atol=1e-6)
  np.testing.assert_allclose(sk.skeleton_recall(-perfect, labels), [0.0, -1.0], atol=1e-6)


def test_ce_skeleton_recall_is_sum_of_terms():
  logits, labels = _blobs(3, S2)
  np.testing.assert_allclose(
      sk.ce_skeleton_recall(logits, labels, weight=0.7),
      cross_entropy(logits, labels) + 0.7 * sk.skeleton_recall(logits, labels), rtol=1e-6)


# ---------------------------------------------------------------- cbDice


def _numpy_get_weights(mask_input, skel_input, dim, prob_flag, i_norm):
  """cbDice's `get_weights`, line by line, with scipy's EDT per image."""
  if prob_flag:
    mask_prob, skel_prob = mask_input, skel_input
    mask, skel = (mask_prob > 0.5).astype(int), (skel_prob > 0.5).astype(int)
  else:
    mask, skel = mask_input, skel_input
  distances = np.stack([ndimage.distance_transform_edt(m) for m in mask]).astype(np.float64)
  distances[mask == 0] = 0
  skel_radius = np.zeros_like(distances)
  skel_radius[skel == 1] = distances[skel == 1]
  dist_map_norm, skel_r_norm, i_map = (np.zeros_like(distances) for _ in range(3))
  power = 1 if dim == 2 else 2
  for i in range(skel_radius.shape[0]):
    distances_i, skel_i = distances[i], skel_radius[i]
    r_max, r_min = max(skel_i.max(), 1), max(skel_i.min(), 1)
    distances_i[distances_i > r_max] = r_max
    dist_map_norm[i] = distances_i / r_max
    skel_r_norm[i] = skel_i / r_max
    if i_norm == "old":
      i_map[i] = (1 + 1e-7) / (skel_r_norm[i] ** power + 1e-7)
    else:
      i_map[i] = ((r_max - skel_i + r_min) / r_max) ** power
  i_map[skel == 0] = 0
  if prob_flag:
    return dist_map_norm * mask_prob, skel_r_norm * mask_prob, i_map * skel_prob
  return dist_map_norm * mask, skel_r_norm * mask, i_map * skel


def _numpy_combine(a, b, c):
  d = b * c
  m = (a != 0) & (b == 0)
  d[m] = (a * c)[m]
  return d


def _numpy_cbdice(logits, labels, smooth, i_norm, skeleton_iter=5):
  """TopoMortar's cbDice term, sums per image; skeletons: ours, Menten's schedule."""
  dim = labels.ndim - 1
  x = logits.astype(np.float64)
  prob = _softmax(np.stack([x[..., 0], x[..., 1:].max(-1)], -1))[..., 1]
  target = (labels > 0).astype(np.float64)
  hard = (prob > 0.5).astype(np.float64)
  masks = np.concatenate([target, hard]) > 0  # our (Menten-schedule) skeletons, one batch as in the loss
  skels = np.asarray(sk._skeleton_of(masks, dim, skeleton_iter, "menten"), np.float64)
  skel_true, skel_pred_prob = skels[:len(x)], skels[len(x):] * prob
  q_vl, q_slvl, q_sl = _numpy_get_weights(target, skel_true, dim, False, i_norm)
  q_vp, q_spvp, q_sp = _numpy_get_weights(prob, skel_pred_prob, dim, True, i_norm)
  axes = tuple(range(1, labels.ndim))
  w_tprec = ((q_sp * q_vl).sum(axes) + smooth) / (_numpy_combine(q_spvp, q_slvl, q_sp).sum(axes) + smooth)
  w_tsens = ((q_sl * q_vp).sum(axes) + smooth) / (_numpy_combine(q_slvl, q_spvp, q_sl).sum(axes) + smooth)
  return -2.0 * w_tprec * w_tsens / (w_tprec + w_tsens)


@pytest.mark.parametrize("shape,ndim", [((3, 13, 11), 2), ((2, 6, 7, 8), 3)])
@pytest.mark.parametrize("i_norm", ["old", "current"])
def test_cbdice_weights_match_reference_get_weights(shape, ndim, i_norm):
  rng = np.random.default_rng(ndim)
  prob = ndimage.gaussian_filter(rng.random(shape), (0,) + (1.0,) * ndim)
  prob = (prob - prob.min()) / (prob.max() - prob.min())
  prob[0] = 0.9  # an image without background (scipy's phantom distances)
  hard = prob > 0.5
  skel = hard & (rng.random(shape) < 0.3)
  dist_norm, radius_norm, importance = (np.asarray(m, np.float64) for m in sk._cb_maps(hard, skel, ndim, i_norm))
  ours = (dist_norm * prob, radius_norm * prob, importance * skel * prob)
  for a, b in zip(ours, _numpy_get_weights(prob, skel * prob, ndim, True, i_norm)):
    np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
  ours = (dist_norm * hard, radius_norm * hard, importance * skel)
  for a, b in zip(ours, _numpy_get_weights(hard.astype(np.float64), skel.astype(int), ndim, False, i_norm)):
    np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("shape,num_classes", [(S2, 2), (S2, 3), (S3, 2)])
def test_cbdice_matches_reference_formula(shape, num_classes):
  """The multi-class case also checks the collapse to the largest foreground logit."""
  logits, labels = _blobs(4, shape, num_classes)
  np.testing.assert_allclose(sk.cbdice(logits, labels), _numpy_cbdice(logits, labels, 1.0, "old"), rtol=2e-5)
  if num_classes == 3:
    np.testing.assert_allclose(sk.cbdice(logits, labels, smooth=1e-3, skeleton_iter=2),
                               _numpy_cbdice(logits, labels, 1e-3, "old", 2), rtol=2e-5)


def test_cbdice_hand_cases():
  labels = np.zeros(S2, np.int32)
  labels[0] = _bar_and_line()[0]
  perfect = np.asarray(20.0 * jax.nn.one_hot(labels, 2))
  np.testing.assert_allclose(sk.cbdice(perfect, labels), [-1.0, -1.0], atol=1e-6)  # incl. empty/empty
  # A prediction without background (scipy's phantom distances) stays finite and matches.
  everything = np.broadcast_to(np.array([0.0, 5.0], np.float32), (*S2, 2))
  value = np.asarray(sk.cbdice(everything, labels))
  assert np.all(np.isfinite(value)) and np.all(value > -1.0)
  np.testing.assert_allclose(value, _numpy_cbdice(np.asarray(everything), labels, 1.0, "old"), rtol=2e-5)


def test_cedice_cbdice_is_topomortar_weighting():
  logits, labels = _blobs(6, S2)
  expected = (0.5 * cross_entropy(logits, labels) + (1 / 6) * dice(logits, labels, smooth=1e-5)
              + (2 / 6) * sk.cbdice(logits, labels))
  np.testing.assert_allclose(sk.cedice_cbdice(logits, labels, alpha=1.0, beta=2.0), expected, rtol=1e-6)


# ---------------------------------------------------------------- both: transformations


LOSSES = {"skeleton_recall": sk.skeleton_recall, "cbdice": sk.cbdice,
          "ce_skeleton_recall": sk.ce_skeleton_recall, "cedice_cbdice": sk.cedice_cbdice}


@pytest.mark.parametrize("name", ["skeleton_recall", "cbdice"])
def test_jit_vmap_per_example_and_nan_flag(name):
  fn = LOSSES[name]
  logits, labels = _blobs(7, S2)
  eager = np.asarray(fn(logits, labels))
  single = jax.jit(jax.vmap(lambda l, y: fn(l[None], y[None])[0]))
  np.testing.assert_allclose(single(logits, labels), eager, rtol=1e-6)
  bad = labels.copy()
  bad[1, 0, 0] = 7  # out of range: NaN under jit, the other example unchanged
  flagged = np.asarray(single(logits, bad))
  np.testing.assert_allclose(flagged[0], eager[0], rtol=1e-6)
  assert np.isnan(flagged[1])


@pytest.mark.parametrize("name,shape", [
    ("skeleton_recall", S2), ("cbdice", S2), ("skeleton_recall", S3), ("cbdice", S3)])
def test_grad_finite_on_edge_cases(name, shape):
  fn = LOSSES[name]
  logits, labels = _blobs(8, shape)
  ones = np.ones(shape, np.int32)
  cases = [(logits, labels), (logits, 0 * ones), (logits, ones)]
  for fill in (-30.0, 0.0, 30.0):  # all background, undecided (p = 0.5), all foreground
    constant = np.zeros((*shape, 2), np.float32)
    constant[..., 1] = fill
    cases += [(constant, labels), (constant, 0 * ones), (constant, ones)]
  def value_and_grad(l, y):
    value, vjp = jax.vjp(lambda x: fn(x, y), jnp.asarray(l))
    return np.asarray(value), vjp(jnp.ones_like(value))[0]
  for l, y in cases:
    per_example, grads = value_and_grad(l, y)
    assert np.all(np.isfinite(per_example)) and np.all(per_example <= 0)
    if name == "skeleton_recall":  # cbDice's weighted ratios can exceed 1 (as the reference's)
      assert np.all(per_example >= -1)
    assert bool(jnp.all(jnp.isfinite(grads)))
  assert float(jnp.abs(value_and_grad(logits, labels)[1]).max()) > 0


@pytest.mark.parametrize("name", ["skeleton_recall", "cbdice"])
def test_check_grads_away_from_the_threshold(name):
  logits, labels = _blobs(9, S2, scale=3.0)
  margin = np.where(logits[..., 1:] > logits[..., :1], 0.5, -0.5) * np.array([-1.0, 1.0], np.float32)
  check_grads(lambda l: LOSSES[name](l, labels), (jnp.asarray(logits + margin, jnp.float32),), order=1,
              modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


def test_skeleton_recall_gradient_only_on_the_tube():
  logits, labels = _blobs(9, S2, scale=3.0)
  grads = np.asarray(jax.grad(lambda l: jnp.sum(sk.skeleton_recall(l, labels)))(jnp.asarray(logits)))
  tube = np.asarray(sk.tubed_skeleton(labels > 0, ndim=2))
  assert np.all(grads[~tube] == 0) and np.any(grads[tube] != 0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("logits,labels,match", [
    (np.zeros((2, 8, 8), np.float32), np.zeros((2, 8), np.int32), "channels-last"),
    (np.zeros((2, 8, 8, 2), np.float32), np.zeros((2, 8, 9), np.int32), "labels` must have shape"),
    (np.zeros((2, 8, 8, 2), np.float32), np.zeros((2, 8, 8), bool), "labels` must have an integer dtype"),
    (np.zeros((2, 8, 8, 1), np.float32), np.zeros((2, 8, 8), np.int32), "C >= 2"),
    (np.zeros((2, 8, 8, 2), np.float32), np.full((2, 8, 8), 2, np.int32), r"must lie in \[0, 1\]"),
])
def test_bad_input_raises(name, logits, labels, match):
  with pytest.raises(ValueError, match=match):
    LOSSES[name](logits, labels)


@pytest.mark.parametrize("fn,kwargs,match", [
    (sk.skeleton_recall, dict(tube_radius=-1), "tube_radius"),
    (sk.skeleton_recall, dict(num_iter=1.5), "num_iter"),
    (sk.skeleton_recall, dict(compat="lee"), "compat"),
    (sk.cbdice, dict(i_norm="new"), "i_norm"),
    (sk.cbdice, dict(skeleton_iter=-2), "skeleton_iter"),
])
def test_bad_hyperparameters_raise(fn, kwargs, match):
  with pytest.raises(ValueError, match=match):
    fn(np.zeros((1, 8, 8, 2), np.float32), np.zeros((1, 8, 8), np.int32), **kwargs)
