"""Boundary checks of interventions, run while their values are concrete (before any ``jit``).

:func:`check_interventions` validates what a user passes as ``interventions=``: the
types, sites and widths, per-position array shapes, finite values and strengths,
position rules and ``normalize`` modes; :func:`concrete_value` is the one way the
checks read values (``None`` under tracing, where only shapes are checked).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.config import ModelConfig
from lrt_jax.interventions import INTERVENTION_TYPES, Ablate, NORMALIZE_MODES, POSITION_RULES, SCALAR_FIELDS
from lrt_jax.sites import check_site, site_width

__all__ = ["check_finite_leaves", "check_interventions", "check_number_array", "concrete_value"]


def _is_concrete(leaf) -> bool:
    return not isinstance(leaf, jax.core.Tracer)


def concrete_value(array) -> np.ndarray | None:
    """``array`` as NumPy when its values are known now, ``None`` under tracing.

    The one way the boundary checks read values: a closed-over array inside a user's
    ``jit`` is concrete, but ``np.min`` on it would stage a JAX reduction and give a
    tracer, so values are always read through ``np.asarray`` first.
    """
    return None if isinstance(array, jax.core.Tracer) else np.asarray(array)


def check_number_array(where: str, value) -> None:
    """``TypeError`` unless ``value`` is a real (bool, integer or floating) array or scalar."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{where} must be a real number or array; got {type(value).__name__} {value!r}.")
    dtype = getattr(value, "dtype", None)
    dtype = np.dtype(dtype) if dtype is not None else np.asarray(value).dtype
    if np.issubdtype(dtype, np.complexfloating) or not (
        np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_
    ):
        raise TypeError(f"{where} must be real-valued (float or int); got dtype {dtype}.")


def check_finite_leaves(item, where: str) -> None:
    """``ValueError`` when a concrete floating leaf of the pytree ``item`` holds NaN or infinity."""
    for leaf in jax.tree.leaves(item):
        value = concrete_value(leaf)
        if value is not None and np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(
                f"{where} has NaN or infinity in one of its arrays or strengths; "
                "check how the vector was estimated (e.g. a mean over an empty set, or float16 overflow)."
            )


def _check_nonzero_norm(where: str, array) -> None:
    value = concrete_value(array)
    if value is not None and not np.all(np.linalg.norm(value.astype(np.float64), axis=-1) > 0):
        raise ValueError(f"{where} has zero norm; it is divided by its norm, so it needs a nonzero one.")


def _check_per_position(name, array, intervention, width, batch, slots) -> None:
    shape = tuple(np.shape(array))
    where = f"{type(intervention).__name__}({intervention.site!r}).{name}"
    if not shape or shape[-1] != width:
        raise ValueError(
            f"{where} has width {shape[-1] if shape else None} but site {intervention.site!r} has width {width}; "
            "was the vector estimated at another site or in another model?"
        )
    allowed = [(width,), (slots, width), (batch, slots, width)]
    if shape not in allowed:
        raise ValueError(
            f"{where} has shape {shape}; expected [width] {allowed[0]}, [seq, width] {allowed[1]} or "
            f"[batch, seq, width] {allowed[2]} (seq counts the slots of the whole sequence)."
        )


def _check_positions(intervention, batch, slots, allow_generated) -> None:
    rule = intervention.positions
    if isinstance(rule, str):
        if rule not in POSITION_RULES:
            raise ValueError(
                f"Unknown position rule {rule!r} for {type(intervention).__name__}({intervention.site!r}); "
                f"use one of {POSITION_RULES} or a boolean [seq] / [batch, seq] mask."
            )
        if rule == "generated" and not allow_generated:
            raise ValueError(
                "positions='generated' touches tokens produced by lrt_jax.generate; a forward pass has none. "
                "Use 'all', 'prompt', 'last' or a mask here."
            )
        return
    if getattr(rule, "dtype", None) != np.bool_:
        raise TypeError(f"A positions mask must be a boolean array; got {type(rule).__name__} "
                        f"with dtype {getattr(rule, 'dtype', None)}.")
    if tuple(rule.shape) not in ((slots,), (batch, slots)):
        raise ValueError(
            f"positions mask of {type(intervention).__name__}({intervention.site!r}) has shape {tuple(rule.shape)}; "
            f"expected [seq] ({slots},) or [batch, seq] ({batch}, {slots}) over the slots of the whole sequence."
        )


def check_interventions(config: ModelConfig, interventions, *, batch: int, slots: int,
                        allow_generated: bool) -> tuple:
    """Validate interventions at the boundary (before jit); returns a tuple with float32 array leaves.

    Args:
      config: the model they will run in.
      interventions: one intervention or a sequence of them.
      batch: rows in the batch.
      slots: length of the whole sequence (input length, or prompt + new tokens).
      allow_generated: whether the ``"generated"`` position rule means anything here.
    """
    if interventions is None:
        interventions = ()
    if isinstance(interventions, INTERVENTION_TYPES):
        interventions = (interventions,)
    if isinstance(interventions, (dict, str)):
        raise TypeError(
            f"interventions must be an intervention or a list/tuple of them; got a {type(interventions).__name__}. "
            "Pass list(d.values()) to apply the interventions of a dict."
        )
    interventions = tuple(interventions)
    for intervention in interventions:
        if not isinstance(intervention, INTERVENTION_TYPES):
            raise TypeError(
                f"Expected an intervention ({', '.join(t.__name__ for t in INTERVENTION_TYPES)}); "
                f"got {type(intervention).__name__}."
            )
        where = f"{type(intervention).__name__}({intervention.site!r})"
        width = site_width(config, check_site(config, intervention.site))
        for name in intervention.per_position_fields:
            check_number_array(f"{where}.{name}", getattr(intervention, name))
            _check_per_position(name, getattr(intervention, name), intervention, width, batch, slots)
        for name in SCALAR_FIELDS.get(type(intervention), ()):
            check_number_array(f"{where}.{name}", getattr(intervention, name))
            if np.ndim(getattr(intervention, name)) != 0:
                raise ValueError(
                    f"{type(intervention).__name__}.{name} must be a scalar; got shape "
                    f"{np.shape(getattr(intervention, name))}. To sweep over values use lrt_jax.sweep or jax.vmap."
                )
        if getattr(intervention, "normalize", None) not in NORMALIZE_MODES:
            raise ValueError(f"Add.normalize must be one of {NORMALIZE_MODES}; got {intervention.normalize!r}.")
        _check_positions(intervention, batch, slots, allow_generated)
        check_finite_leaves(intervention, where)
        if isinstance(intervention, Ablate):
            _check_nonzero_norm(f"{where}.direction", intervention.direction)
        if getattr(intervention, "normalize", None) is not None:
            _check_nonzero_norm(f"{where}.vector (normalize={intervention.normalize!r})", intervention.vector)
    return jax.tree.map(
        lambda leaf: jnp.asarray(leaf, jnp.float32) if _is_concrete(leaf) and np.asarray(leaf).dtype != np.bool_
        else leaf,
        interventions,
    )
