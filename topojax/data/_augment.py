"""On-device augmentation in the spirit of nnU-Net, as TopoMortar configures it.

`augment_batch` is pure JAX with static shapes: every enabled operation is
computed for every example and kept or dropped with `jnp.where` on a traced
coin flip (operations with probability 0 are left out of the program), so it
jits once per (shapes, config) and runs inside a jitted train step. Each
example draws its own parameters from its own key.

Order (TopoMortar's MONAI pipeline, `config/template_topomortar.yaml`, with
the flips folded into the spatial resample): rotation + zoom + flips (one
affine resample), Gaussian noise, Gaussian smoothing, multiplicative scale,
fixed-mean scale, low-resolution simulation, inverted gamma, gamma, and
TopoMortar's "randhue" hue jitter last. Intensity operations touch images
only; images are clipped to [0, 1] after every operation that can leave it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

_BORDER_MODES = ("nearest", "constant", "mirror", "reflect", "wrap")
# Smoothing kernels are truncated at this many standard deviations (MONAI's
# GaussianFilter default), sized for the largest sigma of the range.
_TRUNCATE = 4.0
_EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Probabilities and ranges of `augment_batch`; defaults are TopoMortar's.

  Every `*_probability` is the chance that an example gets that operation;
  ranges are `(low, high)` of a uniform draw. Frozen and hashable, so it can
  be a static argument of `jax.jit`.

  Attributes:
    rotation_probability: chance of an in-plane rotation.
    rotation_range: rotation angle in radians.
    zoom_probability: chance of an isotropic zoom (> 1 magnifies).
    zoom_range: zoom factor, > 0.
    noise_probability: chance of additive Gaussian noise.
    noise_std_range: noise standard deviation (MONAI draws it in [0, std]).
    smooth_probability: chance of a Gaussian blur.
    smooth_sigma_range: blur sigma in pixels, drawn per axis, > 0.
    scale_probability: chance of multiplying intensities by `1 + factor`.
    scale_range: that factor.
    contrast_probability: chance of scaling about the image mean by
      `1 + factor` (MONAI's fixed-mean scale, range preserved).
    contrast_range: that factor.
    low_resolution_probability: chance of simulating a lower resolution
      (bilinear downsampling by the factor, nearest upsampling back).
    low_resolution_range: that factor, in (0, 1].
    inverted_gamma_probability: chance of gamma on the inverted image.
    gamma_probability: chance of gamma on the image.
    gamma_range: the exponent, > 0 (both gammas keep mean and std, as
      MONAI's `retain_stats=True`).
    flip_probability: chance of mirroring, per spatial axis.
    hue_probability: chance of TopoMortar's "randhue" (RGB images only): hue
      set to one random constant, saturation and value raised by
      `U(0, 1) * saturation_shift` and `U(0, 1) * value_shift`. 0 for the
      supervised framework, 0.5 for "randhue".
    saturation_shift: maximal saturation increase of the hue jitter.
    value_shift: maximal value increase of the hue jitter.
    border_mode: how the spatial resample fills pixels that map outside the
      image, a `jax.scipy.ndimage.map_coordinates` mode. "nearest" repeats
      the edge pixel, like MONAI's rotate ("border") and zoom ("edge")
      padding; "constant" fills 0 (background for labels).
  """

  rotation_probability: float = 0.2
  rotation_range: tuple[float, float] = (-math.pi, math.pi)
  zoom_probability: float = 0.2
  zoom_range: tuple[float, float] = (0.7, 1.4)
  noise_probability: float = 0.1
  noise_std_range: tuple[float, float] = (0.0, 0.1)
  smooth_probability: float = 0.2
  smooth_sigma_range: tuple[float, float] = (0.5, 1.0)
  scale_probability: float = 0.15
  scale_range: tuple[float, float] = (-0.25, 0.25)
  contrast_probability: float = 0.15
  contrast_range: tuple[float, float] = (-0.25, 0.25)
  low_resolution_probability: float = 0.25
  low_resolution_range: tuple[float, float] = (0.5, 1.0)
  inverted_gamma_probability: float = 0.1
  gamma_probability: float = 0.1
  gamma_range: tuple[float, float] = (0.7, 1.5)
  flip_probability: float = 0.5
  hue_probability: float = 0.0
  saturation_shift: float = 0.5
  value_shift: float = 0.5
  border_mode: str = "nearest"

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name.endswith("_probability"):
        if not (isinstance(value, (int, float)) and 0 <= value <= 1):
          raise ValueError(f"`{field.name}` must be a number in [0, 1], got {value!r}.")
      elif field.name.endswith("_range"):
        if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
          raise ValueError(f"`{field.name}` must be a pair (low, high) with low <= high, "
                           f"got {value!r}.")
        object.__setattr__(self, field.name, tuple(float(v) for v in value))  # hashable
    positive = dict(zoom_range=self.zoom_range[0], smooth_sigma_range=self.smooth_sigma_range[0],
                    gamma_range=self.gamma_range[0],
                    low_resolution_range=self.low_resolution_range[0])
    for name, low in positive.items():
      if low <= 0:
        raise ValueError(f"`{name}` must be positive, got {getattr(self, name)!r}.")
    if self.low_resolution_range[1] > 1:
      raise ValueError(f"`low_resolution_range` must lie in (0, 1], got "
                       f"{self.low_resolution_range!r}.")
    if self.noise_std_range[0] < 0:
      raise ValueError(f"`noise_std_range` must be non-negative, got {self.noise_std_range!r}.")
    for name in ("saturation_shift", "value_shift"):
      if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
        raise ValueError(f"`{name}` must be a number >= 0, got {getattr(self, name)!r}.")
    if self.border_mode not in _BORDER_MODES:
      raise ValueError(f"`border_mode` must be one of {_BORDER_MODES}, got {self.border_mode!r}.")


