"""Vectors keyed by decoder block, the convention of llama.cpp, repeng and steering-vectors.

All three number a steering vector by the 0-based decoder block whose *output* it is
added to. That output is our ``layers.{i}.resid_post`` (HF ``hidden_states[i+1]``), so
block ``i`` is site ``layers.{i}.resid_post`` with no shift, and no other site has a slot
there. :func:`vectors_by_block` turns the ways a caller may give vectors — one
:class:`SteeringVector`, an iterable of them, or ``{layer index | site: vector | array}`` —
into checked ``{block: float32 [d_model]}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from lrt_jax.steering._vector import SteeringVector

_RESID_POST = re.compile(r"^layers\.(\d+)\.resid_post$")


def resid_post_site(block: int) -> str:
    """The site a vector for decoder block ``block`` is added at: ``layers.{block}.resid_post``."""
    return f"layers.{block}.resid_post"


def block_of_site(site: str, *, tool: str) -> int:
    """The block index of a ``layers.{i}.resid_post`` site; other sites have no slot in ``tool``."""
    match = _RESID_POST.match(site)
    if match is None:
        raise ValueError(
            f"site {site!r} has no {tool} slot: a vector there is added to a decoder block's output, so only "
            "'layers.{i}.resid_post' sites can be used.")
    return int(match.group(1))


def _entries(vectors) -> list[tuple[object, object]]:
    if isinstance(vectors, SteeringVector):
        return [(vectors.metadata.site, vectors)]
    if isinstance(vectors, Mapping):
        return list(vectors.items())
    entries = []
    for vector in vectors:
        if not isinstance(vector, SteeringVector):
            raise TypeError("without layer keys, give SteeringVectors (their metadata.site gives the layer).")
        entries.append((vector.metadata.site, vector))
    return entries


def _block_of_key(key, tool: str) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"layer key {int(key)}: give a non-negative block index.")
        return int(key)
    if isinstance(key, str):
        return block_of_site(key, tool=tool)
    raise TypeError(f"vector key {key!r}: expected a layer index (int) or a site 'layers.{{i}}.resid_post'.")


def vectors_by_block(vectors, *, tool: str) -> dict[int, np.ndarray]:
    """``{block: float32 [d_model]}`` sorted by block: one row per block, one width, at least one block.

    Raises:
      ValueError: a site without a slot, a vector keyed at another site than its own, a
        vector that is not one row, two vectors for one block, mixed widths, or none.
      TypeError: keys that are neither block indices nor sites.
    """
    by_block: dict[int, np.ndarray] = {}
    for key, value in _entries(vectors):
        block = _block_of_key(key, tool)
        if isinstance(value, SteeringVector):
            if block_of_site(value.metadata.site, tool=tool) != block:
                raise ValueError(f"vector keyed {key!r} was made for site {value.metadata.site!r}; it would be "
                                 f"added at {resid_post_site(block)!r}.")
            value = value.vector
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(f"{resid_post_site(block)}: a vector is one [d_model] row; got shape {array.shape}.")
        if block in by_block:
            raise ValueError(f"two vectors for {resid_post_site(block)}; give one per layer.")
        by_block[block] = array
    if not by_block:
        raise ValueError(f"no vectors for {tool}; give at least one layer.")
    widths = {block: array.shape[0] for block, array in by_block.items()}
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"layer {block}: {width}" for block, width in sorted(widths.items()))
        raise ValueError(f"vectors have different widths ({listed}); one vector set is for one model width.")
    return dict(sorted(by_block.items()))
