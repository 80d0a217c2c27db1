"""Build each parameter from the slices its devices hold, reading only those slices.

A :class:`ParamSource` says where one parameter's values live: one checkpoint tensor
seen through a fix-up (one of the fix-up's outputs), or, for MoE experts, one tensor per
expert stacked along a new leading axis. :func:`place_param` asks the parameter's
sharding which slice each *addressable* device holds
(``Sharding.addressable_devices_indices_map``), reads each distinct slice once —
through the fix-up, so a transposed ``[in, out]`` kernel's slice is read as the
transposed slice of the ``[out, in]`` tensor, and a slice over experts reads only
those experts' tensors — casts it, puts it on its devices and assembles the global
array with ``jax.make_array_from_single_device_arrays``. Each process touches only
the bytes of its own devices' shards, so this is the multi-host load, too.

Why not ``jax.make_array_from_callback``: it collects every device's host slice
before one batched transfer, so a process would hold a whole parameter (and one copy
per device of a replicated slice). Here a host slice lives only until its
``device_put`` (we wait for each copy), and large host buffers live in their own
anonymous mappings so that they go back to the OS when freed: host memory beyond the
device buffers is about one slice (two for a transposed kernel, whose transposed view
``device_put`` copies), plus one :data:`~lrt_jax.loading.byte_ranges.READ_BLOCK_BYTES`
read block. Measured in ``tests/loading/test_slice_loading.py``: 12–16 MiB above the
arrays for a 200 MB checkpoint on 8 devices, against 202 MiB for a whole-tensor read.

The cost is in reads: a slice of a tensor's last dimension (an fsdp shard of a
transposed ``[in, out]`` kernel) spans whole rows of the stored tensor, so a process
whose k devices split those columns reads that tensor k times (from the page cache
after the first); the 200 MB load on 8 fake devices takes ~2.5 s against ~1 s for a
whole-tensor read on the 2-core CI machine. Reading row blocks once for all local
slices would remove that, at the price of holding all of them at once.

Exception: a fix-up without ``read_slice`` (GPT-NeoX's interleaved ``query_key_value``)
is read whole, once for the parameter, and sliced in memory: that parameter costs one
full tensor of host memory while it is placed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.config import ModelConfig
from lrt_jax.loading.byte_ranges import empty_host_array, full_index, normalise_index
from lrt_jax.loading.safetensors_io import StoredTensor
from lrt_jax.loading.tensor_rules import Fixup


@dataclasses.dataclass(frozen=True)
class ParamSource:
    """Where one parameter comes from.

    Attributes:
      tensors: the checkpoint tensor, or one tensor per expert (in expert order) when
        ``stacked``.
      fixup: the conversion from the HF layout; ``part`` picks its output.
      stacked: the parameter is ``[n_experts, ...]``, expert ``e`` from ``tensors[e]``.
    """

    tensors: tuple[StoredTensor, ...]
    fixup: Fixup
    part: int
    stacked: bool
    config: ModelConfig

    @property
    def sliceable(self) -> bool:
        return self.fixup.read_slice is not None

    def read_one(self, tensor: StoredTensor, index: tuple[slice, ...], sliced: bool) -> np.ndarray:
        """``to_tree(tensor)[part][index]``; with ``sliced`` (and a fix-up that can) reading only that slice."""
        if sliced and self.sliceable:
            return self.fixup.read_slice(tensor, index, self.part, self.config)
        return self.fixup.to_tree(tensor.read(), self.config)[self.part][index]

    def read(self, index: tuple[slice, ...], dtype, sliced: bool = True) -> np.ndarray:
        """The parameter's ``index`` slice (concrete bounds) as a ``dtype`` array (maybe a transposed view)."""
        if not self.stacked:  # a transposed view stays a view: device_put makes it contiguous as it copies
            return np.asarray(self.read_one(self.tensors[0], index, sliced), dtype)
        experts, rest = index[0], index[1:]
        out = empty_host_array((experts.stop - experts.start, *(s.stop - s.start for s in rest)), dtype)
        for row, expert in enumerate(range(experts.start, experts.stop)):
            out[row] = self.read_one(self.tensors[expert], rest, sliced)
        return out


def place_param(source: ParamSource, shape: tuple[int, ...], dtype, sharding=None) -> jax.Array:
    """The parameter of ``shape`` as a ``dtype`` array, in ``sharding`` (``None``: the default device).

    Only the addressable devices' slices are read; devices that hold the same slice
    (replication) share one read.
    """
    dtype = np.dtype(jnp.dtype(dtype))
    if sharding is None or not source.sliceable:
        # Whole tensors through to_tree, the conversion the HF parity tests check (read_slice is tested
        # against it); a fix-up that cannot slice is read once here and sliced in memory.
        whole = source.read(full_index(shape), dtype, sliced=False)
        if sharding is None:
            return jnp.asarray(whole)
        read = lambda index: whole[index]  # noqa: E731
    else:
        read = lambda index: source.read(index, dtype)  # noqa: E731
    devices_by_index: dict[tuple, list] = {}
    for device, index in sharding.addressable_devices_indices_map(shape).items():
        bounds = normalise_index(index, shape)
        devices_by_index.setdefault(tuple((s.start, s.stop) for s in bounds), []).append(device)
    shards = {}
    for bounds, devices in devices_by_index.items():
        host = read(tuple(slice(a, b) for a, b in bounds))
        for device in devices:
            shards[device] = jax.device_put(host, device)
        # device_put is asynchronous and keeps `host` alive until its copy is done; waiting here means one
        # host slice at a time instead of every device's slice queued at once.
        jax.block_until_ready([shards[device] for device in devices])
        del host
    arrays = [shards[device] for device in sharding.addressable_devices_indices_map(shape)]
    return jax.make_array_from_single_device_arrays(shape, sharding, arrays)
