"""Read a rectangular slice of a row-major tensor stored in a file, touching only its bytes.

A safetensors tensor is a C-order block of bytes at a known offset. A slice
``tensor[a0:b0, a1:b1, ...]`` is a strided set of runs inside it: the slice of the
last dimensions that it takes whole is one contiguous run per index of the outer
dimensions. :func:`read_slice_of_stored_tensor` reads those runs with ``os.preadv``
straight into the result, grouping neighbouring runs into one read of at most
:data:`READ_BLOCK_BYTES` when they are close (a column slice of ``[out, in]`` reads a
block of rows and keeps its columns), so the memory it uses beyond the slice itself is
one block. The bytes it reads are the slice's own when the slice is a block of whole
rows (a shard of the leading dimension); a slice of the last dimension reads the whole
rows it spans, one block at a time, so when a process's devices split a tensor's
columns k ways it reads that tensor k times (from the page cache after the first).

Plain ``pread`` rather than ``mmap`` (which safetensors' own reader uses): pages of a
mapped file count towards the process's resident memory until it is unmapped, so
reading a checkpoint through a map makes the process look (and, under memory
pressure, act) as large as the checkpoint.
"""

from __future__ import annotations

import math
import mmap
import os

import numpy as np

READ_BLOCK_BYTES = 8 << 20  # the most bytes read at once for a non-contiguous slice
_OWN_MAPPING_FROM = 1 << 20


def empty_host_array(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, in its own anonymous mapping when it is large.

    Loading allocates and frees one slice-sized buffer after another, interleaved with
    the device buffers. From the heap, the allocator keeps the freed ones (glibc raises
    its mmap threshold after the first large free), so the process would grow by a few
    slices that it never gives back; an unmapped buffer returns to the OS at once.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _OWN_MAPPING_FROM:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)


class TruncatedFileError(EOFError):
    """The file ended before the bytes its header promises."""


def read_into(fd: int, buffer: np.ndarray, offset: int) -> None:
    """Fill the C-contiguous ``buffer`` with the file's bytes from ``offset`` (retrying short reads)."""
    view = memoryview(buffer.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        count = os.preadv(fd, [view[done:]], offset + done)
        if count == 0:
            raise TruncatedFileError(f"the file ends at byte {offset + done}, before byte {offset + len(view)}")
        done += count


class _Block:
    """One read buffer of at most READ_BLOCK_BYTES, allocated on first use and reused by every read of a slice
    (a fresh buffer per read would pay the page faults of new memory each time)."""

    def __init__(self, dtype: np.dtype):
        self.dtype, self.buffer = dtype, None

    def take(self, nbytes: int) -> np.ndarray:
        if self.buffer is None:
            self.buffer = empty_host_array((READ_BLOCK_BYTES // self.dtype.itemsize,), self.dtype)
        return self.buffer[: nbytes // self.dtype.itemsize]


def _fill(fd: int, first: int, sizes: tuple[int, ...], strides: tuple[int, ...], out: np.ndarray,
          block: _Block) -> None:
    """Read the strided region whose first element is at byte ``first`` into ``out`` (C-contiguous)."""
    itemsize = out.dtype.itemsize
    covering = sum((n - 1) * s for n, s in zip(sizes, strides)) + itemsize
    if covering == out.nbytes:  # the region is one contiguous run
        read_into(fd, out, first)
        return
    if covering <= READ_BLOCK_BYTES:
        buffer = block.take(covering)
        read_into(fd, buffer, first)
        out[...] = np.lib.stride_tricks.as_strided(buffer, shape=sizes, strides=strides)
        return
    inner = sum((n - 1) * s for n, s in zip(sizes[1:], strides[1:])) + itemsize
    if inner <= READ_BLOCK_BYTES:  # several outer rows per read
        rows = max(1, 1 + (READ_BLOCK_BYTES - inner) // strides[0])
        for start in range(0, sizes[0], rows):
            stop = min(start + rows, sizes[0])
            _fill(fd, first + start * strides[0], (stop - start, *sizes[1:]), strides, out[start:stop], block)
        return
    for row in range(sizes[0]):  # one outer row is itself larger than a block
        _fill(fd, first + row * strides[0], sizes[1:], strides[1:], out[row], block)


def read_slice_of_stored_tensor(fd: int, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                                index: tuple[slice, ...]) -> np.ndarray:
    """``tensor[index]`` of the C-order tensor of ``shape``/``dtype`` stored at byte ``offset`` of ``fd``.

    Args:
      index: one ``slice`` per dimension with concrete, in-range ``start <= stop`` and
        step 1 (see :func:`normalise_index`).

    Returns:
      A new C-contiguous array of shape ``[stop - start for each dimension]``.
    """
    sizes = tuple(s.stop - s.start for s in index)
    out = empty_host_array(sizes, dtype)
    if out.size == 0:
        return out
    strides = tuple(dtype.itemsize * math.prod(shape[d + 1:]) for d in range(len(shape)))
    first = offset + sum(s.start * stride for s, stride in zip(index, strides))
    _fill(fd, first, sizes, strides, out, _Block(dtype))
    return out


def normalise_index(index, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``index`` (a tuple of slices, as ``Sharding.addressable_devices_indices_map`` gives) with
    concrete bounds, padded with full slices to ``len(shape)``; steps other than 1 are refused."""
    index = tuple(index) + (slice(None),) * (len(shape) - len(tuple(index)))
    bounds = []
    for part, size in zip(index, shape):
        start, stop, step = part.indices(size)
        if step != 1:
            raise ValueError(f"slices of a stored tensor take step 1; got {part}.")
        bounds.append(slice(start, max(start, stop)))
    return tuple(bounds)


def full_index(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, size) for size in shape)


def shifted(part: slice, offset: int) -> slice:
    """``part`` moved by ``offset`` along its dimension."""
    return slice(part.start + offset, part.stop + offset)
