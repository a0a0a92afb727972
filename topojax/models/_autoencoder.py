"""An MLP autoencoder in Flax NNX, the topological autoencoder's model.

Moor et al.'s `MLPAutoencoder_Spheres` (BorgwardtLab/topological-autoencoders,
`src/models/submodules.py`): encoder `D -> 32 -> 32 -> 2` and the mirrored
decoder `2 -> 32 -> 32 -> D`, each hidden layer Linear -> BatchNorm -> ReLU,
the last layer of each linear. The topologically regularised model adds a
learnable scalar that the latent distances are divided by (`latent_norm`, an
`nn.Parameter` initialised to 1 in the original).

BatchNorm, unlike the UNet's GroupNorm, is kept because the original has it:
in training mode (the default) it normalises with the statistics of the batch
and updates its running averages (`nnx.BatchStat`); call `model.eval()` to use
the running averages. Its `momentum=0.9` is torch's default `momentum=0.1`
(flax keeps `momentum` of the old average, torch replaces that fraction).
Weights start from flax's initialisers (LeCun normal kernels, zero biases),
not torch's uniform ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class _MLP(nnx.Module):
  """`widths[0] -> ... -> widths[-1]`: hidden layers Linear (-> BatchNorm) ->
  ReLU, the last layer linear."""

  def __init__(self, widths: Sequence[int], *, batch_norm: bool, rngs: nnx.Rngs):
    pairs = list(zip(widths[:-1], widths[1:]))
    self.linears = nnx.List([nnx.Linear(i, o, rngs=rngs) for i, o in pairs])
    self.norms = nnx.List([nnx.BatchNorm(o, momentum=0.9, epsilon=1e-5, rngs=rngs)
                           for _, o in pairs[:-1]] if batch_norm else [])

  def __call__(self, x: jax.Array) -> jax.Array:
    *hidden, last = self.linears
    for k, linear in enumerate(hidden):
      x = linear(x)
      if self.norms:
        x = self.norms[k](x)
      x = nnx.relu(x)
    return last(x)


class MLPAutoencoder(nnx.Module):
  """MLP autoencoder: `[B, D]` inputs -> `[B, latent_dim]` codes -> `[B, D]`.

  Args:
    in_features: D, the features of an input (flatten images first).
    hidden: widths of the encoder's hidden layers, input side first; the
      decoder mirrors them. The original's `(32, 32)` is the default.
    latent_dim: width of the code (2 for a scatter plot).
    batch_norm: BatchNorm after every hidden linear layer (the original's
      choice); False gives a plain Linear-ReLU MLP without batch statistics.
    learn_latent_norm: whether `latent_norm` is a trained `nnx.Param` (the
      topologically regularised model) or a constant 1 (`nnx.Variable`, for
      a plain autoencoder, whose loss never reads it: as a parameter without
      gradient, weight decay alone would drive it to 0).
    rngs: parameter initialisation keys.

  Attributes:
    encoder, decoder: the two MLPs.
    latent_norm: scalar initialised to 1, an `nnx.Param` with
      `learn_latent_norm`: the learnable scale of the latent distances
      (`topojax.losses.topological_autoencoder`'s `latent_norm`). Only the
      topological loss reads it.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from topojax.models import MLPAutoencoder
    >>> model = MLPAutoencoder(5, hidden=(8,), rngs=nnx.Rngs(0))
    >>> z, x_hat = model(jnp.ones((4, 5)))
    >>> z.shape, x_hat.shape, float(model.latent_norm[...])
    ((4, 2), (4, 5), 1.0)
    >>> model.encode(jnp.ones((4, 5))).shape, model.decode(z).shape
    ((4, 2), (4, 5))
  """

  def __init__(self, in_features: int, *, hidden: Sequence[int] = (32, 32),
               latent_dim: int = 2, batch_norm: bool = True,
               learn_latent_norm: bool = True, rngs: nnx.Rngs):
    hidden = tuple(int(h) for h in hidden)
    if in_features <= 0 or latent_dim <= 0 or any(h <= 0 for h in hidden):
      raise ValueError(
          f"`in_features`, `latent_dim` and the `hidden` widths must be positive, got "
          f"{in_features}, {latent_dim} and {hidden}.")
    self.in_features = in_features
    self.latent_dim = latent_dim
    self.encoder = _MLP((in_features, *hidden, latent_dim), batch_norm=batch_norm, rngs=rngs)
    self.decoder = _MLP((latent_dim, *hidden[::-1], in_features), batch_norm=batch_norm,
                        rngs=rngs)
    variable = nnx.Param if learn_latent_norm else nnx.Variable
    self.latent_norm = variable(jnp.ones((), jnp.float32))

  def encode(self, x: jax.Array) -> jax.Array:
    """`[B, in_features]` -> `[B, latent_dim]` codes."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[-1] != self.in_features:
      raise ValueError(
          f"MLPAutoencoder expects `x` of shape [B, {self.in_features}], got {x.shape}.")
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    """`[B, latent_dim]` codes -> `[B, in_features]` reconstructions."""
    z = jnp.asarray(z)
    if z.ndim != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(
          f"MLPAutoencoder expects `z` of shape [B, {self.latent_dim}], got {z.shape}.")
    return self.decoder(z)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`[B, in_features]` -> `(z [B, latent_dim], x_hat [B, in_features])`."""
    z = self.encode(x)
    return z, self.decode(z)
