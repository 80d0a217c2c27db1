"""``chain(...)``: compose mappers, e.g. ``chain(standardize(), pca(256), ridge(1.0))``.

Stage i is fitted on the output of stages ``< i`` (pre-transforms ignore y);
``apply`` runs the stages in order. When the stages are affine the chain is
affine too, and :meth:`ChainState.affine_parts` multiplies them out::

    x W₁ + b₁ ↦ (x W₁ + b₁) W₂ + b₂ = x (W₁W₂) + (b₁W₂ + b₂),

so ``linear(chain_state)`` is ``[d_s, d_t]`` in the *original* source
coordinates and ``v @ linear(state)`` transfers a direction through the
whole pipeline. With streamed statistics each affine stage's state maps the
statistics forward exactly (``transform_source_stats``), so
``fit_from_stats`` needs no second pass over the data.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _base, _stats

_HIGHEST = jax.lax.Precision.HIGHEST


class ChainState(NamedTuple):
    """States of the chained stages, in order.

    Attributes:
        stages: tuple of the stages' states.
    """

    stages: tuple

    def affine_parts(self):
        weight, offset = _base.affine_parts(self.stages[0])
        for stage in self.stages[1:]:
            next_weight, next_offset = _base.affine_parts(stage)
            weight = jnp.matmul(weight, next_weight, precision=_HIGHEST)
            offset = jnp.matmul(offset, next_weight, precision=_HIGHEST) + next_offset
        return weight, offset


def chain(*mappers: _base.Mapper) -> _base.Mapper:
    """Composes mappers left to right into one ``Mapper`` producing ``ChainState``.

    ``fit_from_stats`` exists when every stage has one; all stages but the last
    must then be affine (true for the pre-transforms and the closed-form
    solvers).
    """
    if not mappers:
        raise ValueError("chain() needs at least one mapper.")

    def fit(x, y):
        x, states = _base.upcast_input(x), []  # the stages' outputs stay float32 between fits
        for mapper in mappers[:-1]:
            states.append(mapper.fit(x, y))
            x = mapper.apply(states[-1], x)
        states.append(mappers[-1].fit(x, y))
        return ChainState(tuple(states))

    def apply(state: ChainState, x):
        # Stages run in float32 (or wider) and the result is rounded to x's dtype once, at the end.
        out = _base.upcast_input(x)
        for mapper, stage in zip(mappers, state.stages):
            out = mapper.apply(stage, out)
        return _base.in_input_dtype(out, x)

    def fit_from_stats(stats):
        states = []
        for mapper in mappers[:-1]:
            states.append(mapper.fit_from_stats(stats))
            stats = _stats.transform_source_stats(stats, *_base.affine_parts(states[-1]))
        states.append(mappers[-1].fit_from_stats(stats))
        return ChainState(tuple(states))

    has_stats = all(mapper.fit_from_stats is not None for mapper in mappers)
    return _base.Mapper(fit, apply, fit_from_stats if has_stats else None)
