"""Read and write the safetensors files of an HF checkpoint directory, without torch.

A directory holds either one ``model.safetensors`` or shards listed by
``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``).

A safetensors file is an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` and the tensors' bytes,
each C-order. We parse the header ourselves and read tensors — or slices of them —
with ``pread`` (:mod:`lrt_jax.loading.byte_ranges`), so a process reads only the bytes
of the slices its devices hold and never maps the file. bfloat16 and float8 arrive as
``ml_dtypes`` arrays. Every malformed header or short file is a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import safetensors.numpy

from lrt_jax.loading.byte_ranges import TruncatedFileError, full_index, read_slice_of_stored_tensor
from lrt_jax.loading.errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"

STORAGE_DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16), "I16": np.dtype(np.int16), "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32), "U64": np.dtype(np.uint64), "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16), "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
_MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit


def tensor_files(directory: Path) -> dict[str, Path]:
    """Map every tensor name in the checkpoint to the file that holds it."""
    single, index = directory / WEIGHTS_FILE, directory / WEIGHTS_INDEX_FILE
    if single.exists():
        with open(single, "rb") as handle:
            return dict.fromkeys(read_header(handle.fileno(), single)[0], single)
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{index}: not a valid safetensors index ({error}); re-save the checkpoint.") from error
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: 'weight_map' must map tensor names to shard file names; got "
                                  f"{type(weight_map).__name__} {str(weight_map)[:60]}. Re-save the checkpoint.")
        files = {name: directory / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.exists():
                raise CheckpointError(f"{shard}: shard listed in {index.name} is missing; download or copy it.")
        return files
    raise CheckpointError(
        f"{directory}: found neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}. lrt_jax reads safetensors only; "
        "convert a PyTorch .bin checkpoint with transformers (from_pretrained, then save_pretrained)."
    )


def _corrupt(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path}: truncated or corrupt safetensors file ({detail}); re-download it.")


def read_header(fd: int, path: Path) -> tuple[dict[str, tuple[np.dtype, tuple[int, ...], int]], int]:
    """``({name: (dtype, shape, byte offset in the file)}, file size)``, every entry checked against the file."""
    size = os.fstat(fd).st_size
    prefix = os.pread(fd, 8, 0)
    if len(prefix) < 8:
        raise _corrupt(path, f"{size} bytes, shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(_MAX_HEADER_BYTES, size - 8):
        raise _corrupt(path, f"a header of {length} bytes in a file of {size}")
    try:
        header = json.loads(os.pread(fd, length, 8))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as error:
        raise _corrupt(path, f"unreadable header: {error}") from None
    data_start, entries = 8 + length, {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = STORAGE_DTYPES[entry["dtype"]], tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise _corrupt(path, f"header entry {name!r} is malformed ({error!r})") from None
        if end - begin != math.prod(shape) * dtype.itemsize or begin < 0 or data_start + end > size:
            raise _corrupt(path, f"tensor {name!r} claims bytes {begin}..{end} of data for shape {shape} "
                                 f"{dtype}, but the file holds {size - data_start}")
        entries[name] = (dtype, shape, data_start + begin)
    return entries, size


@dataclasses.dataclass(frozen=True)
class StoredTensor:
    """One tensor of an open safetensors file: its name, shape and stored dtype, readable by slices."""

    name: str
    path: Path
    fd: int
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """``tensor[index]`` in the stored dtype (the whole tensor for ``None``), checked finite.

        ``index``: one concrete step-1 slice per dimension
        (:func:`lrt_jax.loading.byte_ranges.normalise_index`).
        """
        index = full_index(self.shape) if index is None else index
        try:
            values = read_slice_of_stored_tensor(self.fd, self.offset, self.shape, self.dtype, index)
        except (TruncatedFileError, OSError) as error:
            raise CheckpointError(f"{self.path}: cannot read tensor {self.name!r} ({error}); the file is corrupt "
                                  "or incomplete.") from error
        region = "" if index == full_index(self.shape) else f" (slice {[(s.start, s.stop) for s in index]})"
        check_finite_tensor(values, self.name, self.path, region)
        return values


class CheckpointReader:
    """Opens a checkpoint's safetensors files once each and hands out :class:`StoredTensor` s.

    Use as a context manager (it closes the files); ``tensor(name)`` parses the header of
    the file that holds ``name`` on first use.
    """

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self._stack = contextlib.ExitStack()
        self._headers: dict[Path, tuple[int, dict]] = {}

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def tensor(self, name: str) -> StoredTensor:
        path = self.files[name]
        if path not in self._headers:
            handle = self._stack.enter_context(open(path, "rb"))
            self._headers[path] = (handle.fileno(), read_header(handle.fileno(), path)[0])
        fd, entries = self._headers[path]
        if name not in entries:
            raise CheckpointError(f"{path}: cannot read tensor {name!r} (the file has no such tensor, though the "
                                  "index lists it there); the file is corrupt or incomplete.")
        dtype, shape, offset = entries[name]
        return StoredTensor(name, path, fd, offset, shape, dtype)

    def read(self, name: str) -> np.ndarray:
        """The whole tensor ``name`` in its stored dtype."""
        return self.tensor(name).read()


_FINITE_CHECK_BLOCK = 1 << 22  # elements per block: bounds the check's temporaries to a few MiB
_BFLOAT16_EXPONENT = np.uint16(0x7F80)  # all ones: NaN or Inf


def _non_finite(block: np.ndarray) -> np.ndarray:
    if str(block.dtype) == "bfloat16":  # ml_dtypes' isfinite is ~2x slower than testing the exponent bits
        return (block.view(np.uint16) & _BFLOAT16_EXPONENT) == _BFLOAT16_EXPONENT
    return ~np.isfinite(block)


def check_finite_tensor(tensor: np.ndarray, name: str, path: Path, region: str = "") -> None:
    """Refuse a floating tensor holding NaN or Inf: damaged bytes would otherwise load and give NaN logits.

    One pass over the tensor in blocks, so the temporary mask stays small; about
    1–1.5 GB/s on one core (measured on the 2-core CI machine), i.e. seconds per
    10 GB of checkpoint, small beside reading it.
    """
    if str(tensor.dtype) not in ("float16", "bfloat16", "float32", "float64"):
        return
    flat = np.ascontiguousarray(tensor).reshape(-1)
    for start in range(0, flat.size, _FINITE_CHECK_BLOCK):
        non_finite = _non_finite(flat[start:start + _FINITE_CHECK_BLOCK])
        if non_finite.any():
            where = start + int(np.argmax(non_finite))
            raise CheckpointError(f"{path}: tensor {name!r}{region} holds NaN or Inf (first at flat index {where}); the "
                                  "file is damaged or was saved from a diverged run — re-download or re-save it.")


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write ``tensors`` to one safetensors file that transformers (PyTorch) can load."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    safetensors.numpy.save_file(contiguous, str(path), metadata={"format": "pt"})
