"""Device meshes with named axes ``data``, ``fsdp`` and ``tensor``.

* ``data`` splits the batch; every data shard holds whole parameters (or fsdp shards).
* ``fsdp`` splits parameters along their model-width axis (``embed``) and also the
  batch — fully-sharded data parallelism: XLA gathers a layer's weights when it runs.
* ``tensor`` splits heads, MLP width, experts' width and the vocabulary (Megatron-style
  tensor parallelism).

A mesh is written ``"data=4,fsdp=2,tensor=1"`` (CLI flag ``--mesh``) or as a dict; axes
left out have size 1, and one axis may be ``-1`` to take the remaining devices.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh

MESH_AXES = ("data", "fsdp", "tensor")


class MeshError(ValueError):
    """A mesh spec that does not fit the devices or the model."""


def parse_mesh_spec(spec: str | dict[str, int]) -> dict[str, int]:
    """``"data=4,fsdp=2"`` → ``{"data": 4, "fsdp": 2, "tensor": 1}`` (validated names and sizes)."""
    if isinstance(spec, str):
        sizes = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not value.strip().lstrip("-").isdigit():
                raise MeshError(f"Mesh spec part {part!r} is not of the form axis=size (e.g. 'data=4,fsdp=2').")
            sizes[name.strip()] = int(value)
    else:
        sizes = dict(spec)
    unknown = set(sizes) - set(MESH_AXES)
    if unknown:
        raise MeshError(f"Unknown mesh axes {sorted(unknown)}; the axes are {', '.join(MESH_AXES)}.")
    sizes = {axis: sizes.get(axis, 1) for axis in MESH_AXES}
    if sum(size == -1 for size in sizes.values()) > 1:
        raise MeshError("At most one mesh axis may be -1 (meaning: all remaining devices).")
    if any(size == 0 or size < -1 for size in sizes.values()):
        raise MeshError(f"Mesh axis sizes must be positive (or -1 for one axis); got {sizes}.")
    return sizes


def make_mesh(spec: str | dict[str, int] = "data=-1", devices=None) -> Mesh:
    """Build a :class:`jax.sharding.Mesh` with axes ``(data, fsdp, tensor)``.

    Args:
      spec: sizes per axis, e.g. ``"data=4,fsdp=2,tensor=1"``; the product must equal the
        number of devices used.
      devices: the devices to arrange (default: all of ``jax.devices()``).

    Example:
      >>> mesh = make_mesh("data=2,fsdp=2,tensor=2")   # 8 devices
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = parse_mesh_spec(spec)
    known = math.prod(size for size in sizes.values() if size != -1)
    for axis, size in sizes.items():
        if size == -1:
            if len(devices) % known:
                raise MeshError(f"Cannot fill axis {axis!r}: {len(devices)} devices are not divisible by {known}.")
            sizes[axis] = len(devices) // known
    total = math.prod(sizes.values())
    if total != len(devices):
        raise MeshError(
            f"Mesh {sizes} needs {total} devices but {len(devices)} are available; make the product of the axis "
            f"sizes equal {len(devices)} (or pass devices=...)."
        )
    grid = np.asarray(devices, dtype=object).reshape(tuple(sizes[a] for a in MESH_AXES))
    return Mesh(grid, MESH_AXES)


def describe_mesh(mesh: Mesh) -> str:
    """``"data=4 fsdp=2 tensor=1 (8 cpu devices)"``."""
    axes = " ".join(f"{name}={size}" for name, size in mesh.shape.items())
    return f"{axes} ({mesh.devices.size} {mesh.devices.flat[0].platform} devices)"
