"""The one exception type of the loader; config problems use :class:`UnsupportedModelError`."""

from __future__ import annotations


class CheckpointError(FileNotFoundError):
    """A checkpoint directory or file is missing, incomplete, corrupt, or disagrees with its config.

    A subclass of :class:`FileNotFoundError` so that callers treating "no usable
    checkpoint here" as one condition can catch either. The message always names the
    file (and the tensor, when one is at fault) and says what to do about it.
    """
