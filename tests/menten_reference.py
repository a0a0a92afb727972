"""A jax.numpy transcription of Menten et al.'s Boolean skeletonization (the oracle).

It follows `Skeletonize(probabilistic, beta, tau, simple_point_detection=
'Boolean', num_iter)` of martinmenten/skeletonization-for-gradient-based-
optimization (ICCV 2023) step by step, for small inputs:

- 2D `[B, H, W]` runs as 3D with depth 1; the volume is zero-padded by 1 on
  every side, so 2D becomes `[B, 3, H + 2, W + 2]`.
- per iteration: the end-point mask hardtanh(2 - n26, 0, 1) once, then the 8
  subfields at offsets (x, y, z) on the padded axes (D, H, W), in the order
  (0,0,0), (1,0,0), (0,1,0), (1,1,0), (0,0,1), (1,0,1), (0,1,1), (1,1,1); each
  runs Bertrand's Boolean test with stride-2 3x3x3 convolutions on
  `x[:, ox:, oy:, oz:]` (zero-padded by 1 again) and writes
  `min(x_sub, 1 - simple * (1 - endpoint_sub))` back into the subfield.
- an offset o on a padded axis is original parity 1 - o: in 2D the subfields
  with ox = 0 hold only padding, and the others visit (h % 2, w % 2) in the
  order (1,1), (0,1), (1,0), (0,0).

Gradient rules are torch's: hardtanh has derivative 1 only strictly inside
(min, max) (0 at both bounds), relu 0 at 0, max over the four conditions splits
ties evenly (torch.amax), and `min_tie` picks torch.min's tie rule: "split"
(current torch, 0.5/0.5, as jnp.minimum) or "first" (torch 1.9, all to the
first argument).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# -- torch-compatible kinks -----------------------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def hardtanh(x, min_val: float = 0.0, max_val: float = 1.0):
  """torch.nn.functional.hardtanh: clip, derivative 1 strictly inside only."""
  return jnp.clip(x, min_val, max_val)


@hardtanh.defjvp
def _hardtanh_jvp(min_val, max_val, primals, tangents):
  (x,), (t,) = primals, tangents
  inside = (x > min_val) & (x < max_val)
  return hardtanh(x, min_val, max_val), jnp.where(inside, t, jnp.zeros_like(t))


@jax.custom_jvp
def minimum_first(a, b):
  """torch 1.9's torch.min(a, b): at ties the whole gradient goes to `a`."""
  return jnp.minimum(a, b)


@minimum_first.defjvp
def _minimum_first_jvp(primals, tangents):
  (a, b), (ta, tb) = primals, tangents
  return jnp.minimum(a, b), jnp.where(a <= b, ta, tb)


relu = jax.nn.relu  # derivative 0 at 0, as torch


# -- kernels, exactly as the reference builds them --------------------------------
# The torch kernels are (1, 1, 3, 3, 3): torch dims 2, 3, 4 are axes 0, 1, 2 here.
# np.flip / np.rot90 (= jnp.flip / jnp.rot90) rotate as torch.flip / torch.rot90;
# NumPy keeps JAX's backend uninitialised at import.


def _flip(k, dims):
  return np.flip(k, axis=tuple(d - 2 for d in dims))


def _rot90(k, dims, n=1):
  return np.rot90(k, k=n, axes=tuple(d - 2 for d in dims))


