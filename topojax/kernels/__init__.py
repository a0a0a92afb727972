"""Pallas kernels, each beside its pure-jnp reference and custom_vjp wrapper."""
