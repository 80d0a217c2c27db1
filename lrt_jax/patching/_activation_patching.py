"""The checked entry point: :func:`activation_patching` validates, runs the jitted grid, builds the result."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax._inputs import check_inputs
from lrt_jax._intervention_checks import concrete_value
from lrt_jax._run import run
from lrt_jax.lm import LM
from lrt_jax.patching._grid import UNIT_AXIS, Over, patching_grid
from lrt_jax.patching._result import PatchingResult
from lrt_jax.sites import check_sites

__all__ = ["activation_patching"]

_patching_grid = jax.jit(patching_grid, static_argnames=("config", "sites", "over", "cells_per_step"))
_RANKS = {"position": (3, 4), "head": (4,), "neuron": (3,)}
_LAYOUTS = {"position": "[batch, seq, ...]", "head": "[batch, seq, heads, head_dim]", "neuron": "[batch, seq, width]"}


def _check_pair(lm: LM, clean, corrupt):
    clean_tokens, clean_mask = check_inputs(lm.config, clean, None)
    corrupt_tokens, corrupt_mask = check_inputs(lm.config, corrupt, None)
    if clean_tokens.shape != corrupt_tokens.shape:
        raise ValueError(
            f"clean tokens {tuple(clean_tokens.shape)} and corrupt tokens {tuple(corrupt_tokens.shape)} differ in "
            "shape. Patching copies a value from clean row r, position j into corrupt row r, position j, so both "
            "batches need the same rows and the same token length: pair prompts that tokenize to equal lengths "
            "(e.g. swap one single-token word), or pad both to one length with the same mask.")
    if not bool(np.array_equal(concrete_value(clean_mask), concrete_value(corrupt_mask))):
        raise ValueError("clean and corrupt batches have different attention masks, so position j is a different "
                         "token in the two runs; pad both the same way (equal real lengths per row).")
    return (clean_tokens, clean_mask), (corrupt_tokens, corrupt_mask)


def _grid_sites(lm: LM, site: str, layers) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if not isinstance(site, str) or site.startswith("layers."):
        raise ValueError(f"site must be a per-layer site kind such as 'resid_pre' or 'attn.z', got {site!r}; the "
                         "grid covers one site per layer (choose which with layers=...).")
    if site == "attn.pattern":
        raise ValueError("attn.pattern is [batch, heads, q, k]: patch attn.z per head (over='head') instead.")
    layers = tuple(range(lm.config.n_layers)) if layers is None else tuple(int(layer) for layer in layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be a non-empty sequence of distinct layer indices; got {layers}.")
    return layers, check_sites(lm.config, [f"layers.{layer}.{site}" for layer in layers])


def _check_answers(lm: LM, answers, batch: int):
    if answers is None:
        return None
    if not isinstance(answers, (tuple, list)) or len(answers) != 2:
        raise ValueError("answers must be a pair (correct, wrong) of token ids, each an int or a [batch] array.")
    checked = []
    for name, ids in zip(("correct", "wrong"), answers):
        ids = np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer) or ids.shape not in ((), (batch,)):
            raise ValueError(f"answers' {name} ids must be an int or an int array of shape [{batch}] (one per row); "
                             f"got dtype {ids.dtype}, shape {ids.shape}.")
        if ids.min() < 0 or ids.max() >= lm.config.vocab_size:
            raise ValueError(f"answers' {name} ids must be in [0, {lm.config.vocab_size}) for this model's vocabulary;"
                             f" got range [{ids.min()}, {ids.max()}].")
        checked.append(jnp.asarray(ids, jnp.int32))
    return tuple(checked)


def _unit_labels(lm: LM, over: Over, n_units: int, clean_tokens, corrupt_tokens) -> tuple[str, ...]:
    if over != "position":
        return tuple(f"{'h' if over == 'head' else 'n'}{unit}" for unit in range(n_units))
    clean_row, corrupt_row = (np.asarray(t[0]).tolist() for t in (clean_tokens, corrupt_tokens))
    if lm.tokenizer is None:
        words = [(str(a), str(b)) for a, b in zip(clean_row, corrupt_row)]
    else:
        words = list(zip(lm.tokenizer.convert_ids_to_tokens(clean_row),
                         lm.tokenizer.convert_ids_to_tokens(corrupt_row)))
    return tuple(f"{j} {a}" if a == b else f"{j} {a}/{b}" for j, (a, b) in enumerate(words))


def activation_patching(lm: LM, clean, corrupt, site: str = "resid_post", *, over: Over = "position",
                        answers=None, layers: Sequence[int] | None = None,
                        cells_per_step: int | None = None) -> PatchingResult:
    """Patch clean values into the corrupt run at every ``(layer × position)`` or ``(layer × head)``.

    Args:
      lm: the model.
      clean, corrupt: a :class:`~lrt_jax.text.Batch` or tokens ``[batch, seq]`` each, of the
        same shape and mask; row ``r`` of one pairs with row ``r`` of the other.
      site: a per-layer site kind: ``"resid_pre"``, ``"attn_out"``, ``"resid_mid"``,
        ``"mlp_out"``, ``"resid_post"``, or a finer one such as ``"attn.z"``.
      over: ``"position"`` — one cell per sequence slot, copying ``[batch, d]`` there;
        ``"head"`` — one cell per head of a ``[batch, seq, heads, head_dim]`` site, all
        positions; ``"neuron"`` — one cell per component of a ``[batch, seq, width]`` site,
        all positions.
      answers: ``(correct, wrong)`` token ids (ints or ``[batch]``) for the logit
        difference at each row's last real token; without them only the KL is measured.
      layers: the layers of the grid (default all).
      cells_per_step: bound memory by running this many cells at a time (still one
        compiled call); default all ``len(layers) × n_units`` cells in one ``vmap``.

    Returns:
      :class:`~lrt_jax.patching.PatchingResult` with metrics ``"kl"`` (KL from the clean
      run's next-token distribution) and, with answers, ``"logit_diff"``.

    Example::

        result = activation_patching(lm, encode(lm, clean_texts), encode(lm, corrupt_texts), "resid_pre",
                                     answers=(good_id, bad_id))
        result.normalized("logit_diff")      # [n_layers, seq]: 1 where a patch restores the clean answer
        plot_patching_heatmap(result, "patching.png")
    """
    if over not in UNIT_AXIS:
        raise ValueError(f"over must be one of {sorted(UNIT_AXIS)}; got {over!r}.")
    if cells_per_step is not None and (not isinstance(cells_per_step, int) or cells_per_step < 1):
        raise ValueError(f"cells_per_step must be a positive int or None; got {cells_per_step!r}.")
    clean, corrupt = _check_pair(lm, clean, corrupt)
    layers, sites = _grid_sites(lm, site, layers)
    answers = _check_answers(lm, answers, clean[0].shape[0])
    shape = jax.eval_shape(functools.partial(run, lm.config, sites=sites[0]), lm.params, clean).activations[sites[0]]
    shape = tuple(shape.shape)
    if len(shape) not in _RANKS[over] or shape[:2] != tuple(clean[0].shape):
        raise ValueError(f"over={over!r} needs a {_LAYOUTS[over]} site; {sites[0]} has shape {shape}.")
    grid = _patching_grid(lm.config, lm.params, clean, corrupt, sites, over=over, answers=answers,
                          cells_per_step=cells_per_step)
    values, clean_metrics, corrupt_metrics = {}, {}, {}
    if answers is not None:
        values["logit_diff"] = np.asarray(grid.logit_diff)
        clean_metrics["logit_diff"] = np.asarray(grid.clean_logit_diff)
        corrupt_metrics["logit_diff"] = np.asarray(grid.corrupt_logit_diff)
    values["kl"] = np.asarray(grid.kl)
    clean_metrics["kl"] = np.zeros_like(np.asarray(grid.corrupt_kl))
    corrupt_metrics["kl"] = np.asarray(grid.corrupt_kl)
    labels = _unit_labels(lm, over, shape[UNIT_AXIS[over]], clean[0], corrupt[0])
    return PatchingResult(site, over, layers, labels, values, clean_metrics, corrupt_metrics)
