"""A small 2D UNet in Flax NNX (Ronneberger et al., MICCAI 2015).

Channels-last `[B, H, W, C_in]` -> logits `[B, H, W, num_classes]`. Each level
is two conv-GroupNorm-ReLU layers; down with 2x2 max-pooling, up with a 2x2
transposed convolution, and the encoder's features joined by concatenation.

GroupNorm rather than BatchNorm: it normalises each example on its own, so the
model has no batch statistics to carry, train and eval behave the same, and a
per-example loss does not depend on how the batch is split across devices.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _num_groups(features: int, max_groups: int = 8) -> int:
  """The largest group count <= max_groups that divides `features`."""
  return next(g for g in range(min(max_groups, features), 0, -1) if features % g == 0)


class ConvBlock(nnx.Module):
  """Two 3x3 conv -> GroupNorm -> ReLU layers."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    groups = _num_groups(out_features)
    # No conv bias: GroupNorm's shift makes it redundant.
    self.conv1 = nnx.Conv(in_features, out_features, (3, 3), use_bias=False, rngs=rngs)
    self.norm1 = nnx.GroupNorm(out_features, num_groups=groups, rngs=rngs)
    self.conv2 = nnx.Conv(out_features, out_features, (3, 3), use_bias=False, rngs=rngs)
    self.norm2 = nnx.GroupNorm(out_features, num_groups=groups, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.norm1(self.conv1(x)))
    return nnx.relu(self.norm2(self.conv2(x)))


def _max_pool_2x2(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))


class UNet(nnx.Module):
  """2D UNet: `[B, H, W, in_channels]` -> logits `[B, H, W, num_classes]`.

  Args:
    in_channels: channels of the input image.
    num_classes: output channels (logits; 2 for binary segmentation).
    features: channels per level, finest first; `len(features) - 1` poolings,
      so H and W must be divisible by `2 ** (len(features) - 1)`.
    rngs: parameter initialisation keys.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from topojax.models import UNet
    >>> model = UNet(3, 2, features=(4, 8), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((1, 16, 16, 3))).shape
    (1, 16, 16, 2)
  """

  def __init__(self, in_channels: int, num_classes: int, *,
               features: Sequence[int] = (16, 32, 64), rngs: nnx.Rngs):
    features = tuple(int(f) for f in features)
    if not features or any(f <= 0 for f in features):
      raise ValueError(f"`features` must be non-empty positive ints, got {features}.")
    if in_channels <= 0 or num_classes <= 0:
      raise ValueError(
          f"`in_channels` and `num_classes` must be positive, got {in_channels} "
          f"and {num_classes}.")
    self.in_channels = in_channels
    self.num_levels = len(features)
    encoder_in = (in_channels,) + features[:-1]
    self.encoder = nnx.List([ConvBlock(i, o, rngs=rngs)
                             for i, o in zip(encoder_in, features)])
    # Decoder, coarsest first: upsample to the finer width, concat skip, block.
    coarse_to_fine = list(zip(features[:0:-1], features[-2::-1]))
    self.upsample = nnx.List([
        nnx.ConvTranspose(coarse, fine, (2, 2), strides=(2, 2), rngs=rngs)
        for coarse, fine in coarse_to_fine])
    self.decoder = nnx.List([ConvBlock(2 * fine, fine, rngs=rngs)
                             for _, fine in coarse_to_fine])
    self.head = nnx.Conv(features[0], num_classes, (1, 1), rngs=rngs)

  def _check_input(self, x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(
          f"UNet expects channels-last [B, H, W, {self.in_channels}] input, got "
          f"shape {x.shape}.")
    factor = 2 ** (self.num_levels - 1)
    height, width = x.shape[1:3]
    if height % factor or width % factor:
      raise ValueError(
          f"UNet with {self.num_levels} levels needs H and W divisible by "
          f"2**{self.num_levels - 1} = {factor}, got H, W = {height}, {width}.")

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    self._check_input(x)
    skips = []
    for level, block in enumerate(self.encoder):
      if level:
        x = _max_pool_2x2(x)
      x = block(x)
      skips.append(x)
    for up, block, skip in zip(self.upsample, self.decoder, skips[-2::-1]):
      x = block(jnp.concatenate([up(x), skip], axis=-1))
    return self.head(x)
