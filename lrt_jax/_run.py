"""Running the decoder: logits (``forward``) and named activations (``capture``).

Both are thin, jitted wrappers around :func:`run_decoder`, which applies the Flax
decoder with an optional *hook* ``hook(site, value) -> value`` installed through
``flax.linen.intercept_methods`` at every :class:`~lrt_jax.model.Tap`. Reading a site
is a hook that stores the value; rewriting one (interventions, see
:mod:`lrt_jax.interventions`) is a hook that returns a new value. When both are asked
for, interventions run first, so a capture reads the edited value. Only requested sites leave the compiled function, so XLA drops every
computation that no requested output depends on (capturing ``layers.2.resid_post``
does not run layers 3 and up).

Padding: ``attention_mask [batch, seq]`` marks real tokens (1/True). Positions are
counted over real tokens only, so a left- or right-padded row gives the same values
on its real tokens as the unpadded sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from lrt_jax.config import ModelConfig
from lrt_jax.interventions import check_interventions, concrete_value, intervention_hook, prompt_context
from lrt_jax.lm import LM
from lrt_jax.model import Decoder, Tap
from lrt_jax.sites import check_sites

Hook = Callable[[str, jax.Array], jax.Array]
Reduce = Literal["last", "mean"] | None


def run_decoder(config: ModelConfig, params, tokens, *, positions=None, kv_mask=None, cache=None,
                cache_index=None, hook: Hook | None = None):
    """Apply the decoder, calling ``hook(site, value)`` at every site; returns ``(logits, cache)``."""
    apply = functools.partial(Decoder(config).apply, {"params": params}, tokens, positions, kv_mask, cache, cache_index)
    if hook is None:
        return apply()

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, Tap) and context.method_name == "__call__":
            return hook(context.module.site, out)
        return out

    with nn.intercept_methods(interceptor):
        return apply()


def compose_hooks(*hooks: Hook | None) -> Hook | None:
    """One hook that passes the value through ``hooks`` in order (``None`` entries skipped)."""
    hooks = tuple(hook for hook in hooks if hook is not None)
    if not hooks:
        return None

    def composed(site, value):
        for hook in hooks:
            value = hook(site, value)
        return value

    return composed


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position of each token counted over real tokens: ``[batch, seq]`` int32 (padding gets 0)."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def last_token_index(mask: jax.Array) -> jax.Array:
    """Index ``[batch]`` of the last real token of each row (left or right padding)."""
    seq = mask.shape[-1]
    return seq - 1 - jnp.argmax(mask[:, ::-1], axis=-1)


def reduce_over_sequence(values: jax.Array, mask: jax.Array, reduce: Reduce) -> jax.Array:
    """``[batch, seq, d]`` → ``[batch, d]`` at the last real token (``"last"``) or masked mean (``"mean"``)."""
    if reduce is None:
        return values
    if reduce == "last":
        return jnp.take_along_axis(values, last_token_index(mask)[:, None, None], axis=1)[:, 0]
    weights = mask.astype(jnp.float32)[..., None]
    total = jnp.sum(values.astype(jnp.float32) * weights, axis=1)
    return (total / jnp.sum(weights, axis=1)).astype(values.dtype)


def check_context_length(config: ModelConfig, length: int, what: str = "sequence length", fix: str = "") -> None:
    """``ValueError`` when ``length`` positions exceed the model's ``max_position_embeddings``."""
    if length > config.max_position_embeddings:
        fix = fix or f"shorten or split the input to at most {config.max_position_embeddings} tokens"
        raise ValueError(
            f"{what} {length} exceeds the model's context of {config.max_position_embeddings} positions "
            f"(max_position_embeddings); {fix}."
        )


