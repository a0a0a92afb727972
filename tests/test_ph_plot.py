"""Tests for `topojax.ph.plot_diagram` / `plot_barcode` (Agg backend)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from topojax import ph  # noqa: E402

ROWS = np.array([[0, 0.0, np.inf], [0, 1.0, 3.0], [0, 0.5, 0.5], [1, 2.0, 4.0],
                 [1, 2.5, 3.0], [2, 1.0, 5.0]])


@pytest.fixture
def ax():
  fig, ax = plt.subplots()
  yield ax
  plt.close(fig)


def _render(ax):
  ax.figure.canvas.draw()  # Agg: raises if anything cannot be drawn


def _offsets_per_scatter(ax):
  return [len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]


def test_plot_diagram_points_per_dimension(ax):
  d = ph.diagram_from_pairs(ROWS, capacity=10)
  assert ph.plot_diagram(d, ax=ax) is ax
  _render(ax)
  assert _offsets_per_scatter(ax) == [3, 2, 1]
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ["$H_{0}$", "$H_{1}$",
                                                                 "$H_{2}$"]
  # The essential H0 point sits on the top line, labelled +inf.
  h0 = ax.collections[0].get_offsets()
  top = ax.get_yticks()[-1]
  assert ax.get_yticklabels()[-1].get_text() == r"$+\infty$"
  assert np.sum(np.isclose(h0[:, 1], top)) == 1 and top > 5.0
  assert ax.get_ylim()[1] > top and ax.get_xlim() == ax.get_ylim()
  # Diagonal plus the dashed essential line.
  assert len(ax.lines) == 2


def test_plot_diagram_dims_and_no_essential(ax):
  d = ph.diagram_from_pairs(ROWS, capacity=6)
  ph.plot_diagram(d, ax=ax, dims=1, legend=False, title="H1")
  _render(ax)
  assert _offsets_per_scatter(ax) == [2]
  assert ax.get_legend() is None and ax.get_title() == "H1"
  assert len(ax.lines) == 1  # no essential class in H1: diagonal only
  assert all("infty" not in t.get_text() for t in ax.get_yticklabels())


def test_plot_diagram_superlevel_and_empty(ax):
  sup = ph.diagram_from_pairs([[0, 5.0, -np.inf], [0, 4.0, 1.0]])
  ph.plot_diagram(sup, ax=ax)
  _render(ax)
  points = ax.collections[0].get_offsets()
  assert ax.get_yticklabels()[0].get_text() == r"$-\infty$"
  bottom = ax.get_yticks()[0]
  assert np.min(points[:, 1]) == pytest.approx(bottom) and bottom < 1.0
  fig, empty_ax = plt.subplots()
  ph.plot_diagram(ph.diagram_from_pairs([], capacity=4), ax=empty_ax)
  _render(empty_ax)
  assert _offsets_per_scatter(empty_ax) == [] and len(empty_ax.lines) == 1
  empty_ax.clear()
  ph.plot_barcode(ph.diagram_from_pairs([], capacity=4), ax=empty_ax)
  _render(empty_ax)
  assert len(empty_ax.patches) == 0
  plt.close(fig)


def test_plot_barcode_bars_and_arrows(ax):
  d = ph.diagram_from_pairs(ROWS, capacity=10)
  assert ph.plot_barcode(d, ax=ax) is ax
  _render(ax)
  containers = [c for c in ax.containers if isinstance(c, BarContainer)]
  assert [len(c) for c in containers] == [3, 2, 1] and len(ax.patches) == 6
  # Grouped by dimension, sorted by birth, first at the top (smallest y).
  rects = sorted(ax.patches, key=lambda r: r.get_y())
  starts = [r.get_x() for r in rects]
  assert starts == [0.0, 0.5, 1.0, 2.0, 2.5, 1.0]
  assert [t.get_text() for t in ax.get_yticklabels()] == ["$H_{0}$", "$H_{1}$", "$H_{2}$"]
  assert ax.get_legend() is None
  # The essential bar runs past every finite value and ends in one '>' arrow.
  arrows = [line for line in ax.lines if line.get_marker() == ">"]
  assert len(arrows) == 1 and len(arrows[0].get_xdata()) == 1
  assert rects[0].get_x() + rects[0].get_width() == pytest.approx(arrows[0].get_xdata()[0])
  assert arrows[0].get_xdata()[0] > 5.0 and ax.get_xlim()[1] > arrows[0].get_xdata()[0]


def test_plot_barcode_superlevel_dims(ax):
  sup = ph.diagram_from_pairs([[0, 5.0, -np.inf], [0, 4.0, 1.0], [1, 3.0, 2.0]])
  ph.plot_barcode(sup, ax=ax, dims=[0], legend=True, title="superlevel")
  _render(ax)
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ["$H_{0}$"]
  assert len(ax.patches) == 2
  arrows = [line for line in ax.lines if line.get_marker() == "<"]
  assert len(arrows) == 1 and arrows[0].get_xdata()[0] < 1.0
  finite = [r for r in ax.patches if r.get_width() == pytest.approx(3.0)]
  assert len(finite) == 1 and finite[0].get_x() == 1.0  # the bar spans [d, b]


def test_new_figure_when_no_axes():
  d = ph.diagram_from_pairs(ROWS)
  for fn in (ph.plot_diagram, ph.plot_barcode):
    ax = fn(d)
    _render(ax)
    plt.close(ax.figure)


def test_batched_and_bad_input_errors(ax):
  d = ph.diagram_from_pairs(ROWS)
  batch = jax.tree.map(lambda x: jnp.stack([x, x]), d)
  for fn in (ph.plot_diagram, ph.plot_barcode):
    with pytest.raises(ValueError, match=r"batch shape \(2,\)"):
      fn(batch, ax=ax)
    with pytest.raises(TypeError, match="`diagram`"):
      fn(ROWS, ax=ax)
    with pytest.raises(ValueError, match="`dims`"):
      fn(d, ax=ax, dims=[-1])
    with pytest.raises(ValueError, match="`dims`"):
      fn(d, ax=ax, dims="H0")


def test_overflow_warns(ax):
  d = dataclasses.replace(ph.diagram_from_pairs(ROWS), overflow=jnp.ones((), bool))
  with pytest.warns(UserWarning, match="overflowed"):
    ph.plot_diagram(d, ax=ax)
  with pytest.warns(UserWarning, match="overflowed"):
    ph.plot_barcode(d, ax=ax)


def test_import_does_not_load_matplotlib():
  code = "import sys, topojax.ph; assert 'matplotlib' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)
