r"""The differentiable ECT as a Flax NNX layer, and the DECT classifier.

Röell and Rieck, "Differentiable Euler Characteristic Transforms for Shape
Classification" (ICLR 2024; github.com/aidos-lab/dect): an ECT layer turns a
shape into a `[D, T]` image (one row per direction, one column per
threshold), and a small CNN classifies that image (the paper's
`EctCnnModel`: Conv 1 -> 8, max pool, Conv 8 -> 16, max pool, an MLP).

The ECT itself is `topojax.ect.ect` (point clouds, graphs, meshes) or
`topojax.ect.image_ect` (pixel grids); this module only holds what is
learned: the directions (stored unconstrained, used through
`topojax.ect.project_to_sphere`, so they stay unit vectors whatever the
optimiser does) and optionally the sigmoid scale, kept above a floor as
`min_scale + softplus(raw)` so that the static band width computed at the
floor stays valid (smaller scales need wider bands) for every value the
optimiser reaches.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from topojax import ect as ect_ops

DIRECTION_INITS = ("uniform", "circle")
NORMALIZATIONS = ("none", "direction_max", "global_max")
INPUTS = ("points", "image")


def _inverse_softplus(y: float) -> float:
  """`softplus(_inverse_softplus(y)) == y` for y > 0 (stable for large y)."""
  return float(y + np.log(-np.expm1(-y)))


class ECTLayer(nnx.Module):
  r"""Differentiable Euler characteristic transform with learnable directions.

  `x` `[B, N, d]` (padded point clouds, optional `point_mask` `[B, N]` and
  simplices `[B, E, k + 1]`) or images `[B, *spatial]` (`input="image"`,
  `image_ect`) -> ECT images `[B, D, T]`, with `T` thresholds evenly spaced
  in `[-radius, radius]` (`linear_thresholds`; shapes scaled into the unit
  ball and `radius=1` cover everything).

  Args:
    dim: ambient dimension d of the points (2 or 3 for images: `ndim`).
    num_directions: D.
    num_thresholds: T.
    radius: the thresholds span `[-radius, radius]`.
    directions: initial directions: "uniform" (seeded, uniform on the
      sphere), "circle" (evenly spaced, `dim == 2` only) or a `[D, dim]`
      array (normalised; overrides `num_directions`).
    learn_directions: whether the directions are an `nnx.Param`.
    scale: the sigmoid scale s (None: the exact, step-function ECT, which has
      no gradient in the points or directions).
    learn_scale: train the scale, kept at `min_scale + softplus(raw) >=
      min_scale`; starts at `scale`.
    min_scale: the floor of a learnable scale (default `scale / 4`); the band
      width is computed there.
    normalize: "none"; "direction_max": each direction's curve divided by
      its largest absolute value; "global_max": each ECT image divided by its
      largest absolute value (a shape's size in points stops mattering).
    input: "points" (`topojax.ect.ect`) or "image" (`topojax.ect.image_ect`).
    weighted: images only: the weighted ECT of grey levels instead of the
      ECT of the nonzero pixels.
    rngs: draws the "uniform" directions (`rngs.params()`).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from topojax.models import ECTLayer
    >>> layer = ECTLayer(2, num_directions=4, num_thresholds=5, scale=10.0,
    ...                  learn_scale=True, rngs=nnx.Rngs(0))
    >>> x = jnp.array([[[0.0, 0.0], [0.5, 0.5], [9.0, 9.0]]])  # the last point is padding
    >>> layer(x, point_mask=jnp.array([[True, True, False]])).shape
    (1, 4, 5)
    >>> round(float(layer.current_scale()), 4)
    10.0
  """

  def __init__(self, dim: int, *, num_directions: int = 32, num_thresholds: int = 32,
               radius: float = 1.0, directions: str | jax.Array = "uniform",
               learn_directions: bool = True, scale: float | None = 10.0,
               learn_scale: bool = False, min_scale: float | None = None,
               normalize: str = "none", input: str = "points",  # noqa: A002
               weighted: bool = False, rngs: nnx.Rngs):
    if normalize not in NORMALIZATIONS:
      raise ValueError(f"`normalize` must be one of {NORMALIZATIONS}, got {normalize!r}.")
    if input not in INPUTS:
      raise ValueError(f"`input` must be one of {INPUTS}, got {input!r}.")
    if input == "image" and dim not in (2, 3):
      raise ValueError(f"Images are 2-D or 3-D (`dim`), got dim={dim}.")
    if weighted and input != "image":
      raise ValueError("`weighted` is for images (`input='image'`).")
    if isinstance(directions, str):
      if directions == "uniform":
        v = ect_ops.uniform_directions(rngs.params(), num_directions, dim)
      elif directions == "circle":
        if dim != 2:
          raise ValueError(f"`directions='circle'` needs dim == 2, got dim={dim}.")
        v = ect_ops.circle_directions(num_directions)
      else:
        raise ValueError(f"`directions` must be one of {DIRECTION_INITS} or an array, "
                         f"got {directions!r}.")
    else:
      v = ect_ops.project_to_sphere(jnp.asarray(directions, jnp.float32))
      if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(f"`directions` must be [D, {dim}], got shape {v.shape}.")
    self.dim, self.input, self.weighted, self.normalize = dim, input, weighted, normalize
    self.raw_directions = (nnx.Param if learn_directions else nnx.Variable)(v)
    thresholds = ect_ops.linear_thresholds(radius, num_thresholds)
    self.thresholds = nnx.Variable(thresholds)
    self.learn_scale = learn_scale
    if scale is None:
      if learn_scale:
        raise ValueError("`learn_scale` needs an initial `scale`.")
      self.band_width = None
    else:
      if not scale > 0:
        raise ValueError(f"`scale` must be > 0, got {scale}.")
      floor = scale / 4 if min_scale is None else min_scale
      if learn_scale:
        if not 0 < floor < scale:
          raise ValueError(f"`min_scale` must be in (0, scale={scale}), got {floor}.")
        self.min_scale = float(floor)
        self.raw_scale = nnx.Param(jnp.float32(_inverse_softplus(scale - floor)))
      else:
        floor = scale
        self.fixed_scale = float(scale)
      # Static: the widest band any reachable scale needs.
      # (From NumPy thresholds: the layer may be built under `nnx.eval_shape`.)
      self.band_width = ect_ops.band_width(np.linspace(-radius, radius, num_thresholds), floor)

  @property
  def num_directions(self) -> int:
    return self.raw_directions.shape[0]

  @property
  def num_thresholds(self) -> int:
    return self.thresholds.shape[0]

  def directions(self) -> jax.Array:
    """The unit directions `[D, dim]` in use."""
    return ect_ops.project_to_sphere(self.raw_directions[...])

  def current_scale(self) -> jax.Array | float | None:
    """The sigmoid scale in use (None for the exact ECT)."""
    if self.band_width is None:
      return None
    if self.learn_scale:
      return self.min_scale + jax.nn.softplus(self.raw_scale[...])
    return self.fixed_scale

  def __call__(self, x: jax.Array, *simplices: jax.Array,
               point_mask: jax.Array | None = None) -> jax.Array:
    common = dict(directions=self.directions(), thresholds=self.thresholds[...],
                  scale=self.current_scale(), band_width=self.band_width)
    if self.input == "image":
      if simplices or point_mask is not None:
        raise ValueError("Images take no simplices or `point_mask`.")
      if x.ndim != self.dim + 1:
        raise ValueError(f"Expects images [B, *spatial] with {self.dim} spatial axes, got "
                         f"shape {x.shape}.")
      curves = ect_ops.image_ect(x, ndim=self.dim, weighted=self.weighted, **common)
    else:
      if x.ndim != 3 or x.shape[-1] != self.dim:
        raise ValueError(f"Expects point clouds [B, N, {self.dim}], got shape {x.shape}.")
      curves = ect_ops.ect(x, *simplices, point_mask=point_mask, **common)
    if self.normalize == "none":
      return curves
    axes = (-1,) if self.normalize == "direction_max" else (-2, -1)
    peak = jnp.max(jnp.abs(curves), axis=axes, keepdims=True)
    return curves / jnp.maximum(peak, jnp.asarray(1e-6, curves.dtype))


class ECTClassifier(nnx.Module):
  """The DECT classifier: `ECTLayer` -> `[B, D, T, 1]` image -> small CNN -> logits.

  The paper's `EctCnnModel`: each conv block is a 3 x 3 convolution (SAME
  padding), ReLU and 2 x 2 max pooling (8 then 16 channels by default); the
  flattened features go through an MLP with ReLU hidden layers to
  `num_classes` logits.

  Args:
    dim: ambient dimension of the points (or of the images).
    num_classes: number of logits.
    features: channels of the conv blocks.
    hidden: widths of the MLP's hidden layers.
    rngs: initialises the directions and the weights.
    **ect_options: `ECTLayer`'s keyword arguments (`num_directions`,
      `num_thresholds`, `scale`, `learn_scale`, `normalize`, `input`, ...).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from topojax.models import ECTClassifier
    >>> model = ECTClassifier(3, 4, num_directions=8, num_thresholds=8, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 10, 3)), point_mask=jnp.ones((2, 10), bool)).shape
    (2, 4)
  """

  def __init__(self, dim: int, num_classes: int, *, features: Sequence[int] = (8, 16),
               hidden: Sequence[int] = (64,), rngs: nnx.Rngs, **ect_options):
    if any(f <= 0 for f in (num_classes, *features, *hidden)):
      raise ValueError(f"`num_classes`, `features` and `hidden` must be positive, got "
                       f"{num_classes}, {features}, {hidden}.")
    self.ect = ECTLayer(dim, rngs=rngs, **ect_options)
    channels = (1, *features)
    self.convs = nnx.List([nnx.Conv(i, o, (3, 3), padding="SAME", rngs=rngs)
                           for i, o in zip(channels[:-1], channels[1:])])
    rows, cols = self.ect.num_directions, self.ect.num_thresholds
    for _ in features:
      rows, cols = rows // 2, cols // 2
    if rows < 1 or cols < 1:
      raise ValueError(f"{len(features)} pooling steps need num_directions and num_thresholds "
                       f">= {2 ** len(features)}, got {self.ect.num_directions} x "
                       f"{self.ect.num_thresholds}.")
    widths = (rows * cols * channels[-1], *hidden, num_classes)
    self.linears = nnx.List([nnx.Linear(i, o, rngs=rngs) for i, o in zip(widths[:-1], widths[1:])])

  def features(self, x: jax.Array, *simplices: jax.Array,
               point_mask: jax.Array | None = None) -> jax.Array:
    """The ECT images `[B, D, T]` the CNN sees."""
    return self.ect(x, *simplices, point_mask=point_mask)

  def __call__(self, x: jax.Array, *simplices: jax.Array,
               point_mask: jax.Array | None = None) -> jax.Array:
    h = self.features(x, *simplices, point_mask=point_mask)[..., None]
    for conv in self.convs:
      h = nnx.max_pool(nnx.relu(conv(h)), (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    *hidden, last = self.linears
    for linear in hidden:
      h = nnx.relu(linear(h))
    return last(h)