def check_inputs(config: ModelConfig, tokens, attention_mask) -> tuple[jax.Array, jax.Array]:
    """Validate tokens and mask at the boundary; returns ``(tokens int32, mask bool)``.

    Value checks (the id range, empty mask rows) run whenever the values are known,
    including arrays closed over inside a user's ``jit``; traced inputs get shape and
    dtype checks only (see :func:`forward` for out-of-vocabulary ids under tracing).
    """
    if isinstance(tokens, (list, tuple)):
        tokens = np.asarray(tokens)
    if getattr(tokens, "ndim", None) != 2:
        raise ValueError(
            f"tokens must be a [batch, seq] integer array; got shape {getattr(tokens, 'shape', None)}. "
            "Use tokens[None] for a single sequence."
        )
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"tokens must be integers; got dtype {tokens.dtype}.")
    if 0 in tokens.shape:
        raise ValueError(f"the token batch is empty (shape {tuple(tokens.shape)}); every batch needs at least one "
                         "row and one token.")
    check_context_length(config, tokens.shape[1])
    values = concrete_value(tokens)
    if values is not None:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {config.vocab_size}) for this model's vocabulary; got range "
                f"[{low}, {high}]. Was the batch made with another model's tokenizer?"
            )
    if attention_mask is None:
        mask = jnp.ones(tokens.shape, bool)
    else:
        if isinstance(attention_mask, (list, tuple)):
            attention_mask = np.asarray(attention_mask)
        if tuple(np.shape(attention_mask)) != tuple(tokens.shape):
            raise ValueError(
                f"attention_mask shape {tuple(np.shape(attention_mask))} does not match tokens shape "
                f"{tuple(tokens.shape)}."
            )
        mask_values = concrete_value(attention_mask)
        if mask_values is not None and not bool(np.all(np.any(mask_values.astype(bool), axis=-1))):
            raise ValueError("every row of attention_mask needs at least one real token (a 1); found an empty row.")
        mask = jnp.asarray(attention_mask).astype(bool)
    return jnp.asarray(tokens, jnp.int32), mask


def _prompt_interventions_hook(interventions: tuple, mask) -> Hook | None:
    return intervention_hook(interventions, prompt_context(mask)) if interventions else None


@functools.partial(jax.jit, static_argnames=("config",))
def _forward(config, params, tokens, mask, interventions):
    logits, _ = run_decoder(config, params, tokens, positions=positions_from_mask(mask), kv_mask=mask,
                            hook=_prompt_interventions_hook(interventions, mask))
    return logits


def forward(lm: LM, tokens, *, attention_mask=None, interventions=()) -> jax.Array:
    """Logits of ``lm`` on a batch.

    Args:
      lm: the model.
      tokens: int ``[batch, seq]``.
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


def capture_hook(sites: tuple[str, ...], store: dict, mask, reduce: Reduce) -> Hook:
    """A hook that records the (reduced) value of each site in ``sites`` into ``store``."""
    wanted = frozenset(sites)

    def hook(site, value):
        if site in wanted:
            store[site] = reduce_over_sequence(value, mask, reduce)
        return value

    return hook


@functools.partial(jax.jit, static_argnames=("config", "sites", "reduce"))
def _capture(config, params, tokens, mask, interventions, sites, reduce):
    store: dict = {}
    hook = compose_hooks(_prompt_interventions_hook(interventions, mask), capture_hook(sites, store, mask, reduce))
    run_decoder(config, params, tokens, positions=positions_from_mask(mask), kv_mask=mask, hook=hook)
    return {site: store[site] for site in sites}


def capture(lm: LM, tokens, sites, *, attention_mask=None, reduce: Reduce = None,
            interventions=()) -> dict[str, jax.Array]:
    """Activations of ``lm`` at the named ``sites`` (see :mod:`lrt_jax.sites`).

    Args:
      lm: the model.
      tokens: int ``[batch, seq]``.
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
    tokens, mask = check_inputs(lm.config, tokens, attention_mask)
    interventions = check_interventions(lm.config, interventions, batch=tokens.shape[0], slots=tokens.shape[1],
                                        allow_generated=False)
    captured = _capture(lm.config, lm.params, tokens, mask, interventions, sites, reduce)
    return {site: captured[site] for site in sites}  # jit returns dicts with sorted keys
