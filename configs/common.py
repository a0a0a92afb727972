"""Helpers shared by config files (big_vision's `configs/common.py` idea)."""

from __future__ import annotations

from typing import Any

import ml_collections

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _cast(name: str, text: str, default: Any) -> Any:
  """`text` as the type of `default` (bools spelled true/false/1/0/yes/no)."""
  if isinstance(default, bool):
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise ValueError(f"Config arg {name}={text!r} is not a bool ({_TRUE + _FALSE}).")
  if default is None:
    return text
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(
        f"Config arg {name}={text!r} does not parse as {type(default).__name__} "
        f"(the type of its default {default!r}).") from None


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses the text after `:` in `--config file.py:ARG` into typed fields.

  `ARG` is `"k=v,k2=v2"`; a bare key means `k=True` (`runlocal`), and a single
  bare value that is not a key fills the first field (`:cldice` with
  `loss="cedice"` first). Values are cast to the type of their default.

  Args:
    arg: the string given after `:`, or None.
    **defaults: every accepted field with its default, in order.

  Returns:
    A ConfigDict with one entry per default.

  Raises:
    ValueError: an unknown key, or a value that does not cast.

  Examples:
    >>> arg = parse_arg("runlocal,res=32", runlocal=False, res=64, loss="cedice")
    >>> arg.runlocal, arg.res, arg.loss
    (True, 32, 'cedice')
  """
  result = dict(defaults)
  pairs = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if len(pairs) == 1 and "=" not in pairs[0] and pairs[0] not in defaults and defaults:
    pairs = [f"{next(iter(defaults))}={pairs[0]}"]
  for pair in pairs:
    name, has_value, text = pair.partition("=")
    name = name.strip()
    if name not in defaults:
      raise ValueError(
          f"Unknown config arg {name!r} in {arg!r}; known: {sorted(defaults)}.")
    result[name] = _cast(name, text.strip() if has_value else "true", defaults[name])
  return ml_collections.ConfigDict(result)
