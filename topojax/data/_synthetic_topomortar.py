"""Synthetic TopoMortar: generated brick walls with the real dataset's structure.

`synthetic_topomortar` mirrors `load_topomortar` (same splits, ids, test
groups, label types, small training set and return type) with walls from the
brick generator in `_bricks.py`, so that the TopoMortar protocol runs without
the real photographs, out-of-distribution groups included. Every image is a
pure function of `(seed, image id, size)`: the small training set is a subset
of the large one and each test group can be generated alone. Arrays are cached
on disk as uint8 `.npz` files next to the real loader's cache.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from topojax._src import checks
from topojax.data import _bricks
from topojax.data._topomortar import LABEL_KINDS
from topojax.data._topomortar import SMALL_TRAINING_IDS
from topojax.data._topomortar import SPLIT_IDS
from topojax.data._topomortar import SPLITS
from topojax.data._topomortar import TEST_GROUP_IDS
from topojax.data._topomortar import TEST_GROUPS
from topojax.data._topomortar import TRAINING_SETS
from topojax.data._topomortar import TopoMortarSplit
from topojax.data._topomortar import _as_split
from topojax.data._topomortar import _cache_root
from topojax.data._topomortar import _check_choice
from topojax.data._topomortar import _check_size
from topojax.data._topomortar import _read_cache
from topojax.data._topomortar import _write_cache

# Bump whenever any generated image or label changes, so stale caches are
# never reused.
_GENERATOR_VERSION = 1
# The real photographs' size, used for `size=None`.
_NATIVE_SHAPE = (512, 512)
# Pixel lengths below are given at 64 x 64 and scale with min(H, W) / 64.
_BASE_SIZE = 64
_MIN_SIZE = 16
_GROUP_OF = {i: g for g, ids in TEST_GROUP_IDS.items() for i in ids}
_NOISY_DROP_RATE = 0.015
_EIGHT = np.ones((3, 3), bool)

Scene = Callable[[np.ndarray], np.ndarray]


def synthetic_topomortar(split: str = "train", *, label: str = "accurate",
                         training_set: str = "large",
                         groups: Sequence[str] | str | None = None,
                         size: int | tuple[int, int] | None = 64, seed: int = 0,
                         cache: bool = True,
                         cache_dir: str | os.PathLike | None = None) -> TopoMortarSplit:
  """Generates one split of a synthetic TopoMortar, laid out like the real one.

  Same ids, splits and groups as TopoMortar: train 001-050 (small training
  set 001, 009, 011, 024, 036, 041, 043, 045, 048, 049), val 051-070, test
  071-420 in groups of 50 (indistr, angles, colors, graffiti, objects,
  shadows, occlusion). Image i is drawn from streams seeded by `(seed, i)`
  (geometry, appearance, scene, label noise), so it does not depend on which
  other images are generated. Train, val and indistr walls come from the
  default `BrickWallConfig` (resized to `size`).

  Labels:
    - "accurate": the wall's mortar, exactly. In "occlusion" the label is
      amodal (mortar behind the occluders stays labelled, as in TopoMortar);
      in "objects" it is modal: the objects are part of the scene, so mortar
      hidden behind them is not labelled.
    - "noisy" (train/val): what a quick annotator with a fixed-size pen
      draws. The joint centre lines (the borders between bricks, plus joints
      running along the image edge), displaced by a smooth hand jitter
      (~0.5 px at 64 x 64), drawn with a square pen of ~0.6 px per 64 px of
      image size (1 px up to 128 x 128, 5 px at 512 x 512); 1.5 % of the
      joint segments (between two bricks) are left out and specks dropped.
      At 64 x 64 (128, 512): ~19 % (10 %, 13 %) foreground vs ~31 %
      accurate, beta1 within ~12 % of the accurate label's, beta0 ~1.1-1.4
      (TopoMortar: 13.2 % vs 30.4 % foreground, same beta1, beta0 1.1).
    - "pseudo" (train/val): an automatic label, a colour segmentation of
      the rendered photo: each pixel's colour projected on the line from the
      wall's mean brick colour to its mean mortar colour, smoothed, thresholded
      and cleared of specks under ~8 px (at 64 x 64). Lighting, texture and
      brick colour variation thicken it and add spurious blobs and occasional
      breaks: ~35-40 % foreground, beta0 ~1.3-1.9, beta1 0-8 % above the
      accurate label's (TopoMortar: 35.6 %, 1.4, +4 %).

  Out-of-distribution test groups (the geometry is the in-distribution one
  unless stated):
    - "angles": walls rotated by 15-40 degrees (training walls: up to 3) and
      seen obliquely (perspective, larger bricks on the near side).
    - "colors": palettes outside the training range: white-painted or grey
      bricks with dark mortar, walls painted one colour, charcoal mortar,
      yellow or dark bricks.
    - "graffiti": spray-painted strokes and blobs over bricks and mortar;
      the joints show faintly through the paint; the label is unchanged.
    - "objects": pipes, cables, signs, boxes and plants in front of the wall
      (modal label, see above).
    - "shadows": strong, hard-edged cast shadows (building edges, poles,
      foliage); the label is unchanged.
    - "occlusion": one or two large occluders (20-45 % of the image); amodal
      label.

  Args:
    split: "train", "val" or "test".
    label: "accurate", "noisy" or "pseudo"; the test split has only
      "accurate".
    training_set: "large" (50 training images) or "small" (10); val and test
      are the same for both.
    groups: test groups to generate (e.g. `("indistr", "shadows")`); None
      generates all seven. Test split only.
    size: output size, an int S for S x S or `(height, width)`, at least 16;
      None is the real photographs' 512 x 512. Wall geometry scales with the
      size (bricks, mortar, pen and scene elements alike).
    seed: non-negative integer seed of the whole dataset.
    cache: whether to read and write the on-disk cache.
    cache_dir: cache folder; default the real loader's cache root
      (`$TOPOJAX_CACHE_DIR/topomortar`, else `~/.cache/topojax/topomortar`).
      Files go to its `synthetic` sub-folder, keyed by the seed, split, label,
      selected ids (training set and groups), size and generator version. If
      it cannot be written, generation goes on uncached.

  Returns:
    A `TopoMortarSplit` `(images, labels, ids, groups)`: `[N, H, W, 3]`
    float32 in [0, 1] (quantised to 1/255, as the cache stores uint8, so
    cached and fresh arrays are equal), `[N, H, W]` int32 in {0, 1}, and the
    N ids and group names, sorted by id.

  Raises:
    ValueError: for an unknown argument value, a non-accurate label on the
      test split, `groups` with a train/val split, an unknown or empty
      `groups`, a bad `size` (or one under 16 pixels) or a negative `seed`.

  Examples:
    >>> data = synthetic_topomortar("test", groups=("indistr", "occlusion"), size=32,
    ...                             cache=False)
    >>> data.images.shape, data.labels.shape, data.ids[0], sorted(set(data.groups))
    ((100, 32, 32, 3), (100, 32, 32), '071', ['indistr', 'occlusion'])
    >>> small = synthetic_topomortar("train", label="noisy", training_set="small",
    ...                              size=32, cache=False)
    >>> small.ids[:3], small.images.dtype, small.labels.dtype
    (('001', '009', '011'), dtype('float32'), dtype('int32'))
  """
  _check_choice(split, SPLITS, "split")
  _check_choice(label, LABEL_KINDS, "label")
  _check_choice(training_set, TRAINING_SETS, "training_set")
  if split == "test" and label != "accurate":
    raise ValueError(f"The test split only has 'accurate' labels, got label={label!r}.")
  shape = _check_size(size) or _NATIVE_SHAPE
  if min(shape) < _MIN_SIZE:
    raise ValueError(f"`size` must be at least {_MIN_SIZE} pixels a side (smaller walls have "
                     f"bricks under a pixel), got {size!r}.")
  seed = checks.check_positive_int(seed, "seed", allow_zero=True)

  if split != "test":
    if groups is not None:
      raise ValueError(f"`groups` selects test groups; it must be None for split={split!r}.")
    ids = SMALL_TRAINING_IDS if split == "train" and training_set == "small" else SPLIT_IDS[split]
  else:
    groups = TEST_GROUPS if groups is None else (
        (groups,) if isinstance(groups, str) else tuple(groups))
    unknown = [g for g in groups if g not in TEST_GROUPS]
    if unknown:
      raise ValueError(f"Unknown test group(s) {unknown} in `groups`; TopoMortar has "
                       f"{list(TEST_GROUPS)}.")
    if not groups:
      raise ValueError("`groups` is empty; name at least one test group or pass None.")
    ids = tuple(sorted(i for g in set(groups) for i in TEST_GROUP_IDS[g]))
  group_names = tuple(_GROUP_OF.get(i, "indistr") for i in ids)

  cache_file = None
  if cache:
    key = {"version": _GENERATOR_VERSION, "seed": seed, "split": split, "label": label,
           "ids": list(ids), "size": shape}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = (_cache_root(cache_dir) / "synthetic"
                  / f"{split}_{label}_{shape[0]}x{shape[1]}_seed{seed}_{digest}.npz")
    cached = _read_cache(cache_file, ids)
    if cached is not None:
      return _as_split(*cached, ids, group_names)

  images_u8 = np.empty((len(ids), *shape, 3), np.uint8)
  labels_u8 = np.empty((len(ids), *shape), np.uint8)
  for n, image_id in enumerate(ids):
    wall = _synthetic_wall(seed, image_id, shape)
    images_u8[n] = np.round(wall.image * 255).astype(np.uint8)
    if label == "accurate":
      labels_u8[n] = wall.label
    elif label == "noisy":
      labels_u8[n] = _noisy_label(np.random.default_rng(_streams(seed, image_id)[3]),
                                  wall.layout, _scale(shape))
    else:
      labels_u8[n] = _pseudo_label(images_u8[n], wall.layout, _scale(shape))
  if cache_file is not None:
    _write_cache(cache_file, images_u8, labels_u8, ids)
  return _as_split(images_u8, labels_u8, ids, group_names)


class _Wall(NamedTuple):
  """One generated image before quantisation.

  Attributes:
    image: `[H, W, 3]` float32 in [0, 1].
    layout: the wall's geometry (`layout.mortar` is the amodal label).
    cover: `[H, W]` float opacity of things in front of the wall (objects,
      occluders); 0 where the wall is seen.
    label: `[H, W]` bool, the accurate label of the image's group.
  """

  image: np.ndarray
  layout: _bricks.WallLayout
  cover: np.ndarray
  label: np.ndarray


def _streams(seed, image_id):
  """Independent streams of one image: layout, rendering, scene, label noise."""
  return np.random.SeedSequence([seed, int(image_id)]).spawn(4)


def _scale(shape):
  return min(shape) / _BASE_SIZE


def _synthetic_wall(seed: int, image_id: str, shape: tuple[int, int], *,
                    with_scene: bool = True) -> _Wall:
  """Generates image `image_id` of the synthetic dataset at `shape`.

  `with_scene=False` renders the same wall without its graffiti, shadows,
  objects or occluders (for tests and figures).
  """
  group = _GROUP_OF.get(image_id, "indistr")
  layout_seq, render_seq, scene_seq, _ = _streams(seed, image_id)
  scene_rng = np.random.default_rng(scene_seq)
  config = _bricks.BrickWallConfig().resized(*shape)
  if group == "angles":
    config = dataclasses.replace(config, min_angle=15.0, max_angle=40.0, perspective=0.3)
  elif group == "colors":
    config = _ood_palette(scene_rng, config)
  layout = _bricks.sample_layout(np.random.default_rng(layout_seq), config)
  cover = np.zeros(shape)
  scene = None
  if group in _SCENES and with_scene:
    scene, cover = _SCENES[group](scene_rng, shape, _scale(shape))
  image = _bricks.render_wall(np.random.default_rng(render_seq), layout, config, scene=scene)
  label = layout.mortar & (cover < 0.5) if group == "objects" else layout.mortar
  return _Wall(image, layout, cover, label)


# ------------------------------------------------------------------ labels


def _noisy_label(rng, layout, scale):
  """A quick annotation: jittered joint centre lines, fixed pen, some left out."""
  shape = layout.mortar.shape
  jitter = 0.5 * scale
  yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
  dy = jitter * _bricks.smooth_noise(rng, shape, 3 * scale)
  dx = jitter * _bricks.smooth_noise(rng, shape, 3 * scale)
  ids = ndimage.map_coordinates(layout.brick_id, [yy + dy, xx + dx], order=0, mode="nearest")

  # Joint centre lines = borders between bricks, one pixel wide (the pixel
  # left of / above each border). Each border piece belongs to a pair of
  # bricks; a few pairs are skipped, as a hurried annotator does.
  keys = np.full((2, *shape), -1, np.int64)
  pair = lambda a, b: np.minimum(a, b) * layout.num_bricks + np.maximum(a, b)  # noqa: E731
  right, below = ids[:, :-1] != ids[:, 1:], ids[:-1] != ids[1:]
  keys[0, :, :-1] = np.where(right, pair(ids[:, :-1], ids[:, 1:]), -1)
  keys[1, :-1] = np.where(below, pair(ids[:-1], ids[1:]), -1)
  segments, index = np.unique(keys, return_inverse=True)
  kept = rng.uniform(size=segments.size) >= _NOISY_DROP_RATE
  kept[segments < 0] = False
  stroke = kept[index.reshape(keys.shape)].any(0)

  # Borders of joint fragments the layout gave to the bricks (clipped corners)
  # are not mortar: nobody traces them.
  stroke &= ndimage.distance_transform_edt(~layout.mortar) <= 1 + 3 * jitter
  stroke |= _border_joints(layout.mortar, stroke)
  # Specks left by the warp or by skipped segments: nobody draws dots.
  components, count = ndimage.label(stroke, structure=_EIGHT)
  sizes = np.bincount(components.ravel(), minlength=count + 1)
  stroke &= (sizes >= 3 * scale)[components] & (components > 0)

  pen = max(1, round(0.6 * scale))  # 1 px at 64 x 64 and 128 x 128, 5 px at 512 x 512
  if pen > 1:
    stroke = ndimage.binary_dilation(stroke, np.ones((pen, pen), bool))
  return stroke


def _border_joints(mortar, stroke):
  """Joints running along the image border whose centre line lies outside it.

  Such a joint has no brick border inside the image, yet it closes the bricks
  next to it; an annotator traces it along the edge. Returns the runs of
  border mortar pixels that the strokes mostly miss.
  """
  near = ndimage.distance_transform_edt(~stroke) <= 1.5
  extra = np.zeros_like(mortar)
  for index in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
    runs, count = ndimage.label(mortar[index])
    if count == 0:
      continue
    covered = ndimage.mean(near[index], runs, np.arange(1, count + 1))
    extra[index] |= (np.concatenate([[False], covered < 0.5]))[runs]
  return extra


def _pseudo_label(image_u8, layout, scale):
  """An automatic label: a smoothed, thresholded two-colour segmentation."""
  image = image_u8.astype(np.float64) / 255
  mortar = layout.mortar
  brick_mean = image[~mortar].mean(0)
  axis = image[mortar].mean(0) - brick_mean
  score = (image - brick_mean) @ axis / max(float(axis @ axis), 1e-6)
  score = ndimage.gaussian_filter(score, 0.5 * scale)
  pseudo = score > 0.35
  # The usual clean-up of automatic masks: drop specks under ~8 px (at 64 x 64).
  components, count = ndimage.label(pseudo, structure=_EIGHT)
  sizes = np.bincount(components.ravel(), minlength=count + 1)
  return pseudo & (sizes >= 8 * scale**2)[components] & (components > 0)


# ---------------------------------------------------- out-of-distribution


def _ood_palette(rng, config):
  """A wall palette outside the training range (brick_low/high, mortar_low/high)."""

  def around(color, spread=0.04):
    color = np.asarray(color)
    return (tuple(np.clip(color - spread, 0, 1).tolist()),
            tuple(np.clip(color + spread, 0, 1).tolist()))

  kind = rng.integers(6)
  if kind in (0, 2):  # painted: one colour, no per-brick hue
    config = dataclasses.replace(config, brick_color_jitter=0.04)
  if kind == 0:  # white-painted bricks, grey mortar (inverted contrast)
    brick, mortar = around((0.90, 0.89, 0.86)), around((0.45, 0.44, 0.43), 0.06)
  elif kind == 1:  # grey concrete blocks, dark mortar
    brick, mortar = around((0.58, 0.58, 0.60), 0.08), around((0.22, 0.22, 0.23))
  elif kind == 2:  # the whole wall painted one colour; joints only by relief
    paint = np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 0.8),
                                           rng.uniform(0.5, 0.9)))
    brick, mortar = around(paint, 0.03), around(paint * 0.8, 0.03)
  elif kind == 3:  # red bricks, charcoal mortar
    brick, mortar = (config.brick_color_low, config.brick_color_high), around((0.15, 0.14, 0.14))
  elif kind == 4:  # yellow (buff) bricks, dark mortar
    brick, mortar = around((0.85, 0.72, 0.42), 0.06), around((0.30, 0.27, 0.24))
  else:  # dark blue-black engineering bricks, white mortar
    brick, mortar = around((0.16, 0.17, 0.22), 0.05), around((0.93, 0.93, 0.92), 0.03)
  return dataclasses.replace(config, brick_color_low=brick[0], brick_color_high=brick[1],
                             mortar_color_low=mortar[0], mortar_color_high=mortar[1])


def _grid(shape):
  yy, xx = np.mgrid[:shape[0], :shape[1]]
  return yy.astype(np.float64), xx.astype(np.float64)


def _soft(signed_distance, softness):
  """Opacity of a shape from its signed distance (negative inside)."""
  return np.clip(0.5 - signed_distance / softness, 0, 1)


def _polyline_distance(points, yy, xx):
  """Distance from every pixel to a polyline `[(y, x), ...]`."""
  distance = np.full(yy.shape, np.inf)
  for (ay, ax), (by, bx) in zip(points[:-1], points[1:]):
    ey, ex = by - ay, bx - ax
    t = np.clip(((yy - ay) * ey + (xx - ax) * ex) / max(ey * ey + ex * ex, 1e-12), 0, 1)
    distance = np.minimum(distance, np.hypot(yy - ay - t * ey, xx - ax - t * ex))
  return distance


def _random_walk(rng, start, steps, step, turn):
  """A smooth random curve: `steps` segments of length `step`, heading drifts by `turn`."""
  heading = rng.uniform(0, 2 * math.pi)
  points = [np.asarray(start, np.float64)]
  for _ in range(steps):
    heading += rng.normal(0, turn)
    points.append(points[-1] + step * np.array([math.sin(heading), math.cos(heading)]))
  return points


def _box_distance(yy, xx, center, half_height, half_width, angle):
  """Signed distance to a rotated rectangle."""
  cos, sin = math.cos(angle), math.sin(angle)
  y, x = yy - center[0], xx - center[1]
  u, v = np.abs(x * cos + y * sin) - half_width, np.abs(-x * sin + y * cos) - half_height
  outside = np.hypot(np.maximum(u, 0), np.maximum(v, 0))
  return outside + np.minimum(np.maximum(u, v), 0)


def _ellipse_distance(yy, xx, center, radius_y, radius_x, angle):
  """Approximate signed distance to a rotated ellipse."""
  cos, sin = math.cos(angle), math.sin(angle)
  y, x = yy - center[0], xx - center[1]
  u, v = (x * cos + y * sin) / radius_x, (-x * sin + y * cos) / radius_y
  return (np.hypot(u, v) - 1) * min(radius_x, radius_y)


def _paint_color(rng):
  """Spray-paint colours: saturated hues, sometimes black, white or silver."""
  kind = rng.uniform()
  if kind < 0.1:
    return np.array([0.06, 0.06, 0.07])
  if kind < 0.2:
    return np.array([0.95, 0.95, 0.93])
  if kind < 0.25:
    return np.array([0.75, 0.76, 0.78])
  return np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.65, 1),
                                        rng.uniform(0.6, 1)))


def _over(color, alpha, layer_color, layer_alpha):
  """Composites a layer over (color, alpha) layers; colours `[H, W, 3]`."""
  a = layer_alpha[..., None]
  return color * (1 - a) + layer_color * a, alpha + layer_alpha * (1 - alpha)


def _graffiti_scene(rng, shape, scale):
  """Tags of spray-painted strokes and filled blobs; the joints show through faintly."""
  yy, xx = _grid(shape)
  color, alpha = np.zeros((*shape, 3)), np.zeros(shape)
  for _ in range(rng.integers(1, 4)):
    center = rng.uniform(0.15, 0.85, 2) * shape
    paint = _paint_color(rng)
    opacity = rng.uniform(0.85, 0.98)
    if rng.uniform() < 0.5:  # a filled letter-like blob
      blob = _ellipse_distance(yy, xx, center, rng.uniform(4, 12) * scale,
                               rng.uniform(6, 16) * scale, rng.uniform(0, math.pi))
      color, alpha = _over(color, alpha, paint, opacity * _soft(blob, 1.2 * scale))
    for _ in range(rng.integers(3, 7)):
      start = center + rng.normal(0, 8 * scale, 2)
      points = _random_walk(rng, start, int(rng.integers(4, 10)),
                            rng.uniform(3, 6) * scale, 0.7)
      width = rng.uniform(1.5, 4.5) * scale
      stroke = _polyline_distance(points, yy, xx) - width / 2
      color, alpha = _over(color, alpha, paint, opacity * _soft(stroke, 1.0 * scale))
      if rng.uniform() < 0.3:  # a second colour
        paint = _paint_color(rng)
  color = color / np.maximum(alpha, 1e-6)[..., None]
  # Sprayed paint is uneven: a little fine texture in its opacity.
  alpha *= np.clip(1 + 0.08 * _bricks.smooth_noise(rng, shape, 0.6 * scale), 0, 1)

  def scene(image):
    # Paint follows the relief: recessed (darker) mortar stays a little darker.
    brightness = image.mean(-1, keepdims=True)
    relief = np.clip(0.7 + 0.3 * brightness / max(float(brightness.mean()), 1e-6), 0, 1.3)
    return image * (1 - alpha[..., None]) + color * relief * alpha[..., None]
  return scene, np.zeros(shape)


def _shadow_scene(rng, shape, scale):
  """Hard-edged cast shadows: building edges and corners, poles, foliage."""
  yy, xx = _grid(shape)
  darkness = np.zeros(shape)
  for kind in rng.choice(3, size=rng.integers(1, 3), replace=False):
    if kind == 0:  # the edge (or corner) of a building: one or two half-planes
      distance = None
      for _ in range(rng.integers(1, 3)):
        direction = rng.uniform(0, 2 * math.pi)
        projection = yy * math.sin(direction) + xx * math.cos(direction)
        edge = np.quantile(projection, rng.uniform(0.4, 0.75))
        plane = projection - edge
        distance = plane if distance is None else np.maximum(distance, plane)
    elif kind == 1:  # a pole or a cable of a lamp post
      direction = rng.uniform(0, math.pi)
      centre = rng.uniform(0.2, 0.8, 2) * shape
      across = (yy - centre[0]) * math.cos(direction) - (xx - centre[1]) * math.sin(direction)
      distance = np.abs(across) - rng.uniform(2, 6) * scale
    else:  # foliage: a hard-edged blotchy pattern
      leaves = _bricks.smooth_noise(rng, shape, rng.uniform(2, 4) * scale)
      envelope = _ellipse_distance(yy, xx, rng.uniform(0.2, 0.8, 2) * shape,
                                   rng.uniform(0.3, 0.6) * shape[0],
                                   rng.uniform(0.3, 0.6) * shape[1], rng.uniform(0, math.pi))
      distance = np.maximum(-leaves * 2 * scale, envelope)
    darkness = np.maximum(darkness, _soft(distance, 0.6 * scale))
  strength = rng.uniform(0.55, 0.75)
  tint = np.array([1.0, 0.97, 0.88])  # shade is lit by the bluish sky: red and green drop more

  def scene(image):
    return image * (1 - strength * darkness[..., None] * tint)
  return scene, np.zeros(shape)


def _object_layers(rng, shape, scale, kinds):
  """Opaque things in front of the wall: pipes, cables, signs, boxes, plants."""
  yy, xx = _grid(shape)
  h, w = shape
  color, alpha = np.zeros((*shape, 3)), np.zeros(shape)
  for kind in kinds:
    if kind == "pipe":  # a drain pipe: vertical or horizontal, shaded as a cylinder
      vertical = rng.uniform() < 0.7
      position = rng.uniform(0.15, 0.85) * (w if vertical else h)
      radius = rng.uniform(1.5, 3) * scale
      across = (xx if vertical else yy) - position
      base = np.array([(0.85, 0.85, 0.83), (0.3, 0.3, 0.32), (0.72, 0.45, 0.25),
                       (0.55, 0.57, 0.6)][rng.integers(4)])
      shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - (across / radius) ** 2, 0, 1))
      color, alpha = _over(color, alpha, base * shade[..., None],
                           _soft(np.abs(across) - radius, 0.6 * scale))
    elif kind == "cable":  # a sagging cable across the wall
      left, right = rng.uniform(0.05, 0.6, 2) * h
      sag = rng.uniform(2, 10) * scale
      t = np.linspace(0, 1, 17)
      points = [np.array([left + (right - left) * s + 4 * sag * s * (1 - s), s * (w - 1)])
                for s in t]
      width = rng.uniform(0.9, 1.6) * scale
      cable = _polyline_distance(points, yy, xx) - width / 2
      color, alpha = _over(color, alpha, np.array([0.08, 0.08, 0.09]), _soft(cable, 0.6 * scale))
    elif kind == "sign":  # a coloured plate with a border and text bars
      center = rng.uniform(0.2, 0.8, 2) * shape
      half_h, half_w = rng.uniform(4, 9) * scale, rng.uniform(6, 13) * scale
      angle = rng.normal(0, 0.05)
      plate = _box_distance(yy, xx, center, half_h, half_w, angle)
      background, ink = _paint_color(rng), _paint_color(rng)
      sign = np.where((plate > -0.8 * scale)[..., None], ink, background)
      for row in range(rng.integers(1, 4)):
        offset = (row - 1) * 0.5 * half_h
        bar = _box_distance(yy, xx, center + np.array([offset, 0]), 0.12 * half_h + 0.4 * scale,
                            rng.uniform(0.4, 0.75) * half_w, angle)
        sign = np.where((bar < 0)[..., None], ink, sign)
      color, alpha = _over(color, alpha, sign, _soft(plate, 0.6 * scale))
    elif kind == "box":  # an electrical box or lamp, shaded top to bottom
      center = rng.uniform(0.2, 0.8, 2) * shape
      half_h, half_w = rng.uniform(4, 8) * scale, rng.uniform(3, 7) * scale
      box = _box_distance(yy, xx, center, half_h, half_w, 0.0) - scale
      base = np.array([(0.82, 0.82, 0.8), (0.25, 0.25, 0.27), (0.6, 0.62, 0.55)][rng.integers(3)])
      shade = 1.05 - 0.25 * np.clip((yy - center[0] + half_h) / (2 * half_h), 0, 1)
      color, alpha = _over(color, alpha, base * shade[..., None], _soft(box, 0.6 * scale))
    else:  # a climbing or potted plant: leaves clustered around a stem
      base_y = h - 1 if rng.uniform() < 0.6 else 0.0
      stem = _random_walk(rng, (base_y, rng.uniform(0.15, 0.85) * w), 8,
                          rng.uniform(4, 7) * scale, 0.4)
      # Grow away from the edge it starts at (a pot below, a hanging basket above).
      stem = [np.array([abs(p[0]) if base_y == 0 else base_y - abs(base_y - p[0]), p[1]])
              for p in stem]
      stem_distance = _polyline_distance(stem, yy, xx) - 0.6 * scale
      color, alpha = _over(color, alpha, np.array([0.3, 0.35, 0.15]),
                           _soft(stem_distance, 0.6 * scale))
      for _ in range(rng.integers(20, 40)):
        anchor = stem[rng.integers(len(stem))] + rng.normal(0, 5 * scale, 2)
        leaf = _ellipse_distance(yy, xx, anchor, rng.uniform(1.5, 2.8) * scale,
                                 rng.uniform(3, 5.5) * scale, rng.uniform(0, math.pi))
        green = np.asarray(colorsys.hsv_to_rgb(rng.uniform(0.2, 0.38), rng.uniform(0.5, 0.9),
                                               rng.uniform(0.25, 0.7)))
        color, alpha = _over(color, alpha, green, _soft(leaf, 0.6 * scale))
  return color / np.maximum(alpha, 1e-6)[..., None], alpha


def _objects_scene(rng, shape, scale):
  kinds = rng.choice(["pipe", "cable", "sign", "box", "plant"], size=rng.integers(1, 4),
                     replace=False)
  color, alpha = _object_layers(rng, shape, scale, kinds)
  return _composite(color, alpha), alpha


def _occlusion_scene(rng, shape, scale):
  """One or two large occluders (a person, a bin, a board, a tree trunk)."""
  yy, xx = _grid(shape)
  h, w = shape
  color, alpha = np.zeros((*shape, 3)), np.zeros(shape)
  for _ in range(rng.integers(1, 3)):
    kind = rng.integers(3)
    if kind == 0:
      distance = _ellipse_distance(yy, xx, rng.uniform(0.2, 0.8, 2) * shape,
                                   rng.uniform(0.2, 0.35) * h, rng.uniform(0.15, 0.3) * w,
                                   rng.uniform(0, math.pi))
    elif kind == 1:
      distance = _box_distance(yy, xx, rng.uniform(0.25, 0.75, 2) * shape,
                               rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w,
                               rng.normal(0, 0.3))
    else:  # a trunk or post crossing the whole image
      distance = np.abs(xx - rng.uniform(0.2, 0.8) * w - rng.normal(0, 0.2) * (yy - h / 2)) \
          - rng.uniform(0.08, 0.15) * w
    base = rng.uniform(0.05, 0.9, 3)
    texture = 1 + 0.12 * _bricks.smooth_noise(rng, shape, rng.uniform(1, 4) * scale)
    gradient = 1 + 0.2 * (xx / w - 0.5) * rng.normal()
    layer = np.clip(base * (texture * gradient)[..., None], 0, 1)
    color, alpha = _over(color, alpha, layer, _soft(distance, 0.6 * scale))
  return _composite(color / np.maximum(alpha, 1e-6)[..., None], alpha), alpha


def _composite(color, alpha):
  def scene(image):
    return image * (1 - alpha[..., None]) + color * alpha[..., None]
  return scene


_SCENES: dict[str, Callable[..., tuple[Scene, np.ndarray]]] = {
    "graffiti": _graffiti_scene,
    "objects": _objects_scene,
    "shadows": _shadow_scene,
    "occlusion": _occlusion_scene,
}
