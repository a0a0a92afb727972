"""Every `Examples:` block in the public modules runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import topojax

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(topojax.__path__, prefix="topojax.")
    if not info.ispkg)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                           verbose=False)
  assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
