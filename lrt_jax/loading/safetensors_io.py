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
            return self._handles[path].get_tensor(name)
        except (safetensors.SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: cannot read tensor {name!r} ({error}); the file is corrupt or incomplete.") from error


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Write ``tensors`` to one safetensors file that transformers (PyTorch) can load."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    safetensors.numpy.save_file(contiguous, str(path), metadata={"format": "pt"})
