"""Data parallelism: a 1D "data" mesh, batches split over it, params replicated.

The mesh axis is `AxisType.Auto` (GSPMD-style propagation): the trainer calls
arbitrary `jnp` losses and models, and Auto lets XLA place every op without
each one needing an explicit-sharding rule; batch arrays are still sharded
explicitly with `NamedSharding(mesh, P("data"))`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

DATA_AXIS = "data"
PyTree = Any


def make_data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1D mesh named "data" over `devices` (default: all of `jax.devices()`)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("`devices` must name at least one device.")
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
  """Leading (batch) axis split over "data", other axes whole."""
  return jax.NamedSharding(mesh, jax.P(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
  """A full copy on every device (params, optimiser state, scalars)."""
  return jax.NamedSharding(mesh, jax.P())


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """Raises unless `batch_size` splits evenly over the "data" axis."""
  num_shards = mesh.shape[DATA_AXIS]
  if batch_size % num_shards:
    raise ValueError(
        f"Batch size {batch_size} must be divisible by the number of devices on "
        f"the data axis ({num_shards}); choose a multiple of {num_shards}.")


def put_batch(batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """Moves a host batch (numpy arrays, leading batch axis) onto the mesh.

  Every process holds the same global batch (`topojax.data.sample_batch` is a
  pure function of the step), so each builds just the shards of its own
  devices from it: one code path for one device, 8 devices and a pod.
  """
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    check_batch_size(x.shape[0], mesh)
    with jax.transfer_guard("allow"):  # the one intended host-to-device copy
      return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, batch)


def process_batch_shard(mesh: jax.sharding.Mesh) -> tuple[int, int]:
  """Which block of each global batch this process loads: `(index, count)`.

  `put_local_batch` gives process p's rows to p's devices, which hold one
  contiguous block of the "data" axis; this returns that block's rank among
  the processes' blocks and the number of processes, ready for
  `topojax.data.batch_dataset(..., shard_index=index, shard_count=count)`.

  Examples:
    >>> process_batch_shard(make_data_mesh())
    (0, 1)
  """
  owners = [device.process_index for device in mesh.devices.reshape(-1)]
  blocks = list(dict.fromkeys(owners))  # processes in order of their first device
  for process in blocks:
    first = owners.index(process)
    if owners[first:first + owners.count(process)] != [process] * owners.count(process):
      raise ValueError(
          f"The devices of process {process} are not contiguous along the mesh's "
          f"{DATA_AXIS!r} axis; build the mesh from devices sorted by process.")
  return blocks.index(jax.process_index()), len(blocks)


def put_local_batch(local_batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """Builds global batch arrays from each process's own rows.

  Every process passes only its block of the global batch (leading axis; the
  block `process_batch_shard(mesh)` names, e.g. from `batch_dataset`), so a
  pod host loads 1/num_processes of the data; the global batch has
  `local_rows * jax.process_count()` rows, split over "data" like `put_batch`.
  With one process the local batch is the global batch and this equals
  `put_batch`.

  Examples:
    >>> import numpy as np
    >>> mesh = make_data_mesh()
    >>> x = put_local_batch(np.zeros((jax.device_count(), 4)), mesh)
    >>> x.shape == (jax.device_count() * jax.process_count(), 4)
    True
  """
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0:
      raise ValueError("`local_batch` leaves must have a leading batch axis, got a scalar.")
    global_shape = (x.shape[0] * jax.process_count(), *x.shape[1:])
    check_batch_size(global_shape[0], mesh)
    with jax.transfer_guard("allow"):  # the one intended host-to-device copy
      return jax.make_array_from_process_local_data(sharding, x, global_shape)
  return jax.tree.map(put, local_batch)
