"""Topology-preserving differentiable skeletonization (Menten et al., ICCV 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from topojax._src import checks
from topojax._src import simple_points as sp
from topojax.kernels import thinning

MODES = ("curve", "homotopic")
IMPLS = ("auto", "xla", "pallas", "pallas_interpret")
# Menten et al.'s subfield order, as parities of the original (unpadded) image:
# they pad by one voxel and visit offsets (0,0,0), (1,0,0), (0,1,0), ... of the
# padded (D, H, W) volume; padding flips the parity. 2D runs as the depth-1
# slice, so only the passes with depth offset 1 touch it.
_MENTEN_ORDER = {
    2: ((1, 1), (0, 1), (1, 0), (0, 0)),
    3: ((1, 1, 1), (0, 1, 1), (1, 0, 1), (0, 0, 1), (1, 1, 0), (0, 1, 0), (1, 0, 0), (0, 0, 0)),
}
_MIN_TIE = {"split": 0.5, "first": 1.0}


def binarize(x: jax.Array, *, stochastic: bool = False, beta: float = 0.33, tau: float = 1.0,
             key: jax.Array | None = None) -> jax.Array:
  r"""0/1 values with a straight-through gradient.

  Deterministic: $\mathbb 1[x > 0.5]$ forward, identity backward. Stochastic
  (the reparameterisation of Menten et al.): with $\alpha = (x + 10^{-8}) / (1 -
  x + 10^{-8})$ and logistic noise $L = \log U - \log(1 - U)$, $U \sim
  \mathcal U(10^{-8}, 1 - 10^{-8})$, the soft sample is $s = \sigma((\log\alpha
  + \beta L) / \tau)$; the forward value is $\mathbb 1[s > 0.5]$ (so $\tau$
  only scales the gradient) and the backward pass is that of $s$.
  """
  if not stochastic:
    return x + jax.lax.stop_gradient((x > 0.5).astype(x.dtype) - x)
  if key is None:
    raise ValueError("`key` is required with `stochastic=True` (the logistic noise).")
  eps = 1e-8
  alpha = (x + eps) / (1.0 - x + eps)
  u = jax.random.uniform(key, x.shape, x.dtype, minval=eps, maxval=1.0 - eps)
  soft = jax.nn.sigmoid((jnp.log(alpha) + beta * (jnp.log(u) - jnp.log(1.0 - u))) / tau)
  return soft + jax.lax.stop_gradient((soft > 0.5).astype(x.dtype) - soft)


def _check_args(x, ndim, num_iter, beta, tau, mode, compat, min_tie, impl):
  checks.check_ndim(ndim)
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.float32)
  checks.check_floating(x, "x")
  checks.check_spatial(x, "x", ndim)
  if num_iter is not None:
    checks.check_positive_int(num_iter, "num_iter", allow_zero=True)
  if not beta >= 0:
    raise ValueError(f"`beta` must be >= 0, got {beta}.")
  if not tau > 0:
    raise ValueError(f"`tau` must be > 0, got {tau}.")
  for name, value, allowed in (("mode", mode, MODES), ("compat", compat, (None, "menten")),
                               ("min_tie", min_tie, tuple(_MIN_TIE)), ("impl", impl, IMPLS)):
    if value not in allowed:
      raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
  if compat == "menten" and mode != "curve":
    raise ValueError("`compat='menten'` thins curve skeletons: use `mode='curve'`.")
  return x


def skeletonize(x: jax.Array, *, ndim: int = 2, num_iter: int | None = None,
                stochastic: bool = False, beta: float = 0.33, tau: float = 1.0,
                key: jax.Array | None = None, mode: str = "curve",
                connectivity: int | None = None, compat: str | None = None,
                min_tie: str = "split", impl: str = "auto",
                block_sizes: thinning.BlockSizes = thinning.BlockSizes()) -> jax.Array:
  r"""Topology-preserving skeleton of a probability map or binary mask.

  The input is binarised (`binarize`), then thinned: each iteration visits the
  $2^d$ subfields of the stride-2 lattice and deletes, in parallel, the
  foreground points of the subfield that are *simple* (deleting them changes
  no connected component, tunnel or cavity; an exact test, see
  `topojax.skeleton.simple_points`) and, in `mode="curve"`, not end points (at
  most one foreground neighbour when the iteration starts). Points of one
  subfield are never adjacent, so the result has exactly the topology of the
  binarised input, with 8/4 (2D) or 26/6 (3D) adjacency for the foreground and
  background by default.

  Gradient: the output is $x_b \odot k$ ($x_b$ the binarised input, $k$ the
  kept points) and its vector-Jacobian product is straight-through, $\bar x_b
  = \bar y \odot (1 - \text{deleted})$: skeleton and background pass the
  gradient unchanged however many iterations ran, deleted points pass none.
  Memory is one mask, whatever `num_iter`. (Autodiff of Menten et al.'s
  formulation multiplies the gradient by 1/2 at every iteration instead: that
  is `compat="menten"`.)

  Args:
    x: `[..., *spatial]` floating (values in [0, 1]) or bool; the last `ndim`
      axes are spatial, leading axes are batch or channels (any number).
    ndim: 2 or 3 spatial axes.
    num_iter: iterations; `None` runs until no point changes (a `while_loop`
      bounded by the number of pixels, so never cut short).
    stochastic: binarise by the reparameterisation trick (needs `key`).
    beta: scale of the logistic noise (stochastic only).
    tau: temperature: scales the stochastic gradient, not the forward value.
    key: PRNG key for `stochastic=True`.
    mode: "curve" keeps end points (curve skeleton); "homotopic" deletes every
      simple point (a disc shrinks to a point, a ring to a closed curve).
    connectivity: foreground adjacency, 8 or 4 in 2D, 26 or 6 in 3D
      (the background gets the complementary one).
    compat: "menten" reproduces the reference PyTorch `Skeletonize`
      (Boolean simple-point test): its subfield order and its gradient, which is multiplied at every iteration
      by `0.5` (`min_tie="split"`, current torch) or `1` (`"first"`, torch 1.9)
      on kept foreground and on flagged background voxels and zeroed on deleted
      ones. Its forward values equal the reference's for the same binarised
      input.
    min_tie: torch's rule for `min` at ties, in compat mode.
    impl: "xla" (pure jnp), "pallas" (compiled kernel) or "pallas_interpret";
      "auto" is "xla": the kernel has been validated in interpret mode only,
      and no machine where it compiles has measured it faster yet.
    block_sizes: images per Pallas grid step.

  Returns:
    The skeleton, shape of `x`, float dtype of `x`; 0/1 values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.skeleton import skeletonize
    >>> bar = jnp.zeros((7, 11)).at[2:5, 1:10].set(1.0)
    >>> skel = skeletonize(bar)  # the middle row, shortened by one at each end
    >>> skel[3].astype(int).tolist(), int(skel.sum())
    ([0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0], 7)
    >>> ring = jnp.ones((5, 5)).at[2, 2].set(0.0)
    >>> int(skeletonize(ring, mode="homotopic").sum())  # the loop stays closed
    4

  References:
    Menten et al., "A skeletonization algorithm for gradient-based
    optimization", ICCV 2023. Bertrand, "A Boolean characterization of
    three-dimensional simple points", Pattern Recognition Letters 1996.
  """
  x = _check_args(x, ndim, num_iter, beta, tau, mode, compat, min_tie, impl)
  connectivity = sp.check_connectivity(ndim, connectivity)
  binary = binarize(x, stochastic=stochastic, beta=beta, tau=tau, key=key)
  if compat == "menten":
    schedule = thinning.Schedule(ndim, connectivity, "iteration", _MENTEN_ORDER[ndim])
    tie_factor = _MIN_TIE[min_tie]
  else:
    schedule = thinning.Schedule(ndim, connectivity, "iteration" if mode == "curve" else "none")
    tie_factor = None
  impl = "xla" if impl == "auto" else impl
  return thinning.thin(binary, schedule, num_iter, tie_factor, impl, block_sizes)


def simple_points(x: jax.Array, *, ndim: int = 2, connectivity: int | None = None) -> jax.Array:
  r"""Points whose flip (deletion, or addition) preserves topology, exactly.

  For each point p of the binary image `x` (outside = background): with every
  voxel a closed unit cube, p is simple iff the part of p's boundary touched by
  the other foreground voxels of its neighbourhood is contractible, which is
  Bertrand's $T_{26}(p) = T_6(p, \bar X) = 1$ (2D: $T_8 = T_4 = 1$). Computed by
  Boolean algebra on the neighbours: an Euler characteristic and, in 3D, a
  connectivity check on the 8 corners of the cube. The value of p itself is
  ignored, so the same mask tells which background points can be added.

  Args:
    x: `[..., *spatial]` bool or 0/1 values.
    ndim: 2 or 3.
    connectivity: foreground adjacency: 8 (default) or 4 in 2D, 26 (default)
      or 6 in 3D.

  Returns:
    Bool array of `x`'s shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.skeleton import simple_points
    >>> line = jnp.zeros((3, 5), bool).at[1, :].set(True)
    >>> simple_points(line)[1].tolist()  # the ends may go, the middle may not
    [True, False, False, False, True]
  """
  checks.check_ndim(ndim)
  x = jnp.asarray(x)
  checks.check_spatial(x, "x", ndim)
  connectivity = sp.check_connectivity(ndim, connectivity)
  return sp.simple_points(x.astype(bool), ndim=ndim, connectivity=connectivity)
