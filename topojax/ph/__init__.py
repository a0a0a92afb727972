"""Persistent homology on the device: cubical, Rips and graph filtrations.

Every routine returns a fixed-capacity `Diagram` pytree and runs under
`jax.jit` and `jax.vmap`; vectorizations turn diagrams into arrays.
"""

from topojax.ph._cubical import cubical_persistence
from topojax.ph._diagram import Diagram, diagram_from_pairs
from topojax.ph._matching import BettiMatching, betti_matching
from topojax.ph._plot import plot_barcode, plot_diagram
from topojax.ph._rips import (
    graph_persistence,
    graph_persistence_togl,
    pairwise_distances,
    rips_h0,
)
from topojax.ph._vectorize import (
    betti_curve,
    betti_numbers_at,
    persistence_entropy,
    persistence_image,
    persistence_landscape,
    persistence_silhouette,
    total_persistence,
)
