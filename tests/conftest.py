"""Test-wide JAX settings: 8 simulated CPU devices and strict promotion.

These must run before JAX initialises its backends, hence at import time.
"""

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402


@pytest.fixture
def getkey():
  """Fresh PRNG keys, deterministic per test."""
  keys = iter(jax.random.split(jax.random.key(0), 1000))
  return lambda: next(keys)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops compiled programs after each test module.

  Every executable keeps its own memory mappings; the whole suite compiles
  thousands, enough to exhaust the per-process mapping limit
  (`vm.max_map_count`), after which LLVM cannot allocate code memory.
  """
  yield
  jax.clear_caches()
