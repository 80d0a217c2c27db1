"""Interventions: small pytrees that rewrite the value at a site, on chosen positions.

An intervention names a site (see :mod:`lrt_jax.sites`), the positions it touches
and what it does to the activation ``h [batch, seq, width]`` there:

=============================== ===============================================
``Add(site, vector, alpha)``    ``h ← h + α·v``   (``normalize``: see below)
``Replace(site, values)``       ``h ← values``
``Mix(site, values, beta)``     ``h ← (1 − β)·h + β·values``
``Ablate(site, direction)``     ``h ← h − (h·û)·û``  with ``û = u / ‖u‖``
``Scale(site, factor)``         ``h ← factor·h``
=============================== ===============================================

Per-position arrays (``vector``, ``values``, ``direction``) are ``[width]`` (the same
at every position), ``[seq, width]`` or ``[batch, seq, width]``, where ``seq`` counts
the *slots* of the whole sequence: the input length in :func:`lrt_jax.forward`, the
prompt length plus ``max_new_tokens`` in :func:`lrt_jax.generate`.

``Add.normalize``: ``None`` adds ``α·v``; ``"unit"`` adds ``α·v/‖v‖`` (α is the norm of
what is added); ``"residual"`` adds ``α·m·v/‖v‖`` where ``m`` is the row's mean norm of
``h`` over its real prompt tokens, measured in the same pass just before this edit
(in generation it is measured once on the prompt and reused for generated tokens).

Position rules (``positions=``), always restricted to real (non-padding) tokens:

* ``"all"`` — every token: prompt and generated.
* ``"prompt"`` — prompt tokens; in :func:`lrt_jax.forward` every token is a prompt token.
* ``"generated"`` — tokens produced by :func:`lrt_jax.generate` (an error in ``forward``).
* ``"last"`` — the last prompt token of each row (the last real token in ``forward``).
* a boolean ``[seq]`` or ``[batch, seq]`` mask over the slots, as for arrays above.

Interventions are pytrees: the site, the position rule and ``normalize`` are static,
the arrays and strengths are leaves. So ``jax.vmap`` over a leaf runs a sweep in one
compiled call (see :mod:`lrt_jax._sweep`)::

    run = lambda a: lrt_jax.forward(lm, tokens, interventions=Add("layers.1.resid_post", v, a))
    logits = jax.vmap(run)(jnp.linspace(0, 8, 16))   # [16, batch, seq, vocab]

Several interventions at one site apply in the order given; a capture at that site
reads the value after all of them (:func:`lrt_jax._run.site_hooks`). The checks
of what a user passes live in :mod:`lrt_jax._intervention_checks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from lrt_jax._broadcast import lift
from lrt_jax.positions import last_real_index

POSITION_RULES = ("all", "prompt", "generated", "last")
NORMALIZE_MODES = (None, "unit", "residual")
__all__ = ["Ablate", "Add", "INTERVENTION_TYPES", "Mix", "PositionContext", "Replace", "Scale", "decode_context",
           "intervention_hook", "positions_touched", "prompt_context"]

Positions = Literal["all", "prompt", "generated", "last"] | Any  # or a boolean mask


def _register_intervention(array_fields: tuple[str, ...], static_fields: tuple[str, ...] = ()):
    """Make a frozen dataclass a pytree: ``array_fields`` (and a mask ``positions``) are leaves."""

    def register(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.per_position_fields = tuple(f for f in array_fields if f in ("vector", "values", "direction"))

        def flatten(item):
            rule = item.positions
            mask_leaf = () if isinstance(rule, str) else (rule,)
            leaves = tuple(getattr(item, name) for name in array_fields) + mask_leaf
            static = (item.site, rule if isinstance(rule, str) else None,
                      tuple(getattr(item, name) for name in static_fields))
            return leaves, static

        def unflatten(static, leaves):
            site, rule, static_values = static
            fields = dict(zip(array_fields, leaves))
            fields["positions"] = rule if rule is not None else leaves[len(array_fields)]
            return cls(site=site, **fields, **dict(zip(static_fields, static_values)))

        jax.tree_util.register_pytree_node(cls, flatten, unflatten)
        return cls

    return register


def _unit(array: jax.Array) -> jax.Array:
    return array / jnp.linalg.norm(array, axis=-1, keepdims=True)


@_register_intervention(("vector", "alpha"), static_fields=("normalize",))
class Add:
    """``h ← h + α·v`` at ``positions``; ``normalize`` ∈ ``{None, "unit", "residual"}``."""

    site: str
    vector: Any
    alpha: Any = 1.0
    positions: Positions = "all"
    normalize: Literal["unit", "residual"] | None = None

    def edit(self, h, values_at, residual_norm):
        vector = values_at(self.vector)
        if self.normalize is not None:
            vector = _unit(vector)
        vector = lift(vector, h)
        if self.normalize == "residual":
            vector = vector * residual_norm[:, None, None]
        return h + self.alpha * vector


@_register_intervention(("values",))
class Replace:
    """``h ← values`` at ``positions``."""

    site: str
    values: Any
    positions: Positions = "all"

    def edit(self, h, values_at, residual_norm):
        return jnp.broadcast_to(values_at(self.values), h.shape)


@_register_intervention(("values", "beta"))
class Mix:
    """``h ← (1 − β)·h + β·values`` at ``positions`` (β = 1 is :class:`Replace`)."""

    site: str
    values: Any
    beta: Any = 0.5
    positions: Positions = "all"

    def edit(self, h, values_at, residual_norm):
        return (1 - self.beta) * h + self.beta * lift(values_at(self.values), h)


@_register_intervention(("direction",))
class Ablate:
    """Project ``direction`` out of ``h`` at ``positions``: ``h ← h − (h·û)·û``."""

    site: str
    direction: Any
    positions: Positions = "all"

    def edit(self, h, values_at, residual_norm):
        unit = lift(_unit(values_at(self.direction)), h)
        return h - jnp.sum(h * unit, axis=-1, keepdims=True) * unit


@_register_intervention(("factor",))
class Scale:
    """``h ← factor·h`` at ``positions``."""

    site: str
    factor: Any
    positions: Positions = "all"

    def edit(self, h, values_at, residual_norm):
        return self.factor * h


INTERVENTION_TYPES = (Add, Replace, Mix, Ablate, Scale)
SCALAR_FIELDS = {Add: ("alpha",), Mix: ("beta",), Scale: ("factor",)}


@dataclasses.dataclass(frozen=True)
class PositionContext:
    """Where the ``seq`` tokens of one decoder call sit in the whole sequence.

    Attributes:
      slots: int ``[seq]``, the slot of each token (indexes per-position arrays and masks).
      is_real: bool ``[batch, seq]``, not padding.
      is_generated: bool ``[batch, seq]``, produced by generation rather than given.
      is_last_prompt: bool ``[batch, seq]``, the last prompt token of the row.
      residual_norms: ``{intervention index: [batch]}`` for ``Add(normalize="residual")``;
        a pass that sees the prompt fills it, a decode step reads it.
    """

    slots: jax.Array
    is_real: jax.Array
    is_generated: jax.Array
    is_last_prompt: jax.Array
    residual_norms: dict = dataclasses.field(default_factory=dict)


def prompt_context(mask: jax.Array) -> PositionContext:
    """Context of a pass over a whole prompt ``mask [batch, seq]`` (``forward``, or generation's prefill)."""
    seq = mask.shape[-1]
    last = last_real_index(mask)
    return PositionContext(
        slots=jnp.arange(seq),
        is_real=mask,
        is_generated=jnp.zeros_like(mask),
        is_last_prompt=jnp.arange(seq)[None, :] == last[:, None],
    )


def decode_context(batch: int, slot: jax.Array, residual_norms: dict) -> PositionContext:
    """Context of one generated token per row at ``slot`` (a KV-cached decode step)."""
    ones = jnp.ones((batch, 1), bool)
    return PositionContext(jnp.reshape(slot, (1,)), ones, ones, ~ones, residual_norms)


def positions_touched(rule, context: PositionContext) -> jax.Array:
    """Bool ``[batch, seq]``: the tokens of this call that ``rule`` touches."""
    if isinstance(rule, str):
        touched = {
            "all": context.is_real,
            "prompt": ~context.is_generated,
            "generated": context.is_generated,
            "last": context.is_last_prompt,
        }[rule]
    else:
        touched = jnp.take(rule, context.slots, axis=-1)
    return lift(touched, context.is_real) & context.is_real


def _mean_prompt_norm(h: jax.Array, context: PositionContext) -> jax.Array:
    prompt = (context.is_real & ~context.is_generated).astype(jnp.float32)
    norms = jnp.linalg.norm(h, axis=-1)
    return jnp.sum(norms * prompt, axis=-1) / jnp.maximum(jnp.sum(prompt, axis=-1), 1.0)


def intervention_hook(interventions: tuple, context: PositionContext) -> Callable[[str, jax.Array], jax.Array]:
    """A ``hook(site, value) -> value`` applying ``interventions`` (checked) in order, in float32."""

    def values_at(array):
        array = jnp.asarray(array, jnp.float32)
        return array if array.ndim == 1 else jnp.take(array, context.slots, axis=-2)

    def hook(site, value):
        here = [(index, intervention) for index, intervention in enumerate(interventions) if intervention.site == site]
        if not here:
            return value
        # Per-head and per-expert sites are edited flattened: [b, t, heads · head_dim], [b, t, top_k · d_model].
        h = value.astype(jnp.float32).reshape(*value.shape[:2], -1)
        for index, intervention in here:
            residual_norm = None
            if getattr(intervention, "normalize", None) == "residual":
                if index not in context.residual_norms:
                    context.residual_norms[index] = _mean_prompt_norm(h, context)
                residual_norm = context.residual_norms[index]
            touched = positions_touched(intervention.positions, context)
            h = jnp.where(touched[..., None], intervention.edit(h, values_at, residual_norm), h)
        return h.reshape(value.shape).astype(value.dtype)

    return hook
