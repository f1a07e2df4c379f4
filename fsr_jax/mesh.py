"""The device mesh every step runs over: one `data` axis, parameters replicated, batch split."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: Name of the mesh axis the global batch is split over.
DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process) on the `data` axis.

    Axis type Auto, so plain `jax.jit` accepts arrays sharded over it (jax 0.10's
    `make_mesh` defaults to Explicit axes).
    """
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer states)."""
    return NamedSharding(mesh, PartitionSpec())


_barriers = itertools.count()


def wait_for_every_process(what: str, timeout_s: int = 3600) -> None:
    """Block until every process of the group has reached this call (the `what`-th of its kind).

    A barrier of the distributed runtime, not a device collective: on CPUs, Gloo's collectives
    give up when a peer is 30 s late, which one process's compilation on a loaded machine can
    be; waiting here first lets the next step's collectives start together. No-op for one process.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # noqa: PLC0415 -- the runtime's client has no public handle

    distributed.global_state.client.wait_at_barrier(f"fsr_jax/{what}/{next(_barriers)}", timeout_s * 1000)
