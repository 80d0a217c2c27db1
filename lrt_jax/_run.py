"""Running the decoder: the traceable core :func:`run`, and its checked, jitted wrappers.

:func:`run` is the one place that wires the Flax decoder to hooks: it applies the
decoder with a *hook* ``hook(site, value) -> value`` installed through
``flax.linen.intercept_methods`` at every :class:`~lrt_jax.model.Tap`, built from the
interventions to apply and the sites to read. It checks nothing and jits nothing, so
it composes with a caller's ``jit``/``vmap``/``grad``; :func:`forward`, :func:`capture`,
:func:`lrt_jax.generate` (through :func:`run_cached`), the scorers and the training
loops all call it. :func:`forward` and :func:`capture` check their inputs while the
values are concrete and run :func:`run` jitted.

Reading a site stores its value; rewriting one (interventions, see
:mod:`lrt_jax.interventions`) returns a new value; :class:`~lrt_jax.model.scan.SiteHooks`
says which sites are read and which rewritten, so that scanned layers
(``config.execution.scan_layers``) can do both inside their loop. When both are asked
for, interventions run first, so a capture reads the edited value. Only requested
sites leave the compiled function, so XLA drops every computation that no requested output depends on (capturing ``layers.2.resid_post``
does not run layers 3 and up).

Padding: ``attention_mask [batch, seq]`` marks real tokens (1/True). Positions are
counted over real tokens only, so a left- or right-padded row gives the same values
on its real tokens as the unpadded sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import checkify

from lrt_jax._inputs import check_context_length, check_inputs
from lrt_jax.config import ModelConfig
from lrt_jax._intervention_checks import check_interventions
from lrt_jax.interventions import intervention_hook, prompt_context
from lrt_jax.lm import LM
from lrt_jax.model import Decoder, Tap
from lrt_jax.model.scan import SiteHooks, uses_layer_path
from lrt_jax.positions import last_real_index
from lrt_jax.sites import check_sites, materializing

__all__ = ["Output", "capture", "checked", "forward", "run", "run_cached"]

Reduce = Literal["last", "mean"] | None


def run_decoder(config: ModelConfig, params, tokens, *, positions=None, kv_mask=None, cache=None,
                cache_index=None, hooks: SiteHooks | None = None):
    """Apply the decoder with ``hooks`` (:class:`~lrt_jax.model.scan.SiteHooks`) at its sites; ``(logits, cache)``.

    Unrolled, every site goes through one ``nn.intercept_methods`` interceptor. With
    scanned layers (or remat) the layer sites are handled inside the layer stack
    (:mod:`lrt_jax.model.scan`) and the interceptor sees only ``embed``, ``final_norm``
    and ``logits``; the numbers are the same either way.
    """
    layer_path = uses_layer_path(config)
    decoder = Decoder(config, hooks=hooks if layer_path else None)
    apply = functools.partial(decoder.apply, {"params": params}, tokens, positions, kv_mask, cache, cache_index)
    if hooks is None:
        return apply()

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, Tap) and context.method_name == "__call__":
            site = context.module.site
            if not (layer_path and site.startswith("layers.")):
                return hooks(site, out)
        return out

    with nn.intercept_methods(interceptor):
        return apply()


def site_hooks(interventions: tuple, context, sites: tuple[str, ...], store: dict, mask, reduce: Reduce) -> SiteHooks:
    """Hooks that apply ``interventions`` (in order), then record the (reduced) value of each of ``sites`` in ``store``.

    An ``Add(normalize="residual")`` measures the residual norm once and keeps it in
    ``context`` for later decode steps: a side effect, so its site is ``eager``.
    """
    return SiteHooks(
        rewrite=intervention_hook(interventions, context) if interventions else SiteHooks().rewrite,
        rewrites=frozenset(intervention.site for intervention in interventions),
        eager=frozenset(intervention.site for intervention in interventions
                        if getattr(intervention, "normalize", None) == "residual"),
        reads=frozenset(sites),
        prepare=lambda site, value: reduce_over_sequence(value, mask, reduce),
        store=store.__setitem__,
    )


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position of each token counted over real tokens: ``[batch, seq]`` int32 (padding gets 0)."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def reduce_over_sequence(values: jax.Array, mask: jax.Array, reduce: Reduce) -> jax.Array:
    """``[batch, seq, ...]`` → ``[batch, ...]`` at the last real token (``"last"``) or masked mean (``"mean"``)."""
    if reduce is None:
        return values
    trailing = (None,) * (values.ndim - 1)
    if reduce == "last":
        index = last_real_index(mask)[(slice(None), *trailing)]
        return jnp.take_along_axis(values, index, axis=1)[:, 0]
    weights = mask.astype(jnp.float32)[(..., *trailing[1:])]
    total = jnp.sum(values.astype(jnp.float32) * weights, axis=1)
    return (total / jnp.sum(weights, axis=1)).astype(values.dtype)


class Output(NamedTuple):
    """What :func:`run` returns.

    Attributes:
      logits: float32 ``[batch, seq, vocab]`` (XLA drops the head when only activations are used).
      activations: ``{site: [batch, seq, width]}``, or ``[batch, width]`` under ``reduce``.
    """

    logits: jax.Array
    activations: dict


def tokens_and_mask(batch) -> tuple[jax.Array, jax.Array]:
    """``(tokens, bool mask)`` of a :class:`~lrt_jax.text.Batch`, a ``(tokens, mask)`` pair or bare tokens."""
    if hasattr(batch, "attention_mask"):
        return batch.tokens, jnp.asarray(batch.attention_mask).astype(bool)
    if isinstance(batch, tuple):
        tokens, mask = batch
        return tokens, jnp.asarray(mask).astype(bool)
    return batch, jnp.ones(jnp.shape(batch), bool)


def _as_tuple(items) -> tuple:
    if items is None:
        return ()
    return (items,) if isinstance(items, str) or not isinstance(items, (tuple, list)) else tuple(items)


def _hooked_decoder(config, params, tokens, *, positions, kv_mask, cache, cache_index, interventions, context,
                    sites, reduce_mask, reduce):
    """Run the decoder with ``interventions`` applied, then ``sites`` read; ``(logits, activations, cache)``."""
    store: dict = {}
    config = materializing(config, (*sites, *(getattr(i, "site", "") for i in interventions)))
    hooks = site_hooks(interventions, context, sites, store, reduce_mask, reduce) if interventions or sites else None
    logits, cache = run_decoder(config, params, tokens, positions=positions, kv_mask=kv_mask, cache=cache,
                                cache_index=cache_index, hooks=hooks)
    return logits, {site: store[site] for site in sites}, cache


def run(config: ModelConfig, params, batch, *, interventions=(), sites=(), reduce: Reduce = None) -> Output:
    """The decoder on a whole batch, with interventions applied and sites read: the traceable core.

    Args:
      config: the model's :class:`~lrt_jax.ModelConfig`.
      params: its parameter tree (``lm.params``), possibly traced (e.g. under ``jax.grad``).
      batch: a :class:`~lrt_jax.text.Batch`, a ``(tokens, attention_mask)`` pair, or tokens
        ``[batch, seq]`` (all real).
      interventions: an intervention or a sequence of them, applied in order at their sites;
        every token is a prompt token.
      sites: a site name or names to read; a site that is also edited is read after the edit.
      reduce: ``None``, ``"last"`` or ``"mean"`` over real tokens (see :func:`capture`).

    Returns:
      :class:`Output` ``(logits, activations)``.

    Nothing is checked here (it would need concrete values); :func:`forward` and
    :func:`capture` are the checked entry points.
    """
    tokens, mask = tokens_and_mask(batch)
    sites = _as_tuple(sites)
    logits, activations, _ = _hooked_decoder(
        config, params, tokens, positions=positions_from_mask(mask), kv_mask=mask, cache=None, cache_index=None,
        interventions=_as_tuple(interventions), context=prompt_context(mask), sites=sites, reduce_mask=mask,
        reduce=reduce)
    return Output(logits, activations)


def run_cached(config: ModelConfig, params, tokens, *, positions, kv_mask, cache, cache_index, context,
               interventions=(), sites=()) -> tuple[jax.Array, dict, object]:
    """One KV-cached decoder call (a prefill or a decode step) through the same wiring as :func:`run`.

    ``context`` (:class:`~lrt_jax.interventions.PositionContext`) says where the tokens sit;
    returns ``(logits, {site: [batch, seq, width]}, cache)``.
    """
    return _hooked_decoder(config, params, tokens, positions=positions, kv_mask=kv_mask, cache=cache,
                           cache_index=cache_index, interventions=_as_tuple(interventions), context=context,
                           sites=_as_tuple(sites), reduce_mask=None, reduce=None)



@functools.partial(jax.jit, static_argnames=("config",))
def _forward(config, params, tokens, mask, interventions):
    return run(config, params, (tokens, mask), interventions=interventions).logits


def forward(lm: LM, tokens, *, attention_mask=None, interventions=()) -> jax.Array:
    """Logits of ``lm`` on a batch.

    Args:
      lm: the model.
      tokens: int ``[batch, seq]``, or a :class:`~lrt_jax.text.Batch` (tokens and mask).
      attention_mask: optional ``[batch, seq]`` (1 = real token, 0 = padding), left or right.
      interventions: an intervention or a sequence of them (:mod:`lrt_jax.interventions`);
        every token is a prompt token here, so ``positions="generated"`` is an error.

    Returns:
      float32 ``[batch, seq, vocab]``; values at padding positions are meaningless.

    Token ids outside ``[0, vocab)`` are refused whenever their values are known (also
    when closed over inside your ``jit``). Traced ids cannot be inspected: the embedding
    lookup then yields NaN rows. Wrap the traced function in :func:`checked` to get an
    error naming the bad index instead; it costs nothing when not used.
    """
    tokens, mask = check_inputs(lm.config, tokens, attention_mask)
    interventions = check_interventions(lm.config, interventions, batch=tokens.shape[0], slots=tokens.shape[1],
                                        allow_generated=False)
    return _forward(lm.config, lm.params, tokens, mask, interventions)


def checked(fn: Callable) -> Callable:
    """``fn`` returning ``(error, out)``, where ``error`` records out-of-range indexing and user checks.

    Under tracing, :func:`forward`, :func:`capture` and :func:`lrt_jax.generate` cannot
    see token values; this ``checkify`` wrapper makes an out-of-vocabulary id (an
    out-of-bounds embedding gather) observable without changing the program that
    runs when it is not used.

    Example::

        err, logits = jax.jit(lrt_jax.checked(lambda t: lrt_jax.forward(lm, t)))(tokens)
        err.throw()   # raises JaxRuntimeError naming the out-of-bounds index, if any
    """
    return checkify.checkify(fn, errors=checkify.index_checks | checkify.user_checks)



@functools.partial(jax.jit, static_argnames=("config", "sites", "reduce"))
def _capture(config, params, tokens, mask, interventions, sites, reduce):
    return run(config, params, (tokens, mask), interventions=interventions, sites=sites, reduce=reduce).activations


def capture(lm: LM, tokens, sites, *, attention_mask=None, reduce: Reduce = None,
            interventions=()) -> dict[str, jax.Array]:
    """Activations of ``lm`` at the named ``sites`` (see :mod:`lrt_jax.sites`).

    Args:
      lm: the model.
      tokens: int ``[batch, seq]``, or a :class:`~lrt_jax.text.Batch` (tokens and mask).
      sites: a site name or a sequence of them, e.g. ``["layers.3.resid_post", "logits"]``.
      attention_mask: optional ``[batch, seq]`` (1 = real token).
      reduce: ``None`` keeps ``[batch, seq, width]``; ``"last"`` takes the last real token
        and ``"mean"`` the mean over real tokens, both inside the compiled function,
        giving ``[batch, width]``.
      interventions: applied as in :func:`forward`; a site that is both edited and
        captured is read after the edit.

    Returns:
      ``{site: array}`` in the order requested.
    """
    sites = check_sites(lm.config, sites)
    if reduce not in (None, "last", "mean"):
        raise ValueError(f"reduce must be None, 'last' or 'mean'; got {reduce!r}.")
    patterns = [site for site in sites if site.endswith(".attn.pattern")]
    if reduce is not None and patterns:
        raise ValueError(f"reduce={reduce!r} runs over the sequence axis, but {patterns[0]} is [batch, heads, q, "
                         "slots]: capture it with reduce=None and index the query positions you need.")
    tokens, mask = check_inputs(lm.config, tokens, attention_mask)
    interventions = check_interventions(lm.config, interventions, batch=tokens.shape[0], slots=tokens.shape[1],
                                        allow_generated=False)
    captured = _capture(lm.config, lm.params, tokens, mask, interventions, sites, reduce)
    return {site: captured[site] for site in sites}  # jit returns dicts with sorted keys
