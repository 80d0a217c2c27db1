"""The patching grid: one patch is an intervention of arrays, the whole grid one ``jax.vmap``.

A single patch copies the clean run's value into the corrupt run at one layer's site
and one unit (a position, a head, a neuron). :class:`PatchFromClean` is that patch as
an intervention pytree: it is installed at the site of *every* layer of the grid, and
its leaves say whether this layer is the patched one (``layer_on``, a traced bool)
and which units along ``axis`` are copied (``units``, a bool mask)::

    value ← where(layer_on & units[axis], clean_value, value)

Because the layer choice is data, not a site name, one traced program covers every
layer, and ``jax.vmap`` over the one-hot rows ``(layer_on[n_layers], units[n_units])``
of all ``n_layers × n_units`` cells runs the grid in one compiled call
(:func:`patching_grid`). With ``cells_per_step`` the cells run through
``jax.lax.map(..., batch_size=cells_per_step)``: still one call, with the memory of
``cells_per_step`` forward passes at a time.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from lrt_jax._run import run, tokens_and_mask
from lrt_jax.config import ModelConfig
from lrt_jax.model import unembed
from lrt_jax.positions import last_real_index

Over = Literal["position", "head", "neuron"]
UNIT_AXIS = {"position": 1, "head": 2, "neuron": 2}

__all__ = ["Over", "PatchFromClean", "PatchingGrid", "UNIT_AXIS", "next_token_kl", "patching_grid"]


@dataclasses.dataclass(frozen=True)
class PatchFromClean:
    """``h ← where(layer_on & units, clean, h)`` at ``site``, ``units`` laid along ``axis`` of ``h``.

    Attributes:
      site: the site name (static).
      clean: the clean run's value at ``site`` as captured (``[batch, seq, ...]``; ``h`` may come
        flattened to ``[batch, seq, heads · head_dim]`` for a per-head site).
      layer_on: bool ``[]``: whether this site is the patched one of the grid cell.
      units: bool ``[h.shape[axis]]``: the positions (axis 1), heads or neurons (axis 2) copied.
      axis: the axis of ``h`` that ``units`` indexes (static).

    An intervention like those of :mod:`lrt_jax.interventions` (``positions="all"``:
    every real token; padding is never written), so :func:`lrt_jax.run` applies it.
    """

    site: str
    clean: jax.Array
    layer_on: jax.Array
    units: jax.Array
    axis: int = 1
    positions = "all"

    def edit(self, h, values_at, residual_norm):
        # The hook may hand a per-head site flattened to [batch, seq, heads · head_dim]; edit it in clean's shape.
        full = jnp.reshape(h, self.clean.shape)
        shape = [1] * full.ndim
        shape[self.axis] = self.units.shape[-1]
        copied = self.layer_on & jnp.reshape(self.units, shape)
        return jnp.reshape(jnp.where(copied, self.clean.astype(h.dtype), full), h.shape)


jax.tree_util.register_dataclass(PatchFromClean, data_fields=["clean", "layer_on", "units"],
                                 meta_fields=["site", "axis"])


class PatchingGrid(NamedTuple):
    """What :func:`patching_grid` returns (``batch`` rows of the clean/corrupt batches).

    Attributes:
      kl: ``[n_layers, n_units, batch]`` KL(clean ‖ patched) of the next-token distribution
        at each row's last real token.
      logit_diff: ``[n_layers, n_units, batch]`` ``logit[correct] − logit[wrong]`` there,
        or ``None`` without answers.
      clean_logit_diff, corrupt_logit_diff: ``[batch]`` the same for the unpatched runs (or ``None``).
      corrupt_kl: ``[batch]`` KL(clean ‖ corrupt); the clean run's KL is 0.
    """

    kl: jax.Array
    logit_diff: jax.Array | None
    clean_logit_diff: jax.Array | None
    corrupt_logit_diff: jax.Array | None
    corrupt_kl: jax.Array


def next_token_kl(reference_logits: jax.Array, logits: jax.Array) -> jax.Array:
    """``KL(p_ref ‖ p) = Σ_v p_ref(v) (log p_ref(v) − log p(v))`` over the last axis, in float32."""
    reference = jax.nn.log_softmax(reference_logits.astype(jnp.float32), axis=-1)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(reference) * (reference - log_p), axis=-1)


def _logit_diff(logits: jax.Array, answers) -> jax.Array:
    """``logits [batch, vocab]`` at ``answers = (correct, wrong)`` (ints or ``[batch]``): ``[batch]``."""
    batch = logits.shape[0]
    correct, wrong = (jnp.broadcast_to(jnp.asarray(a, jnp.int32), (batch,)) for a in answers)
    rows = jnp.arange(batch)
    return logits[rows, correct] - logits[rows, wrong]


def _last_logits(config: ModelConfig, params, final_norm: jax.Array, mask: jax.Array) -> jax.Array:
    last = jnp.take_along_axis(final_norm, last_real_index(mask)[:, None, None], axis=1)[:, 0]
    return unembed(config, params, last)


def patching_grid(config: ModelConfig, params, clean, corrupt, sites: tuple[str, ...], *, over: Over = "position",
                  answers=None, cells_per_step: int | None = None) -> PatchingGrid:
    """Patch the clean value of every ``(site, unit)`` cell into the corrupt run; traceable, unchecked.

    Args:
      config, params: the model.
      clean, corrupt: batches of the same shape and mask (a :class:`~lrt_jax.text.Batch`,
        a ``(tokens, mask)`` pair or tokens ``[batch, seq]``); row ``r`` of one pairs with
        row ``r`` of the other.
      sites: one site per grid layer, e.g. ``("layers.0.resid_pre", "layers.1.resid_pre")``.
      over: ``"position"`` (units along axis 1: sequence slots), ``"head"`` (axis 2 of a
        ``[batch, seq, heads, head_dim]`` site, all positions) or ``"neuron"`` (axis 2 of
        a ``[batch, seq, width]`` site, all positions).
      answers: ``(correct, wrong)`` token ids (ints or ``[batch]``) for the logit
        difference, or ``None`` for KL only.
      cells_per_step: run the cells ``cells_per_step`` at a time (``jax.lax.map``) instead
        of all at once; ``None`` vmaps the whole grid.

    Returns:
      :class:`PatchingGrid`. The KL and logit difference are read at each row's last real token.
    """
    axis = UNIT_AXIS[over]
    _, mask = tokens_and_mask(clean)
    clean_run = run(config, params, clean, sites=(*sites, "final_norm"))
    clean_logits = _last_logits(config, params, clean_run.activations["final_norm"], mask)
    n_layers, n_units = len(sites), clean_run.activations[sites[0]].shape[axis]

    def last_logits_patched(layer_on, units):
        patches = tuple(PatchFromClean(site, clean_run.activations[site], layer_on[index], units, axis)
                        for index, site in enumerate(sites))
        out = run(config, params, corrupt, interventions=patches, sites="final_norm")
        return _last_logits(config, params, out.activations["final_norm"], mask)

    cells = (jnp.repeat(jnp.eye(n_layers, dtype=bool), n_units, axis=0),
             jnp.tile(jnp.eye(n_units, dtype=bool), (n_layers, 1)))
    if cells_per_step is None:
        patched = jax.vmap(last_logits_patched)(*cells)
    else:
        patched = jax.lax.map(lambda cell: last_logits_patched(*cell), cells, batch_size=cells_per_step)
    corrupt_logits = _last_logits(config, params, run(config, params, corrupt, sites="final_norm")
                                  .activations["final_norm"], mask)

    def grid(values):
        return jnp.reshape(values, (n_layers, n_units, *values.shape[1:]))

    kl = grid(jax.vmap(next_token_kl, in_axes=(None, 0))(clean_logits, patched))
    if answers is None:
        diffs = (None, None, None)
    else:
        diffs = (grid(jax.vmap(_logit_diff, in_axes=(0, None))(patched, answers)),
                 _logit_diff(clean_logits, answers), _logit_diff(corrupt_logits, answers))
    return PatchingGrid(kl, diffs[0], diffs[1], diffs[2], next_token_kl(clean_logits, corrupt_logits))
