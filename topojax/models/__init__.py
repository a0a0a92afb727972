"""Flax NNX models used by the experiments, also reachable by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flax import nnx

from topojax._src import registry

from topojax.models._autoencoder import MLPAutoencoder
from topojax.models._ect import ECTClassifier
from topojax.models._ect import ECTLayer
from topojax.models._unet import UNet

MODELS: Mapping[str, Callable[..., nnx.Module]] = {
    "unet": UNet,
    "mlp_autoencoder": MLPAutoencoder,
    "ect_classifier": ECTClassifier,
}


def get_model(name: str) -> Callable[..., nnx.Module]:
  """The model class registered under `name` (configs pick models by name)."""
  return registry.lookup(MODELS, name, "model")


__all__ = ["ECTClassifier", "ECTLayer", "MLPAutoencoder", "MODELS", "UNet", "get_model"]
