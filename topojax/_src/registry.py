"""Lookup by name for the registries configs choose components from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
  """`table[name]`, or a ValueError listing the known names of this `kind`."""
  try:
    return table[name]
  except KeyError:
    raise ValueError(f"Unknown {kind} {name!r}; known: {sorted(table)}.") from None
