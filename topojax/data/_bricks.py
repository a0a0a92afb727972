"""Deterministic synthetic brick walls: TopoMortar-like images and mortar labels.

A wall is generated in two independent stages, each from its own random stream:
`sample_layout` draws the geometry (running-bond courses, mortar joints, one id
per brick) and `render_wall` paints an RGB photo of a given layout. Keeping them
apart lets label variants (noisy or pseudo labels derived from the clean
layout) and out-of-distribution appearances (colours, shadows, occlusion) be
added without changing the geometry of a wall. Two hooks serve the latter: the
`min_angle` and `perspective` config fields (steeper, obliquely seen walls;
both off by default) and the `scene` argument of `render_wall` (paint, shadows
or objects composited into the lit scene before the camera blurs it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from topojax._src import checks

Range = tuple[float, float]
Color = tuple[float, float, float]

# Fields measured in pixels; `BrickWallConfig.resized` scales these together.
# The optical blur is a property of the camera, not of the wall, so it stays.
_LENGTH_FIELDS = ("brick_height", "brick_width", "mortar_thickness",
                  "edge_roughness", "texture_scale")


@dataclasses.dataclass(frozen=True)
class BrickWallConfig:
  """Parameters of the synthetic brick-wall generator.

  Lengths are in pixels; the defaults mimic TopoMortar (red running-bond
  bricks, lighter grey-beige mortar, ~30 % mortar pixels) at 64 x 64, where
  mortar is only 1-3 px thick so that its topology is easy to break. Use
  `resized` to get the same look at another image size. Ranges `(low, high)`
  are sampled uniformly once per wall.

  Attributes:
    height: image height H.
    width: image width W.
    brick_height: range of the brick face height (a course is brick height +
      mortar thickness).
    brick_width: range of the brick face width (must exceed the thickest
      mortar).
    mortar_thickness: range of the joint thickness, >= 1 px so that every
      joint is 8-connected on the pixel grid.
    max_angle: walls are rotated by a uniform angle in [-max_angle, max_angle]
      degrees.
    joint_jitter: each vertical joint moves by up to this fraction of the brick
      pitch, so the running bond is irregular; in [0, 0.25].
    edge_roughness: the edges of the mortar bulge out by up to this many
      pixels (smooth noise); roughness only thickens joints, never breaks them.
    brick_color_low, brick_color_high: per-channel RGB range of a wall's
      brick colour.
    mortar_color_low, mortar_color_high: per-channel RGB range of a wall's
      mortar colour.
    brick_color_jitter: standard deviation of the per-brick relative
      brightness variation (per-channel hue variation is half of it).
    texture_strength: relative amplitude of the per-pixel texture (smooth
      noise at two scales).
    texture_scale: correlation length of the fine texture and edge roughness.
    edge_shading: darkening of recessed mortar next to bricks (and of brick
      edges, by half as much), as a fraction of the colour.
    lighting_strength: amplitude of the smooth lighting gradient, vignetting
      and exposure change.
    blur_sigma: Gaussian optical blur (pixels), 0 for none.
    noise_sigma: standard deviation of additive Gaussian sensor noise.
    min_angle: smallest rotation magnitude in degrees: the angle is drawn from
      `[-max_angle, -min_angle] U [min_angle, max_angle]`; 0 (the default)
      keeps the plain uniform draw.
    perspective: strength in [0, 1) of an oblique view of the wall (a
      projective warp towards a random direction; the wall recedes on one
      side); 0 (the default) is a frontal view. The warp never shrinks wall
      lengths, so joints stay at least `mortar_thickness` pixels thick.
  """

  height: int = 64
  width: int = 64
  brick_height: Range = (4.5, 7.5)
  brick_width: Range = (12.0, 22.0)
  mortar_thickness: Range = (1.0, 2.0)
  max_angle: float = 3.0
  joint_jitter: float = 0.08
  edge_roughness: float = 0.3
  brick_color_low: Color = (0.50, 0.24, 0.17)
  brick_color_high: Color = (0.78, 0.50, 0.42)
  mortar_color_low: Color = (0.64, 0.58, 0.52)
  mortar_color_high: Color = (0.92, 0.86, 0.80)
  brick_color_jitter: float = 0.08
  texture_strength: float = 0.07
  texture_scale: float = 0.6
  edge_shading: float = 0.25
  lighting_strength: float = 0.2
  blur_sigma: float = 0.4
  noise_sigma: float = 0.02
  min_angle: float = 0.0
  perspective: float = 0.0

  def __post_init__(self):
    checks.check_positive_int(self.height, "height")
    checks.check_positive_int(self.width, "width")
    for name in ("brick_height", "brick_width", "mortar_thickness"):
      _check_range(self, name)
    if self.mortar_thickness[0] < 1:
      raise ValueError(
          "`mortar_thickness` must be >= 1 px (thinner joints break apart on "
          f"the pixel grid), got {self.mortar_thickness}.")
    if self.brick_height[0] < 1:
      raise ValueError(f"`brick_height` must be >= 1 px, got {self.brick_height}.")
    if self.brick_width[0] <= self.mortar_thickness[1]:
      raise ValueError(
          "`brick_width` must exceed the thickest mortar "
          f"(mortar_thickness[1] = {self.mortar_thickness[1]}), got {self.brick_width}.")
    if not 0 <= self.joint_jitter <= 0.25:
      raise ValueError(f"`joint_jitter` must lie in [0, 0.25], got {self.joint_jitter}.")
    for name in ("max_angle", "edge_roughness", "brick_color_jitter",
                 "texture_strength", "edge_shading", "lighting_strength",
                 "blur_sigma", "noise_sigma", "min_angle", "perspective"):
      _check_non_negative(self, name)
    if self.max_angle >= 45:
      raise ValueError(f"`max_angle` must be < 45 degrees, got {self.max_angle}.")
    if self.min_angle > self.max_angle:
      raise ValueError(f"`min_angle` must be <= max_angle ({self.max_angle}), "
                       f"got {self.min_angle}.")
    if self.perspective >= 1:
      raise ValueError(f"`perspective` must be < 1, got {self.perspective}.")
    if self.edge_shading >= 1:
      raise ValueError(f"`edge_shading` must be < 1, got {self.edge_shading}.")
    if not self.texture_scale > 0:
      raise ValueError(f"`texture_scale` must be > 0, got {self.texture_scale}.")
    for part in ("brick", "mortar"):
      low, high = f"{part}_color_low", f"{part}_color_high"
      for name in (low, high):
        color = getattr(self, name)
        if len(color) != 3 or not all(0 <= c <= 1 for c in color):
          raise ValueError(f"`{name}` must be 3 RGB values in [0, 1], got {color}.")
      if any(lo > hi for lo, hi in zip(getattr(self, low), getattr(self, high))):
        raise ValueError(f"`{low}` must be <= `{high}` per channel.")

  def resized(self, height: int, width: int) -> BrickWallConfig:
    """This config at another image size, all pixel lengths scaled alike.

    Lengths scale by `min(height, width) / min(self.height, self.width)`; the
    mortar stays at least 1 px thick.

    Examples:
      >>> BrickWallConfig().resized(512, 512).mortar_thickness
      (8.0, 16.0)
    """
    scale = min(height, width) / min(self.height, self.width)
    lengths = {name: _scale(getattr(self, name), scale) for name in _LENGTH_FIELDS}
    lo, hi = lengths["mortar_thickness"]
    lengths["mortar_thickness"] = (max(lo, 1.0), max(hi, 1.0))
    return dataclasses.replace(self, height=height, width=width, **lengths)


def _scale(value, scale):
  if isinstance(value, tuple):
    return tuple(v * scale for v in value)
  return value * scale


def _check_range(config, name):
  value = getattr(config, name)
  if len(value) != 2 or not 0 < value[0] <= value[1]:
    raise ValueError(f"`{name}` must be a range (low, high) with 0 < low <= high, got {value}.")


def _check_non_negative(config, name):
  value = getattr(config, name)
  if not value >= 0:
    raise ValueError(f"`{name}` must be >= 0, got {value}.")


class WallLayout(NamedTuple):
  """Geometry of one wall.

  Attributes:
    mortar: `[H, W]` bool, the clean mortar label.
    brick_id: `[H, W]` int32 in [0, num_bricks): the brick whose cell each
      pixel lies in (defined under mortar too, for rendering and for deriving
      label variants).
    num_bricks: size of the brick-id table (not all ids need be visible).
  """

  mortar: np.ndarray
  brick_id: np.ndarray
  num_bricks: int


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
  """Gaussian-smoothed white noise with unit variance, `[*shape]` float64.

  Filtered in the Fourier domain (periodic), so the cost does not grow with
  `sigma`; dividing by the filter's exact gain keeps the variance at 1 without
  depending on the sample.
  """
  fy = np.fft.fftfreq(shape[0])[:, None]
  fx = np.fft.fftfreq(shape[1])[None, :]
  gain = np.exp(-2 * (math.pi * sigma) ** 2 * (fy**2 + fx**2))
  std = math.sqrt(np.mean(gain**2))
  half = gain[:, : shape[1] // 2 + 1]  # rfft keeps the non-negative x frequencies
  white = rng.standard_normal(shape)
  return np.fft.irfft2(np.fft.rfft2(white) * half, s=shape) / std


def sample_layout(rng: np.random.Generator, config: BrickWallConfig) -> WallLayout:
  """Samples a running-bond wall: rotated courses with jittered vertical joints.

  Each pixel centre is mapped to wall coordinates (u along the courses, v
  across them). Joints are bands of thickness t >= 1 in these coordinates; as
  the rotation is an isometry and |angle| < 45 degrees, every row/column
  crosses each band in at least one pixel, so the joints are 8-connected.
  Fragments cut off by the image border (a joint clipping a corner) are given
  to the bricks, so the label is one 8-connected component.

  Args:
    rng: the wall's layout stream.
    config: generator parameters.

  Returns:
    The wall's `WallLayout`.
  """
  h, w = config.height, config.width
  brick_h = rng.uniform(*config.brick_height)
  brick_w = rng.uniform(*config.brick_width)
  t = rng.uniform(*config.mortar_thickness)
  degrees = rng.uniform(-config.max_angle, config.max_angle)
  if config.min_angle > 0:  # fold |angle| into [min_angle, max_angle], keeping its sign
    spread = config.max_angle - config.min_angle
    degrees = math.copysign(config.min_angle + spread * abs(degrees) / config.max_angle,
                            degrees)
  angle = math.radians(degrees)
  pitch_v, pitch_u = brick_h + t, brick_w + t
  y, x = np.mgrid[:h, :w]
  y = y - (h - 1) / 2
  x = x - (w - 1) / 2
  if config.perspective > 0:
    x, y = _oblique_view(rng, x, y, config.perspective)
  cos, sin = math.cos(angle), math.sin(angle)
  u = x * cos + y * sin + rng.uniform(0, pitch_u)
  v = -x * sin + y * cos + rng.uniform(0, pitch_v)

  # Roughness only widens a joint (each edge bulges out by 0..edge_roughness),
  # so a joint never gets thinner than t and never breaks.
  def bulge():
    n = smooth_noise(rng, (h, w), 3 * config.texture_scale)
    return config.edge_roughness * np.clip(0.5 + 0.5 * n, 0, 1)
  lo_edge, hi_edge = bulge(), bulge()

  def in_joint(d):  # d: signed distance from a joint's centre line
    return (d >= -t / 2 - lo_edge) & (d < t / 2 + hi_edge)

  course = np.floor(v / pitch_v).astype(np.int64)
  dv = v - course * pitch_v  # in [0, pitch_v); joints are centred on 0 and pitch_v
  course -= course.min()
  horizontal = in_joint(dv) | in_joint(dv - pitch_v)

  # Running bond: odd courses shift by half a brick (+- a per-course jitter);
  # each vertical joint moves by its own jitter, so bricks vary in length.
  num_courses = course.max() + 1
  jitter = config.joint_jitter * pitch_u
  shift = ((np.arange(num_courses) % 2) * 0.5 * pitch_u
           + rng.uniform(-jitter, jitter, num_courses))
  uc = u + shift[course]
  cell = np.floor(uc / pitch_u).astype(np.int64)
  offset = cell.min() - 1  # column 0 of the table is the brick left of the leftmost cell
  du = uc - cell * pitch_u  # in [0, pitch_u)
  cell -= offset
  num_columns = cell.max() + 2
  joint = rng.uniform(-jitter, jitter, (num_courses, num_columns))
  d_left = du - joint[course, cell]
  d_right = du - pitch_u - joint[course, cell + 1]
  vertical = in_joint(d_left) | in_joint(d_right)
  column = cell - (d_left < 0) + (d_right >= 0)

  mortar = _largest_component(horizontal | vertical)
  brick_id = (course * num_columns + column).astype(np.int32)
  return WallLayout(mortar, brick_id, int(num_courses * num_columns))


def _oblique_view(rng, x, y, strength):
  """Wall coordinates of pixel offsets `(x, y)` when the wall is seen obliquely.

  The projective map `p / (1 + g . p)` (a plane tilted away from the camera
  along `g`) with |g . p| <= strength * U(0.5, 1) over the image, rescaled so
  that the map's largest local stretch is 1: wall lengths never shrink in
  pixels (thin joints stay >= 1 px) and recede to normal size on the far side.
  """
  direction = rng.uniform(0, 2 * math.pi)
  half_diagonal = math.hypot(x.max(), y.max()) or 1.0
  gain = strength * rng.uniform(0.5, 1) / half_diagonal
  denominator = 1 + gain * (x * math.cos(direction) + y * math.sin(direction))
  wall_x, wall_y = x / denominator, y / denominator
  # Largest singular value of the Jacobian d = 1 + g.p, J = (d I - p g^T) / d^2,
  # from the closed form for a 2 x 2 matrix.
  gx, gy = gain * math.cos(direction), gain * math.sin(direction)
  a, b = (denominator - x * gx) / denominator**2, -x * gy / denominator**2
  c, d = -y * gx / denominator**2, (denominator - y * gy) / denominator**2
  frob, det = a * a + b * b + c * c + d * d, np.abs(a * d - b * c)
  stretch = np.sqrt((frob + np.sqrt(np.maximum(frob * frob - 4 * det * det, 0))) / 2)
  scale = stretch.max()
  return wall_x / scale, wall_y / scale


_EIGHT = np.ones((3, 3), bool)


def _largest_component(mask: np.ndarray) -> np.ndarray:
  """Keeps the largest 8-connected component of a boolean mask."""
  components, count = ndimage.label(mask, structure=_EIGHT)
  if count <= 1:
    return mask
  sizes = np.bincount(components.ravel())
  sizes[0] = 0
  return components == np.argmax(sizes)


def _sample_color(rng, low, high):
  """A colour in the box [low, high], channels correlated so hues stay natural."""
  low, high = np.asarray(low), np.asarray(high)
  t = np.clip(rng.uniform() + rng.uniform(-0.15, 0.15, 3), 0, 1)
  return low + (high - low) * t


def render_wall(rng: np.random.Generator, layout: WallLayout,
                config: BrickWallConfig, *,
                scene: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
  """Paints a photo of a layout.

  Per-brick colours, two-scale texture, shaded (recessed) mortar edges, a
  smooth lighting gradient with vignetting, optical blur and sensor noise.

  Args:
    rng: the wall's appearance stream.
    layout: the wall's geometry.
    config: generator parameters.
    scene: optional hook adding things in front of or on the wall (paint,
      cast shadows, objects): called with the lit `[H, W, 3]` float64 image
      before the optical blur and sensor noise, which then apply to the
      whole scene; returns an image of the same shape. It should draw from
      its own random stream, so that the wall itself does not change.

  Returns:
    `[H, W, 3]` float32 image in [0, 1].
  """
  h, w = layout.mortar.shape
  mortar = layout.mortar.astype(np.float64)
  brick_color = _sample_color(rng, config.brick_color_low, config.brick_color_high)
  mortar_color = _sample_color(rng, config.mortar_color_low, config.mortar_color_high)
  jitter = config.brick_color_jitter
  per_brick = brick_color * (
      1 + jitter * rng.standard_normal((layout.num_bricks, 1))
      + 0.5 * jitter * rng.standard_normal((layout.num_bricks, 3)))
  image = np.where(layout.mortar[..., None], mortar_color, per_brick[layout.brick_id])

  # Texture: bricks are blotchy (coarse), mortar is sandy (fine).
  fine = smooth_noise(rng, (h, w), config.texture_scale)
  coarse = smooth_noise(rng, (h, w), 6 * config.texture_scale)
  texture = np.where(layout.mortar, fine + 0.5 * coarse, 0.5 * fine + coarse)
  shade = 1 + config.texture_strength * texture

  # Recessed mortar is shadowed next to the bricks; brick edges darken a little.
  near = ndimage.gaussian_filter(mortar, 2 * config.texture_scale)
  shade *= 1 - config.edge_shading * np.where(layout.mortar, 1 - near, 0.5 * near)

  # Lighting: exposure, a linear gradient in a random direction, vignetting.
  yy, xx = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
  s = config.lighting_strength
  direction = rng.uniform(0, 2 * math.pi)
  light = (1 + s * rng.uniform(-0.5, 0.5)
           + s * rng.uniform(0, 1) * (xx * math.cos(direction) + yy * math.sin(direction))
           - 0.5 * s * rng.uniform(0, 1) * (xx**2 + yy**2))
  image = image * (shade * light)[..., None]
  if scene is not None:
    image = np.asarray(scene(image), np.float64)
    if image.shape != (h, w, 3):
      raise ValueError(f"`scene` must return an image of shape {(h, w, 3)}, got {image.shape}.")

  if config.blur_sigma > 0:
    image = ndimage.gaussian_filter(image, (config.blur_sigma, config.blur_sigma, 0))
  image += config.noise_sigma * rng.standard_normal(image.shape)
  return np.clip(image, 0, 1).astype(np.float32)


def brick_walls(num: int, *, seed: int,
                config: BrickWallConfig = BrickWallConfig()) -> tuple[np.ndarray, np.ndarray]:
  """Generates `num` synthetic brick walls and their mortar labels.

  Wall i is drawn from its own streams seeded by `(seed, i)` (one for the
  layout, one for the appearance), so it does not depend on `num`: a dataset
  can be extended or sliced reproducibly, and appearance-only config changes
  keep the geometry.

  Args:
    num: number of walls N >= 1.
    seed: non-negative integer seed.
    config: generator parameters (image size included).

  Returns:
    `(images, labels)`: `[N, H, W, 3]` float32 in [0, 1] and `[N, H, W]` int32
    in {0, 1} (1 = mortar).

  Examples:
    >>> images, labels = brick_walls(2, seed=0)
    >>> images.shape, images.dtype, labels.shape, labels.dtype
    ((2, 64, 64, 3), dtype('float32'), (2, 64, 64), dtype('int32'))
    >>> bool((brick_walls(3, seed=0)[1][:2] == labels).all())
    True
  """
  num = checks.check_positive_int(num, "num")
  seed = checks.check_positive_int(seed, "seed", allow_zero=True)
  if not isinstance(config, BrickWallConfig):
    raise ValueError(f"`config` must be a BrickWallConfig, got {type(config).__name__}.")
  images = np.empty((num, config.height, config.width, 3), np.float32)
  labels = np.empty((num, config.height, config.width), np.int32)
  for i in range(num):
    layout_seq, render_seq = np.random.SeedSequence([seed, i]).spawn(2)
    layout = sample_layout(np.random.default_rng(layout_seq), config)
    images[i] = render_wall(np.random.default_rng(render_seq), layout, config)
    labels[i] = layout.mortar
  return images, labels
