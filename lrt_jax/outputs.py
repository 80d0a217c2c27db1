"""Writing results safely: strict JSON, atomic files, and output directories that never mix runs.

Three rules, shared by every command and report writer:

- **Strict JSON.** ``NaN`` and ``±Inf`` are not JSON; :func:`to_strict_json` writes them
  as ``null`` (so any JSON reader can read every file we write).
- **Atomic writes.** A file is written beside its destination under a temporary name
  and renamed into place (:func:`atomic_path`), so a crash or a kill leaves either the
  old file or the new one, never half of one.
- **One run per directory.** :func:`prepare_output_dir` is called *before* any work: it
  refuses an ``--out`` below a file, or one that already holds files this command
  writes (or another run's manifest), unless ``overwrite`` is given — then it removes
  only the files the previous run listed in its manifest and the ones this run will
  write. :meth:`OutputDir.finish` records what the run wrote in ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"


def strict_json_value(value):
    """``value`` with every non-finite float (also inside lists/dicts/tuples) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(item) for item in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # NumPy / JAX scalars and arrays
        return strict_json_value(value.tolist())
    return value


def to_strict_json(value, **dump_options) -> str:
    """``json.dumps`` that writes non-finite floats as ``null`` and never emits a bare ``NaN``."""
    return json.dumps(strict_json_value(value), allow_nan=False, **dump_options)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    The temporary name keeps the suffix, so writers that look at it (matplotlib,
    safetensors) still pick the right format.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_records_csv(path, records, columns) -> None:
    """A header of ``columns`` and one line per dataclass record (floats at full precision), written atomically."""
    import csv
    import dataclasses

    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(dataclasses.asdict(record) for record in records)


def write_json_atomic(path, value, indent: int | None = 2) -> None:
    """Write ``value`` as strict JSON (non-finite → ``null``) to ``path`` atomically."""
    write_text_atomic(path, to_strict_json(value, indent=indent))


def check_output_location(out) -> Path:
    """``out`` as a Path, refused (``NotADirectoryError``) when it or a parent is an existing file."""
    out = Path(out)
    for candidate in (out, *out.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise NotADirectoryError(
                    f"output directory {out}: {candidate} is a file; choose an --out that is a directory or new.")
            break
    return out


def check_output_file(path, overwrite: bool) -> Path:
    """A single output file: its folder must be usable, and an existing file needs ``overwrite``."""
    path = Path(path)
    check_output_location(path.parent)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; give a file name.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another name.")
    return path


@dataclass
class OutputDir:
    """A prepared output directory; :meth:`path` names a file, :meth:`finish` writes the manifest."""

    root: Path
    command: str
    files: tuple[str, ...]
    started: float = field(default_factory=time.time)

    def path(self, name: str) -> Path:
        """The path of one of this run's files (a name from ``files``, or below one that is a folder)."""
        return self.root / name

    def finish(self, written=None) -> Path:
        """Write ``manifest.json``: the command, its arguments, the files written and the time."""
        present = [name for name in (written if written is not None else self.files) if (self.root / name).exists()]
        manifest = {"command": self.command, "argv": sys.argv[1:], "files": sorted(present),
                    "started": self.started, "finished": time.time()}
        write_json_atomic(self.root / MANIFEST, manifest)
        return self.root / MANIFEST


def _previous_files(root: Path) -> list[str]:
    manifest = root / MANIFEST
    if not manifest.exists():
        return []
    try:
        files = json.loads(manifest.read_text()).get("files", [])
    except (json.JSONDecodeError, AttributeError):
        return []
    return [name for name in files if isinstance(name, str) and "/" not in name.strip("/") and name != MANIFEST]


def prepare_output_dir(out, command: str, files, *, overwrite: bool = False) -> OutputDir:
    """Check and prepare ``out`` for a run of ``command`` that writes ``files`` (names in ``out``).

    Call it before any work, so a wrong ``--out`` costs nothing.

    Raises:
      NotADirectoryError: ``out`` or a parent is a file.
      FileExistsError: ``out`` holds results (a manifest or one of ``files``) and
        ``overwrite`` is false; the message names them and the flag.
    """
    root = check_output_location(out)
    files = tuple(files)
    existing = sorted({name for name in (*files, MANIFEST) if (root / name).exists()} | set(_previous_files(root)))
    existing = [name for name in existing if (root / name).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:6]) + (" …" if len(existing) > 6 else "")
        raise FileExistsError(
            f"output directory {root} already holds results ({shown}); pass --overwrite to replace this "
            "command's files there, or choose another --out.")
    for name in existing:
        target = root / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return OutputDir(root, command, files)