class _Draws:
  """One example's random numbers, named, from a single `uniform` call.

  One call (not a key split per operation) keeps the program small, and the
  fixed layout means switching one operation off leaves the others' draws
  unchanged.
  """

  _NAMES = ("rotate", "angle", "zoom", "zoom_factor", "flip_y", "flip_x", "noise", "noise_std",
            "smooth", "sigma_y", "sigma_x", "scale", "scale_factor", "contrast",
            "contrast_factor", "low_resolution", "low_resolution_factor", "inverted_gamma",
            "inverted_gamma_exponent", "gamma", "gamma_exponent", "hue", "hue_value",
            "saturation_shift", "value_shift")

  def __init__(self, key: jax.Array):
    self._uniforms = jax.random.uniform(key, (len(self._NAMES),))

  def __call__(self, name: str, value_range: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
    """The draw `name`, uniform in `value_range`."""
    low, high = value_range
    return low + (high - low) * self._uniforms[self._NAMES.index(name)]

  def coin(self, name: str, probability: float) -> jax.Array:
    """True with chance `probability`."""
    return self(name) < probability


def _resample_axis(x: jax.Array, coords: jax.Array, axis: int) -> jax.Array:
  """Linear interpolation of `x` along `axis` at `coords` (clamped to the edge)."""
  length = x.shape[axis]
  coords = jnp.clip(coords, 0, length - 1)
  low = jnp.floor(coords)
  frac = coords - low
  low = low.astype(jnp.int32)
  high = jnp.minimum(low + 1, length - 1)
  shape = [1] * x.ndim
  shape[axis] = length
  frac = frac.reshape(shape)
  return jnp.take(x, low, axis) * (1 - frac) + jnp.take(x, high, axis) * frac


def _spatial(draws, image, label, config):
  """Rotation, zoom and flips as one affine map of the sampling grid."""
  height, width = label.shape
  angle = jnp.where(draws.coin("rotate", config.rotation_probability),
                    draws("angle", config.rotation_range), 0.0)
  zoom = jnp.where(draws.coin("zoom", config.zoom_probability),
                   draws("zoom_factor", config.zoom_range), 1.0)
  signs = [jnp.where(draws.coin(name, config.flip_probability), -1.0, 1.0)
           for name in ("flip_y", "flip_x")]
  # Output pixel p reads input c + R(angle) F (p - c) / zoom about the centre
  # c; the identity map is exact in float32, so skipped operations are exact.
  center_y, center_x = (height - 1) / 2, (width - 1) / 2
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  dy, dx = signs[0] * (rows - center_y), signs[1] * (cols - center_x)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  coords = [center_y + (cos * dy - sin * dx) / zoom, center_x + (sin * dy + cos * dx) / zoom]

  def resample(x, order):
    return map_coordinates(x, coords, order=order, mode=config.border_mode)

  image = jax.vmap(lambda channel: resample(channel, 1), in_axes=-1, out_axes=-1)(image)
  if jnp.issubdtype(label.dtype, jnp.floating):
    label = resample(label.astype(jnp.float32), 1).astype(label.dtype)  # like the image
  else:  # class indices: nearest neighbour, so no new classes appear
    label = resample(label.astype(jnp.float32), 0).astype(label.dtype)
  return image, label


def _smooth(draws, image, config):
  """Separable Gaussian blur with a sigma per axis; edge pixels repeat."""
  apply = draws.coin("smooth", config.smooth_probability)
  sigmas = [draws(name, config.smooth_sigma_range) for name in ("sigma_y", "sigma_x")]
  radius = max(1, math.ceil(_TRUNCATE * config.smooth_sigma_range[1]))
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  for axis, sigma in enumerate(sigmas):
    weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
    weights = jnp.where(apply, weights / weights.sum(), (taps == 0).astype(jnp.float32))
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="edge")
    length = image.shape[axis]
    image = sum(weights[t] * jax.lax.slice_in_dim(padded, t, t + length, axis=axis)
                for t in range(2 * radius + 1))
  return image


