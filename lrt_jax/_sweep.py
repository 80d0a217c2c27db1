"""Sweeps: many intervention settings in one compiled, vmapped call.

Interventions are pytrees whose arrays and strengths are leaves, so a sweep over
α (or over a stack of vectors) is ``jax.vmap`` over those leaves. The direct idiom::

    alphas = jnp.linspace(0.0, 8.0, 16)
    logits = jax.vmap(lambda a: lrt_jax.forward(lm, tokens, interventions=Add(site, v, a)))(alphas)
    # logits: [16, batch, seq, vocab]

:func:`sweep` does the same from a list of settings, so the caller need not know which
leaves vary: leaves that are the same object in every setting (the shared vector) are
passed once, unbatched; the others are stacked along a new leading axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax._intervention_checks import check_finite_leaves

Output = TypeVar("Output")


def sweep(run: Callable[..., Output], settings: Sequence) -> Output:
    """``run(setting)`` for every setting in one vmapped call; outputs stacked along axis 0.

    Args:
      run: a function of one setting (an intervention or a tuple of them) returning a
        pytree of arrays, e.g. ``lambda iv: lrt_jax.forward(lm, tokens, interventions=iv)``.
      settings: settings with the same structure (intervention types, sites, position
        rules); only their array leaves differ.

    Returns:
      ``run``'s output with a leading axis of ``len(settings)``.

    Example::

        logits = lrt_jax.sweep(lambda iv: lrt_jax.forward(lm, tokens, interventions=iv),
                               [Add("layers.2.resid_post", v, a) for a in range(16)])
    """
    settings = list(settings)
    if not settings:
        raise ValueError("sweep needs at least one setting.")
    leaves, treedef = jax.tree.flatten(settings[0])
    columns = [leaves]
    for index, setting in enumerate(settings[1:], start=1):
        setting_leaves, setting_treedef = jax.tree.flatten(setting)
        if setting_treedef != treedef:
            raise ValueError(
                f"Setting {index} differs from setting 0 in structure ({setting_treedef} vs {treedef}); "
                "a sweep varies only arrays and strengths, not intervention types, sites or position rules."
            )
        columns.append(setting_leaves)
    for index, setting in enumerate(settings):
        # Inside the vmap every leaf is a tracer, so values are checked here, while they are concrete.
        check_finite_leaves(setting, f"Setting {index} of the sweep")
    for i, leaf in enumerate(leaves):
        shapes = [tuple(np.shape(column[i])) for column in columns]
        if len(set(shapes)) > 1:
            differing = next(index for index, shape in enumerate(shapes) if shape != shapes[0])
            raise ValueError(
                f"Setting {differing} has an array of shape {shapes[differing]} where setting 0 has "
                f"{shapes[0]}; a sweep stacks each array across settings, so vectors must share one width and shape."
            )

    shared = [all(column[i] is leaves[i] for column in columns) for i in range(len(leaves))]
    arguments = [leaves[i] if shared[i] else jnp.stack([column[i] for column in columns]) for i in range(len(leaves))]
    in_axes = [None if is_shared else 0 for is_shared in shared]

    def run_one(*setting_leaves):
        return run(jax.tree.unflatten(treedef, setting_leaves))

    return jax.vmap(run_one, in_axes=in_axes)(*arguments)