def _kernels() -> dict[str, np.ndarray]:
  f32 = np.float32
  k_n6 = np.array(
    [[[0, 0, 0], [0, 1, 0], [0, 0, 0]], [[0, 1, 0], [1, 0, 1], [0, 1, 0]], [[0, 0, 0], [0, 1, 0], [0, 0, 0]]], f32
  )
  k_n26 = np.ones((3, 3, 3), f32)
  k_n26[1, 1, 1] = 0
  k_n18 = np.array(
    [[[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[1, 1, 1], [1, 0, 1], [1, 1, 1]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]]], f32
  )
  k_b26 = np.array(
    [[[1, -1, 0], [-1, -1, 0], [0, 0, 0]], [[-1, -1, 0], [-1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]],
    f32,
  )
  k_a6 = np.array(
    [[[0, 1, 0], [1, -1, 1], [0, 1, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], f32
  )
  k_b18 = np.array(
    [[[0, 1, 0], [-1, -1, -1], [0, 0, 0]], [[-1, -1, -1], [-1, 0, -1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]],
    f32,
  )
  k_a18 = np.array(
    [[[0, -1, 0], [0, -1, 0], [0, 0, 0]], [[0, -1, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], f32
  )
  k_a26 = np.array(
    [[[-1, -1, 0], [-1, -1, 0], [0, 0, 0]], [[-1, -1, 0], [-1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]],
    f32,
  )

  def corners(k):  # B26 / A26: all 8 flips
    return [k] + [_flip(k, d) for d in ([2], [3], [4], [2, 3], [2, 4], [3, 4], [2, 3, 4])]

  def edges(k):  # B18 / A18: 12 rotations
    r1, r2 = _rot90(k, [3, 4]), _rot90(k, [3, 4], 2)
    return [
      k,
      _rot90(k, [2, 4]),
      _rot90(k, [2, 4], 2),
      _rot90(k, [2, 4], 3),
      r1,
      _rot90(r1, [2, 4]),
      _rot90(r1, [2, 4], 2),
      _rot90(r1, [2, 4], 3),
      r2,
      _rot90(r2, [2, 4]),
      _rot90(r2, [2, 4], 2),
      _rot90(r2, [2, 4], 3),
    ]

  fa6 = _flip(k_a6, [2])
  a6 = [k_a6, _rot90(k_a6, [2, 3]), _rot90(k_a6, [2, 4]), fa6, _rot90(fa6, [2, 3]), _rot90(fa6, [2, 4])]
  stack = lambda ks: np.stack([np.asarray(k, f32) for k in ks])  # noqa: E731
  return {
    "n6": k_n6[None],
    "n26": k_n26[None],
    "n18": k_n18[None],
    "b26": stack(corners(k_b26)),
    "a6": stack(a6),
    "b18": stack(edges(k_b18)),
    "a18": stack(edges(k_a18)),
    "a26": stack(corners(k_a26)),
  }


KERNELS = _kernels()
_OFFSETS = tuple(zip([0, 1, 0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]))
_NAMES = ("n6", "n26", "n18", "b26", "a6", "b18", "a18", "a26")
_BANK = np.concatenate([KERNELS[k] for k in _NAMES])  # [58, 3, 3, 3]
_SPLITS = np.cumsum([len(KERNELS[k]) for k in _NAMES])[:-1].tolist()
_BANK_SUMS = _BANK.sum(axis=(1, 2, 3))


def _conv(v, kernels: np.ndarray, stride: int):
  """VALID cross-correlation (as torch conv3d) of `[N, D, H, W]` with a kernel stack."""
  return jax.lax.conv_general_dilated(
    v[:, None],
    jnp.asarray(kernels)[:, None],
    window_strides=(stride,) * 3,
    padding="VALID",
    dimension_numbers=("NCDHW", "OIDHW", "NCDHW"),
    precision=jax.lax.Precision.HIGHEST,
  )  # [N, K, d, h, w]


def _all_convs(img, stride: int) -> dict:
  """The reference's 58 convolutions, from one conv of the padded `img`.

  n6 is conv(1 - img), n26 / n18 conv(img), the cell kernels conv(2 img - 1);
  n6 and the cell counts are affine in conv(img) since the padding is explicit
  (exact on 0/1 data, same gradient up to float summation order).
  """
  c = _conv(img, _BANK, stride)
  sums = jnp.asarray(_BANK_SUMS)[None, :, None, None, None]
  out = dict(zip(_NAMES, jnp.split(2.0 * c - sums, _SPLITS, axis=1)))
  out["n6"] = (sums[:, :1] - c[:, :1])[:, 0]
  out["n26"] = c[:, 1]
  out["n18"] = c[:, 2]
  return out


def _count_present(conv_s, threshold: float):
  """Sum over the kernel stack of relu(conv(s, K_i) - threshold)."""
  return jnp.sum(relu(conv_s - threshold), axis=1)


def _exactly1(n):
  return hardtanh(n, 0.0, 1.0) * hardtanh(-(n - 2), 0.0, 1.0)


def _boolean_simple_check(img, stride: int):
  """The reference's `_boolean_simple_check` on `[N, D, H, W]` (pads by 1 itself)."""
  img = jnp.pad(img, ((0, 0), (1, 1), (1, 1), (1, 1)))
  c = _all_convs(img, stride)
  n6 = c["n6"]
  condition1 = _exactly1(n6)
  condition2 = _exactly1(c["n26"])
  num_b26 = _count_present(c["b26"], 6)
  no_b26 = hardtanh(-(num_b26 - 1), 0.0, 1.0)
  condition3 = _exactly1(c["n18"]) * no_b26
  no_a6 = hardtanh(-(_count_present(c["a6"], 4) - 1), 0.0, 1.0)
  no_b18 = hardtanh(-(_count_present(c["b18"], 8) - 1), 0.0, 1.0)
  euler = n6 - _count_present(c["a18"], 2) + _count_present(c["a26"], 6)
  condition4 = no_a6 * no_b26 * no_b18 * _exactly1(euler)
  return jnp.max(jnp.stack([condition1, condition2, condition3, condition4], axis=1), axis=1)


def _single_neighbor_check(img):
  """End points: hardtanh(2 - n26, 0, 1) on `[N, D, H, W]`, same shape."""
  n26 = _conv(jnp.pad(img, ((0, 0), (1, 1), (1, 1), (1, 1))), KERNELS["n26"], 1)[:, 0]
  return hardtanh(-(n26 - 2), 0.0, 1.0)


def menten_simple_mask(x):
  """The Boolean simple test at every voxel of a `[D, H, W]` 0/1 volume (zero outside)."""
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 3:
    raise ValueError(f"expected [D, H, W], got shape {x.shape}")
  return _boolean_simple_check(x[None], 1)[0]


def _stochastic_discretization(img, uniform, beta, tau):
  alpha = (img + 1e-8) / (1.0 - img + 1e-8)
  logistic_noise = jnp.log(uniform) - jnp.log(1 - uniform)
  s = jax.nn.sigmoid((jnp.log(alpha) + logistic_noise * beta) / tau)
  return jax.lax.stop_gradient((s > 0.5).astype(s.dtype) - s) + s


@functools.partial(jax.jit, static_argnames=("num_iter", "probabilistic", "min_tie"))
def menten_skeletonize(
  img, *, num_iter: int = 5, probabilistic: bool = False, beta=0.33, tau=1.0, uniform=None, min_tie: str = "split"
):
  """Menten's Boolean skeleton of `[B, H, W]` or `[B, D, H, W]` images in [0, 1].

  `uniform` (img's shape, values in (0, 1)) replaces torch's random draw when
  `probabilistic`. The reference binarises after padding; here before, which
  gives the same result (padding stays exactly 0 unless beta * logistic noise
  exceeds 18.4, impossible in float32 for beta < 1.1).
  """
  if img.ndim == 3:
    x, expanded = img[:, None], True
  elif img.ndim == 4:
    x, expanded = img, False
  else:
    raise ValueError(f"expected [B, H, W] or [B, D, H, W], got shape {img.shape}")
  d, h, w = x.shape[1:]
  if 2 in (d, h, w) or h == 1 or w == 1:
    raise ValueError(f"the reference rejects spatial sizes of 2 and H, W of 1: {img.shape}")
  if min_tie == "split":
    minimum = jnp.minimum
  elif min_tie == "first":
    minimum = minimum_first
  else:
    raise ValueError(f"min_tie must be 'split' or 'first', got {min_tie!r}")

  if probabilistic:
    if uniform is None:
      raise ValueError("probabilistic=True needs `uniform` noise of img's shape")
    u = uniform[:, None] if expanded else uniform
    x = _stochastic_discretization(x, u, beta, tau)
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1)))

  def iteration(x, _):
    is_endpoint = _single_neighbor_check(x)
    for ox, oy, oz in _OFFSETS:
      is_simple = _boolean_simple_check(x[:, ox:, oy:, oz:], 2)
      deletion_candidates = is_simple * (1 - is_endpoint[:, ox::2, oy::2, oz::2])
      sub = x[:, ox::2, oy::2, oz::2]
      x = x.at[:, ox::2, oy::2, oz::2].set(minimum(sub, 1 - deletion_candidates))
    return x, None

  x, _ = jax.lax.scan(iteration, x, None, length=num_iter)
  x = x[:, 1:-1, 1:-1, 1:-1]
  return x[:, 0] if expanded else x
