"""Read and write the safetensors files of an HF checkpoint directory, without torch.

A directory holds either one ``model.safetensors`` or shards listed by
``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``). Tensors
are read one at a time with safetensors' NumPy backend (bfloat16 arrives as an
``ml_dtypes`` array), so peak host memory is the converted tree plus one tensor. Every
failure of the safetensors library is re-raised as :class:`CheckpointError` naming the
file, since its own messages ("MetadataIncompleteBuffer") do not say which file is bad.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from lrt_jax.loading.errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


def tensor_files(directory: Path) -> dict[str, Path]:
    """Map every tensor name in the checkpoint to the file that holds it."""
    single, index = directory / WEIGHTS_FILE, directory / WEIGHTS_INDEX_FILE
    if single.exists():
        with open_safetensors(single) as handle:
            return dict.fromkeys(handle.keys(), single)
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


@contextlib.contextmanager
def open_safetensors(path: Path):
    """``safetensors.safe_open`` with errors that name ``path``."""
    try:
        with safetensors.safe_open(str(path), framework="numpy") as handle:
            yield handle
    except (safetensors.SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({error}); re-download it.") from error


class CheckpointReader:
    """Reads named tensors from a set of safetensors files, keeping each file open once.

    Use as a context manager; ``read(name)`` returns a NumPy array in the stored dtype.
    """

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self._stack = contextlib.ExitStack()
        self._handles: dict[Path, object] = {}

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def read(self, name: str) -> np.ndarray:
        path = self.files[name]
        if path not in self._handles:
            self._handles[path] = self._stack.enter_context(open_safetensors(path))
        try:
            tensor = self._handles[path].get_tensor(name)
        except (safetensors.SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: cannot read tensor {name!r} ({error}); the file is corrupt or incomplete.") from error
        check_finite_tensor(tensor, name, path)
        return tensor


_FINITE_CHECK_BLOCK = 1 << 22  # elements per block: bounds the check's temporaries to a few MiB
_BFLOAT16_EXPONENT = np.uint16(0x7F80)  # all ones: NaN or Inf


def _non_finite(block: np.ndarray) -> np.ndarray:
    if str(block.dtype) == "bfloat16":  # ml_dtypes' isfinite is ~2x slower than testing the exponent bits
        return (block.view(np.uint16) & _BFLOAT16_EXPONENT) == _BFLOAT16_EXPONENT
    return ~np.isfinite(block)


def check_finite_tensor(tensor: np.ndarray, name: str, path: Path) -> None:
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
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf (first at flat index {where}); the "
                                  "file is damaged or was saved from a diverged run — re-download or re-save it.")


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write ``tensors`` to one safetensors file that transformers (PyTorch) can load."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    safetensors.numpy.save_file(contiguous, str(path), metadata={"format": "pt"})
