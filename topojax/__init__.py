"""topojax: topology-aware deep learning in JAX."""

__version__ = "0.1.0"
