"""The GEMM kernel of the streamed statistics: centred row blocks times column panels.

On one CPU device the rows are visited in blocks of ~4 MiB (≥ 1024 rows), each
centred into ``z = [x − s_x, y − s_y]`` and multiplied as ``z[:, panel]ᵀ z[:, panel:]``
for 256-wide column panels, so only the upper block-triangle of the symmetric Gram
is computed and no centred copy of the whole input is made; otherwise (accelerators,
several devices, tracing) the rows are summed in one block. See :mod:`._stats` for the
numerics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax._broadcast import lift

__all__ = ["assemble_gram", "block_rows", "panel_bounds", "row_sums"]

_HIGHEST = jax.lax.Precision.HIGHEST
_BLOCK_BYTES = 4 * 2 ** 20   # a centred block of rows: ~4 MiB, but at least _MIN_BLOCK_ROWS
_MIN_BLOCK_ROWS = 1024
_PANEL_COLUMNS = 256         # width of the row panels of the symmetric Gram


def panel_bounds(width: int) -> tuple[int, ...]:
    """Column boundaries of the row panels that cover the symmetric Gram."""
    panels = max(1, round(width / _PANEL_COLUMNS))
    return tuple(int(b) for b in np.linspace(0, width, panels + 1).round())


def _panel_products(z, bounds):
    """Upper block-triangle of ``zᵀz``: panel ``i`` is ``z[:, lo:hi]ᵀ z[:, lo:]``.

    Skipping the blocks below the diagonal is how the symmetry of ``XᵀX`` is
    used: with ``k`` panels it saves ``(k − 1)/(2k)`` of its flops.
    """
    return tuple(jnp.matmul(z[:, lo:hi].T, z[:, lo:], precision=_HIGHEST)
                 for lo, hi in zip(bounds[:-1], bounds[1:]))


def assemble_gram(panels, bounds, width: int):
    """``[R, D]`` rows of ``zᵀz`` from the panels, the lower blocks mirrored."""
    rows = [jnp.concatenate([jnp.zeros((hi - lo, lo), panel.dtype), panel], axis=1)
            for (lo, hi), panel in zip(zip(bounds[:-1], bounds[1:]), panels)]
    upper = jnp.concatenate(rows, axis=0)
    block = np.searchsorted(np.asarray(bounds[1:]), np.arange(width), side="right")
    computed = block[:, None] <= block[None, :]
    square = upper[:, :width]
    square = jnp.where(computed, square, square.T)
    return jnp.concatenate([square, upper[:, width:]], axis=1)


def _block_sums(x, y, shift_x, shift_y, bounds, dtype):
    """Panels of ``zᵀz``, ``Σz`` and ``Σ(y − s_y)²`` of one block, ``z = [x − s_x, y − s_y]``."""
    z = jnp.concatenate([x.astype(dtype) - lift(shift_x, x), y.astype(dtype) - lift(shift_y, y)], axis=1)
    y_centred = z[:, x.shape[1]:]
    return _panel_products(z, bounds), z.sum(0), jnp.square(y_centred).sum(0)


def row_sums(x, y, shift_x, shift_y, bounds, dtype, blocked: bool):
    """Sums over all rows: in blocks of rows (one device) or in one piece."""
    n = x.shape[0]
    rows = block_rows(n, x.shape[1] + y.shape[1], dtype) if blocked else n
    n_blocks = n // rows
    n_blocked = n_blocks * rows
    parts = []
    if n_blocks:
        def add_block(i, total):
            block = [jax.lax.dynamic_slice_in_dim(a, i * rows, rows) for a in (x, y)]
            return jax.tree.map(jnp.add, total,
                                _block_sums(*block, shift_x, shift_y, bounds, dtype))

        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
            lambda a, b: _block_sums(a, b, shift_x, shift_y, bounds, dtype),
            x[:rows], y[:rows]))
        parts.append(add_block(0, zero) if n_blocks == 1 else
                     jax.lax.fori_loop(0, n_blocks, add_block, zero))
    if n_blocked < n:
        parts.append(_block_sums(x[n_blocked:], y[n_blocked:], shift_x, shift_y,
                                 bounds, dtype))
    return parts[0] if len(parts) == 1 else jax.tree.map(jnp.add, *parts)


def block_rows(n: int, width: int, dtype) -> int:
    """Rows per block: a centred block ``[rows, d_s + d_t]`` of ~``_BLOCK_BYTES``.

    A multiple of 128 (an odd contraction length such as 1333 rows made the
    GEMMs 1.4× slower), at least ``_MIN_BLOCK_ROWS``; the rows left over after
    the last full block are summed as one shorter block.
    """
    target = _BLOCK_BYTES // (width * jnp.dtype(dtype).itemsize)
    return min(n, max(_MIN_BLOCK_ROWS, target // 128 * 128))