def _low_resolution(draws, image, config):
  """MONAI's simulated low resolution: bilinear down by `factor`, nearest up."""
  factor = jnp.where(draws.coin("low_resolution", config.low_resolution_probability),
                     draws("low_resolution_factor", config.low_resolution_range), 1.0)
  for axis in (0, 1):
    length = image.shape[axis]
    small = jnp.maximum(jnp.round(length * factor), 1.0)  # downsampled length
    pixels = jnp.arange(length, dtype=jnp.float32)
    # Nearest upsampling reads small pixel floor(p * small / length); bilinear
    # downsampling (half-pixel centres) made that pixel from input coordinate:
    small_index = jnp.minimum(jnp.floor(pixels * small / length), small - 1)
    image = _resample_axis(image, (small_index + 0.5) * length / small - 0.5, axis)
  return image


def _gamma(draws, image, config, *, invert):
  """MONAI's AdjustContrast with `retain_stats`: x -> x ** gamma on the
  min-max normalised image, then the original mean and std restored."""
  name = "inverted_gamma" if invert else "gamma"
  probability = config.inverted_gamma_probability if invert else config.gamma_probability
  apply, gamma = draws.coin(name, probability), draws(f"{name}_exponent", config.gamma_range)
  x = -image if invert else image
  mean, std = x.mean(), x.std()
  low = x.min()
  spread = x.max() - low
  y = ((x - low) / (spread + _EPS)) ** gamma * spread + low
  y = (y - y.mean()) / (y.std() + 1e-8) * std + mean
  y = -y if invert else y
  return jnp.where(apply, jnp.clip(y, 0, 1), image)


def _hue(draws, image, config):
  """TopoMortar's RandHue: constant random hue, saturation and value raised,
  on the min-max normalised RGB image."""
  apply = draws.coin("hue", config.hue_probability)
  low = image.min()
  spread = jnp.maximum(image.max() - low, _EPS)
  rgb = (image - low) / spread
  value = rgb.max(-1)
  chroma = value - rgb.min(-1)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  saturation = jnp.clip(saturation + draws("saturation_shift") * config.saturation_shift, 0, 1)
  value = jnp.clip(value + draws("value_shift") * config.value_shift, 0, 1)
  # HSV -> RGB for channel offsets n = 5, 3, 1 (red, green, blue).
  sector = (jnp.array([5.0, 3.0, 1.0]) + 6 * draws("hue_value")) % 6
  ramp = jnp.clip(jnp.minimum(sector, 4 - sector), 0, 1).reshape(1, 1, 3)
  jittered = value[..., None] - (value * saturation)[..., None] * ramp
  return jnp.where(apply, jnp.clip(jittered * spread + low, 0, 1), image)


