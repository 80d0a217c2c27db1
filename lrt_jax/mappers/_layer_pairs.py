"""Fit and score every source × target layer pair in one vmapped, jitted call.

With source activations ``xs [L_s, n, d_s]`` and target activations
``ys [L_t, n, d_t]`` (rows paired across all layers), the fit of pair
``(i, j)`` is ``mapper.fit(xs[i], ys[j])``; a double ``vmap`` runs all
``L_s·L_t`` fits as one XLA program, which is why mapper fits must trace.
Scores are on held-out rows ``x_test [L_s, m, d_s]``, ``y_test [L_t, m, d_t]``:

* ``r2[i, j]`` — R² of ``apply(state_ij, x_test[i])`` against ``y_test[j]``;
* ``cka[i, j]`` — linear CKA of ``x_test[i]`` and ``y_test[j]`` (a map-free
  similarity of the two layers, the usual companion to R²).

Value checks are traced (see ``checked_fit``): wrap the call in
``checked_fit`` to have NaN/Inf inputs raise.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax

from lrt_jax import metrics
from lrt_jax.mappers import _base


class LayerPairScores(NamedTuple):
    """Scores of every layer pair.

    Attributes:
        r2: ``[L_s, L_t]`` held-out R² of the map from source i to target j.
        cka: ``[L_s, L_t]`` linear CKA of source layer i and target layer j.
        states: the fitted states, each leaf with leading axes ``[L_s, L_t]``.
    """

    r2: jax.Array
    cka: jax.Array
    states: Any


def fit_layer_pairs(mapper: _base.Mapper, xs, ys, x_test, y_test) -> LayerPairScores:
    """Fits ``mapper`` on every ``(xs[i], ys[j])`` and scores it on the test rows.

    Args:
        mapper: any mapper, e.g. ``ridge(alphas=np.logspace(-2, 4, 7))``.
        xs: ``[L_s, n, d_s]`` training source activations per layer.
        ys: ``[L_t, n, d_t]`` training target activations, rows paired with ``xs``.
        x_test: ``[L_s, m, d_s]`` held-out source activations.
        y_test: ``[L_t, m, d_t]`` held-out targets, rows paired with ``x_test``.

    Returns:
        ``LayerPairScores(r2 [L_s, L_t], cka [L_s, L_t], states)``.

    Example::

        scores = fit_layer_pairs(ridge(1.0), xs, ys, x_test, y_test)
        best_target = scores.r2.argmax(axis=1)      # per source layer
    """
    for name, array in (("xs", xs), ("ys", ys), ("x_test", x_test), ("y_test", y_test)):
        if jax.numpy.ndim(array) != 3:
            raise ValueError(f"{name} must be [layers, n, d], got shape"
                             f" {jax.numpy.shape(array)}; stack the layers first.")
    if xs.shape[0] != x_test.shape[0] or ys.shape[0] != y_test.shape[0]:
        raise ValueError(
            f"train and test must have the same layers: xs has {xs.shape[0]} and"
            f" x_test {x_test.shape[0]}; ys has {ys.shape[0]} and y_test {y_test.shape[0]}.")
    return _fit_layer_pairs(mapper, xs, ys, x_test, y_test)


@partial(jax.jit, static_argnums=0)
def _fit_layer_pairs(mapper, xs, ys, x_test, y_test):
    def one_pair(x, y, x_held_out, y_held_out):
        state = mapper.fit(x, y)
        r2 = metrics.r2_score(y_held_out, mapper.apply(state, _base.upcast_input(x_held_out)))
        return LayerPairScores(r2, metrics.linear_cka(x_held_out, y_held_out), state)

    over_targets = jax.vmap(one_pair, in_axes=(None, 0, None, 0))
    return jax.vmap(over_targets, in_axes=(0, None, 0, None))(xs, ys, x_test, y_test)
