"""Reading task files record by record, with errors that point at the bad record.

Record numbers are 1-based: the position in a JSON array file, the line number
in a JSON Lines file (blank lines are skipped but still counted, so the number
is the line an editor shows).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Iterator


class TaskFormatError(ValueError):
    """A task file or one of its records does not have the expected format.

    Attributes:
      path: the file.
      record_number: 1-based record number (line number for JSON Lines), or
        ``None`` when the file as a whole is unreadable.
    """

    def __init__(self, path, record_number: int | None, problem: str):
        self.path = pathlib.Path(path)
        self.record_number = record_number
        where = f"{self.path}" if record_number is None else f"{self.path}, record {record_number} (1-based)"
        super().__init__(f"{where}: {problem}")


def read_json_array(path) -> Iterator[tuple[int, Any]]:
    """Yield ``(record_number, record)`` for a file holding one JSON array."""
    path = pathlib.Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problem = f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        raise TaskFormatError(path, None, problem) from None
    if not isinstance(records, list):
        raise TaskFormatError(path, None, f"expected a JSON array of records, found {type(records).__name__}")
    yield from enumerate(records, start=1)


def read_json_lines(path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, record)`` for a JSON Lines file."""
    path = pathlib.Path(path)
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise TaskFormatError(path, line_number, f"invalid JSON: {error.msg} at column {error.colno}") from None


def require_field(path, record_number: int, record: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    """``record[name]``, checked to exist and to be of ``kind``."""
    if not isinstance(record, dict):
        raise TaskFormatError(path, record_number, f"expected a JSON object, found {type(record).__name__}")
    if name not in record:
        raise TaskFormatError(path, record_number, f"missing field {name!r} (fields present: {sorted(record)})")
    value = record[name]
    # bool is an int subclass; a true/false where a number belongs is a format error.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        expected = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise TaskFormatError(path, record_number, f"field {name!r} should be {expected}, found {type(value).__name__}")
    return value


def _as_tuple(kind) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