def _augment_example(key, image, label, config):
  """All augmentations of one `[H, W, C]` image and its `[H, W]` label.

  Operations whose probability is 0 are left out of the program (a static
  choice on the config, never on a random value).
  """
  draws_key, noise_key = jax.random.split(key)
  draws = _Draws(draws_key)
  if max(config.rotation_probability, config.zoom_probability, config.flip_probability) > 0:
    image, label = _spatial(draws, image, label, config)
  if config.noise_probability > 0:
    noise = draws("noise_std", config.noise_std_range) * jax.random.normal(noise_key, image.shape)
    image = jnp.where(draws.coin("noise", config.noise_probability),
                      jnp.clip(image + noise, 0, 1), image)
  if config.smooth_probability > 0:
    image = _smooth(draws, image, config)
  if config.scale_probability > 0:
    scaled = jnp.clip(image * (1 + draws("scale_factor", config.scale_range)), 0, 1)
    image = jnp.where(draws.coin("scale", config.scale_probability), scaled, image)
  if config.contrast_probability > 0:
    mean = image.mean()
    factor = 1 + draws("contrast_factor", config.contrast_range)
    contrasted = jnp.clip((image - mean) * factor + mean, image.min(), image.max())
    image = jnp.where(draws.coin("contrast", config.contrast_probability), contrasted, image)
  if config.low_resolution_probability > 0:
    image = _low_resolution(draws, image, config)
  if config.inverted_gamma_probability > 0:
    image = _gamma(draws, image, config, invert=True)
  if config.gamma_probability > 0:
    image = _gamma(draws, image, config, invert=False)
  if config.hue_probability > 0:
    image = _hue(draws, image, config)
  return image, label


@functools.partial(jax.jit, static_argnames=("config",))
def augment_batch(key: jax.Array, images: jax.Array, labels: jax.Array,
                  config: AugmentConfig = AugmentConfig()) -> tuple[jax.Array, jax.Array]:
  """Randomly augments a batch of images and labels, independently per example.

  Spatial operations (rotation, zoom, flips) move images and labels together
  through one affine resample (`jax.scipy.ndimage.map_coordinates`): images
  and soft labels bilinearly, integer labels by nearest neighbour, so they
  keep their classes. Pixels mapped from outside the image follow
  `config.border_mode` (default: repeat the edge pixel). Intensity operations
  touch only the images, which stay in [0, 1]. Enabled operations are always
  computed and masked by traced coin flips, so shapes are static and the
  function jits once per shape and config; call it inside the train step with
  a per-step key, e.g.
  `augment_batch(jax.random.fold_in(key, step), images, labels, config)`.
  TopoMortar differences: images stay in [0, 1] (TopoMortar augments
  channel-normalised images), the blur repeats edge pixels, and each axis
  flips with `flip_probability` (nnU-Net) where MONAI's RandAxisFlip flips
  one random axis.

  Args:
    key: a PRNG key; example k uses `jax.random.split(key, B)[k]`.
    images: `[B, H, W, C]` floating images in [0, 1] (C == 3 when
      `config.hue_probability > 0`).
    labels: `[B, H, W]` integer class indices, or floating soft labels in
      [0, 1].
    config: an `AugmentConfig` (static).

  Returns:
    `(images, labels)`: `[B, H, W, C]` float32 in [0, 1] and `[B, H, W]` of
    `labels.dtype`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> images, labels = jnp.full((2, 16, 12, 3), 0.5), jnp.ones((2, 16, 12), jnp.int32)
    >>> x, y = augment_batch(jax.random.key(0), images, labels,
    ...                      AugmentConfig(hue_probability=0.5))
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((2, 16, 12, 3), dtype('float32'), (2, 16, 12), dtype('int32'))
    >>> bool((x >= 0).all() & (x <= 1).all())
    True
  """
  if not isinstance(config, AugmentConfig):
    raise ValueError(f"`config` must be an AugmentConfig, got {type(config).__name__}.")
  is_typed_key = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
  if not (is_typed_key or (key.dtype == jnp.uint32 and key.shape == (2,))):
    raise ValueError(f"`key` must be a single PRNG key (jax.random.key), got "
                     f"{key.dtype} of shape {key.shape}.")
  if images.ndim != 4:
    raise ValueError(f"`images` must be [B, H, W, C], got shape {images.shape}.")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"`images` must have a floating dtype, got {images.dtype}.")
  if config.hue_probability > 0 and images.shape[-1] != 3:
    raise ValueError(f"`images` must have 3 (RGB) channels for hue jitter, got shape "
                     f"{images.shape}.")
  if labels.shape != images.shape[:3]:
    raise ValueError(f"`labels` must have shape images.shape[:3] = {images.shape[:3]}, "
                     f"got {labels.shape}.")
  if not (jnp.issubdtype(labels.dtype, jnp.integer) or jnp.issubdtype(labels.dtype, jnp.floating)
          or labels.dtype == jnp.bool_):
    raise ValueError(f"`labels` must have an integer or floating dtype, got {labels.dtype}.")
  keys = jax.random.split(key, images.shape[0])
  augment = functools.partial(_augment_example, config=config)
  return jax.vmap(augment)(keys, images.astype(jnp.float32), labels)
