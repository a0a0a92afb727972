"""Plots of one persistence diagram: the birth-death scatter and the barcode.

matplotlib is imported only inside the functions (and pyplot only when no
`ax` is given), so `import topojax.ph` stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from topojax.ph._diagram import Diagram


def _pairs(diagram, fn: str):
  """Valid pairs of one diagram as NumPy `(dim, birth, death)`, checked."""
  if not isinstance(diagram, Diagram):
    raise TypeError(f"`diagram` must be a `topojax.ph.Diagram`, got {type(diagram).__name__}.")
  if np.ndim(diagram.birth) != 1:
    raise ValueError(
        f"`{fn}` plots one diagram; `diagram` has batch shape "
        f"{np.shape(diagram.birth)[:-1]} (index it first, e.g. `jax.tree.map(lambda x: "
        f"x[0], diagram)`).")
  if bool(np.asarray(diagram.overflow)):
    warnings.warn(f"`{fn}`: the diagram overflowed its capacity; pairs are missing "
                  "from the plot.", UserWarning, stacklevel=3)
  valid = np.asarray(diagram.valid, bool)
  dim = np.asarray(diagram.dim)[valid].astype(int)
  birth = np.asarray(diagram.birth, np.float64)[valid]
  death = np.asarray(diagram.death, np.float64)[valid]
  return dim, birth, death


def _select_dims(dim: np.ndarray, dims) -> list[int]:
  if dims is None:
    return sorted(set(dim.tolist()))
  if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool):
    dims = [dims]
  if not isinstance(dims, Iterable):
    raise ValueError(f"`dims` must be None, an int or a list of ints, got {dims!r}.")
  dims = list(dims)
  if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0
         for k in dims):
    raise ValueError(f"`dims` must hold non-negative ints, got {dims!r}.")
  return sorted(set(int(k) for k in dims))


def _finite_span(birth: np.ndarray, death: np.ndarray) -> tuple[float, float, float]:
  """`(lo, hi, span)` of the finite values (a unit box when there are none)."""
  values = np.concatenate([birth, death[np.isfinite(death)]])
  if values.size == 0:
    return 0.0, 1.0, 1.0
  lo, hi = float(values.min()), float(values.max())
  if hi == lo:
    lo, hi = lo - 0.5, hi + 0.5
  return lo, hi, hi - lo


def _new_axes(ax):
  if ax is None:
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
  return ax


def plot_diagram(diagram: Diagram, *, ax=None, dims: int | Iterable[int] | None = None,
                 legend: bool = True, markersize: float = 20.0, title: str | None = None):
  r"""Scatter plot of one persistence diagram: death against birth.

  One scatter per homology dimension (colours `C0`, `C1`, … by dimension,
  labelled $H_k$) and the diagonal. Essential classes are drawn on a dashed
  line above the finite points, labelled $+\infty$ on the death axis (below,
  labelled $-\infty$, for the $-\infty$ deaths of a superlevel diagram, whose
  points lie under the diagonal). Both axes share one range.

  Args:
    diagram: one (unbatched) `Diagram`, fields `[P]`. An overflowed diagram
      is plotted with a warning.
    ax: matplotlib Axes to draw on (default: a new pyplot figure).
    dims: dimension(s) to show (default: all present).
    legend: whether to add a legend.
    markersize: scatter marker area (points²).
    title: optional Axes title.

  Returns:
    The matplotlib Axes.

  Examples:
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from topojax.ph import diagram_from_pairs, plot_diagram
    >>> d = diagram_from_pairs([[0, 0.0, np.inf], [0, 1.0, 3.0], [1, 2.0, 4.0]],
    ...                        capacity=8)
    >>> ax = plot_diagram(d, ax=Figure().subplots())
    >>> [len(c.get_offsets()) for c in ax.collections]  # H0 (one essential), H1
    [2, 1]
    >>> ax.get_yticklabels()[-1].get_text()
    '$+\\infty$'
  """
  dim, birth, death = _pairs(diagram, "plot_diagram")
  dims = _select_dims(dim, dims)
  keep = np.isin(dim, dims)
  dim, birth, death = dim[keep], birth[keep], death[keep]
  ax = _new_axes(ax)

  lo, hi, span = _finite_span(birth, death)
  pos_inf, neg_inf = death == np.inf, death == -np.inf
  top, bottom = hi + 0.1 * span, lo - 0.1 * span
  low = (bottom if neg_inf.any() else lo) - 0.05 * span
  high = (top if pos_inf.any() else hi) + 0.05 * span
  shown = np.where(pos_inf, top, np.where(neg_inf, bottom, death))

  ax.plot([low, high], [low, high], color="k", linewidth=0.8, zorder=1)
  for y, flag in ((top, pos_inf), (bottom, neg_inf)):
    if flag.any():
      ax.axhline(y, color="0.5", linestyle="--", linewidth=0.8, zorder=1)
  for k in dims:
    here = dim == k
    if here.any():
      ax.scatter(birth[here], shown[here], s=markersize, color=f"C{k}",
                 label=f"$H_{{{k}}}$", zorder=3)
  ax.set_xlim(low, high)
  ax.set_ylim(low, high)

  if pos_inf.any() or neg_inf.any():  # label the essential lines on the death axis
    ticks = [t for t in ax.get_yticks() if lo - 0.05 * span <= t <= hi + 0.05 * span]
    labels = [f"{t:g}" for t in ticks]
    if pos_inf.any():
      ticks, labels = ticks + [top], labels + [r"$+\infty$"]
    if neg_inf.any():
      ticks, labels = [bottom] + ticks, [r"$-\infty$"] + labels
    ax.set_yticks(ticks, labels=labels)

  ax.set_xlabel("birth")
  ax.set_ylabel("death")
  if title is not None:
    ax.set_title(title)
  if legend and ax.collections:  # the empty half-plane: below the diagonal if sublevel
    ax.legend(loc="upper left" if np.any(death < birth) else "lower right")
  return ax


def plot_barcode(diagram: Diagram, *, ax=None, dims: int | Iterable[int] | None = None,
                 legend: bool = False, height: float = 0.6, title: str | None = None):
  r"""Barcode of one persistence diagram: one horizontal bar per pair.

  Bars are grouped by dimension (colour `C{k}`; the groups are labelled $H_k$
  on the vertical axis and set apart by a gap), then sorted by birth, the
  first at the top; a bar spans `[min(b, d), max(b, d)]`.
  Essential bars run to the edge of the plot and end in an arrow (`>` for
  $+\infty$, `<` for the $-\infty$ of a superlevel diagram).

  Args:
    diagram: one (unbatched) `Diagram`, fields `[P]`. An overflowed diagram
      is plotted with a warning.
    ax: matplotlib Axes to draw on (default: a new pyplot figure).
    dims: dimension(s) to show (default: all present).
    legend: whether to add a legend too.
    height: bar thickness, in units of the bar spacing.
    title: optional Axes title.

  Returns:
    The matplotlib Axes: one `BarContainer` per shown dimension
    (`ax.containers`) with one rectangle per bar, plus one arrow-marker line
    per dimension with essential bars.

  Examples:
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from topojax.ph import diagram_from_pairs, plot_barcode
    >>> d = diagram_from_pairs([[0, 0.0, np.inf], [0, 1.0, 3.0], [1, 2.0, 4.0]])
    >>> ax = plot_barcode(d, ax=Figure().subplots())
    >>> len(ax.patches), [len(c) for c in ax.containers]
    (3, [2, 1])
  """
  dim, birth, death = _pairs(diagram, "plot_barcode")
  dims = _select_dims(dim, dims)
  keep = np.isin(dim, dims)
  dim, birth, death = dim[keep], birth[keep], death[keep]
  order = np.lexsort((death, birth, dim))
  dim, birth, death = dim[order], birth[order], death[order]
  ax = _new_axes(ax)

  lo, hi, span = _finite_span(birth, death)
  pos_inf, neg_inf = death == np.inf, death == -np.inf
  right = hi + 0.1 * span if pos_inf.any() else hi
  left = lo - 0.1 * span if neg_inf.any() else lo
  ends = np.where(pos_inf, right, np.where(neg_inf, left, death))
  start, stop = np.minimum(birth, ends), np.maximum(birth, ends)
  group = np.searchsorted(np.array(dims), dim)  # rank of each bar's dimension
  rows = np.arange(len(birth)) + 0.6 * group

  for k in dims:
    here = dim == k
    if not here.any():
      continue
    ax.barh(rows[here], (stop - start)[here], left=start[here], height=height,
            color=f"C{k}", label=f"$H_{{{k}}}$")
    for flag, marker in ((pos_inf, ">"), (neg_inf, "<")):
      arrows = here & flag
      if arrows.any():
        ax.plot(ends[arrows], rows[arrows], linestyle="none", marker=marker,
                color=f"C{k}", markersize=8, clip_on=False, zorder=3)

  ax.set_xlim(left - 0.05 * span, right + 0.05 * span)
  ax.set_ylim(rows.max(initial=0) + 0.5, -0.5)  # first bar at the top
  shown = [k for k in dims if np.any(dim == k)]
  ax.set_yticks([float(np.mean(rows[dim == k])) for k in shown],
                labels=[f"$H_{{{k}}}$" for k in shown])
  ax.set_xlabel("filtration value")
  if title is not None:
    ax.set_title(title)
  if legend and ax.containers:
    ax.legend(loc="lower right")
  return ax
