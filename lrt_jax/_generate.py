"""KV-cached generation with interventions, in one compiled call.

Layout: a left-padded prompt ``[batch, prompt_len]`` occupies slots
``0 .. prompt_len − 1`` of a cache of ``prompt_len + max_new_tokens`` slots; new token
``i`` goes to slot ``prompt_len + i``. Shapes stay static: one prefill call over the
prompt, then a ``lax.while_loop`` of single-token steps that stops early once every
row has emitted a stop token. A token's position (what RoPE sees) counts the real
tokens before it, so a padded row computes exactly what it would unpadded.

Decode step ``i`` samples token ``i`` from the logits of the previous call and then
feeds it through the model, which gives the logits for token ``i + 1`` and the
activations of token ``i`` at ``capture_sites`` (the last step's logits are unused
unless captured; the price of one uniform loop body).

Interventions see each token as prompt or generated (see
:mod:`lrt_jax.interventions`): in the prefill every real token is a prompt token and
the last one is ``"last"``; every decode-step token is ``"generated"``. Explicit
masks and ``[seq, width]`` vectors span all ``prompt_len + max_new_tokens`` slots.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax._inputs import check_context_length, check_inputs, split_batch
from lrt_jax._run import positions_from_mask, run_cached
from lrt_jax._intervention_checks import check_interventions, concrete_value
from lrt_jax.interventions import decode_context, prompt_context
from lrt_jax.lm import LM
from lrt_jax.model import empty_cache
from lrt_jax.sites import check_sites, site_width
from lrt_jax.text import pad_id_of


class Sampling(NamedTuple):
    """How the next token is chosen; ``temperature == 0`` is greedy (argmax)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None


class Generation(NamedTuple):
    """Result of :func:`generate`.

    Attributes:
      tokens: int32 ``[batch, max_new_tokens]``, the new tokens only; after a row's stop
        token they are the pad id.
      generated_mask: bool ``[batch, max_new_tokens]``, true up to and including the stop token.
      activations: ``{site: [batch, max_new_tokens, width]}`` of the generated tokens
        (meaningless where ``generated_mask`` is false).
    """

    tokens: jax.Array
    generated_mask: jax.Array
    activations: dict


def choose_next_token(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """Next token ``[batch]`` from ``logits [batch, vocab]``: argmax, or top-k/top-p sampling."""
    if sampling.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / sampling.temperature
    if sampling.top_k is not None:
        kth_largest = jax.lax.top_k(logits, sampling.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
    if sampling.top_p < 1.0:
        descending = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(descending, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p; the first token always stays.
        outside_nucleus = jnp.cumsum(probs, axis=-1) - probs >= sampling.top_p
        threshold = jnp.min(jnp.where(outside_nucleus, jnp.inf, descending), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(
    jax.jit, static_argnames=("config", "max_new_tokens", "sampling", "stop_tokens", "pad_token_id", "capture_sites")
)
def _generate(config, params, tokens, mask, interventions, key, *, max_new_tokens, sampling, stop_tokens,
              pad_token_id, capture_sites):
    batch, prompt_len = tokens.shape
    cache_dtype = jax.tree.leaves(params)[0].dtype
    cache = empty_cache(config, batch, prompt_len + max_new_tokens, cache_dtype)
    kv_mask = jnp.concatenate([mask, jnp.zeros((batch, max_new_tokens), bool)], axis=1)
    prompt_lengths = jnp.sum(mask, axis=-1, dtype=jnp.int32)

    context = prompt_context(mask)
    logits, _, cache = run_cached(config, params, tokens, positions=positions_from_mask(mask), kv_mask=kv_mask,
                                  cache=cache, cache_index=jnp.zeros((), jnp.int32), context=context,
                                  interventions=interventions)
    residual_norms = context.residual_norms  # filled by the prefill, reused by every step

    activations = {
        site: jnp.zeros((batch, max_new_tokens, width), jnp.float32)
        for site, width in capture_sites
    }
    stop = jnp.asarray(stop_tokens, jnp.int32)

    def step(state):
        i, last_logits, cache, kv_mask, new_tokens, generated_mask, finished, activations = state
        token = choose_next_token(last_logits, jax.random.fold_in(key, i), sampling)
        token = jnp.where(finished, pad_token_id, token)
        new_tokens = new_tokens.at[:, i].set(token)
        generated_mask = generated_mask.at[:, i].set(~finished)
        finished = finished | jnp.isin(token, stop)

        slot = prompt_len + i
        kv_mask = kv_mask.at[:, slot].set(True)
        logits, store, cache = run_cached(
            config, params, token[:, None], positions=(prompt_lengths + i)[:, None], kv_mask=kv_mask, cache=cache,
            cache_index=slot, context=decode_context(batch, slot, residual_norms), interventions=interventions,
            sites=tuple(site for site, _ in capture_sites))
        activations = {
            # per-head / per-expert sites are stored flattened, [batch, 1, width] (width from site_width)
            site: jax.lax.dynamic_update_slice(
                values, store[site].astype(jnp.float32).reshape(values.shape[0], -1, values.shape[-1]), (0, i, 0))
            for site, values in activations.items()
        }
        return i + 1, logits[:, -1], cache, kv_mask, new_tokens, generated_mask, finished, activations

    def keep_going(state):
        i, finished = state[0], state[6]
        return (i < max_new_tokens) & ~jnp.all(finished)

    state = (
        jnp.zeros((), jnp.int32),
        logits[:, -1],
        cache,
        kv_mask,
        jnp.full((batch, max_new_tokens), pad_token_id, jnp.int32),
        jnp.zeros((batch, max_new_tokens), bool),
        jnp.zeros((batch,), bool),
        activations,
    )
    state = jax.lax.while_loop(keep_going, step, state)
    return Generation(state[4], state[5], state[7])


def _check_left_padded(attention_mask) -> None:
    mask = None if attention_mask is None else concrete_value(attention_mask)
    if mask is None:
        return
    mask = mask.astype(bool)
    if not np.all(mask[:, 1:] >= mask[:, :-1]):
        raise ValueError(
            "generate needs left-padded prompts (padding before the tokens, the last column all real); "
            "lrt_jax.encode(lm, texts) pads on the left."
        )


def _check_generation_options(lm: LM, prompt_len, max_new_tokens, sampling, stop_tokens) -> None:
    config = lm.config
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}.")
    check_context_length(config, prompt_len + max_new_tokens,
                         f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} =",
                         f"ask for at most {config.max_position_embeddings - prompt_len} new tokens or shorten the "
                         "prompt")
    if not np.isfinite(sampling.temperature) or sampling.temperature < 0:
        raise ValueError(f"temperature must be a finite number ≥ 0 (0 is greedy); got {sampling.temperature}.")
    if not 0 < sampling.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1]; got {sampling.top_p}.")
    if sampling.top_k is not None and not 1 <= sampling.top_k <= config.vocab_size:
        raise ValueError(f"top_k must be None or in 1..{config.vocab_size}; got {sampling.top_k}.")
    bad_stops = [t for t in stop_tokens if not 0 <= t < config.vocab_size]
    if bad_stops:
        raise ValueError(f"stop_tokens {bad_stops} are outside the vocabulary [0, {config.vocab_size}).")


def _stop_token_ids(stop_tokens) -> tuple[int, ...]:
    """``stop_tokens`` as a tuple of ints; a string (``"12"`` is not ``[1, 2]``) or float is a ``TypeError``."""
    if isinstance(stop_tokens, (int, np.integer)):
        stop_tokens = (stop_tokens,)
    if hasattr(stop_tokens, "dtype") and np.issubdtype(stop_tokens.dtype, np.integer):
        stop_tokens = np.asarray(stop_tokens).reshape(-1).tolist()
    if isinstance(stop_tokens, (str, bytes)) or not all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in stop_tokens
    ):
        raise TypeError(f"stop_tokens must be a sequence of integer token ids; got {stop_tokens!r}. "
                        "Use lm.tokenizer.convert_tokens_to_ids(...) to turn strings into ids.")
    return tuple(int(t) for t in stop_tokens)


def _resolve_pad_token_id(lm: LM, pad_token_id, stop_tokens) -> int:
    if pad_token_id is not None:
        return int(pad_token_id)
    if lm.tokenizer is not None:
        return pad_id_of(lm.tokenizer)
    if stop_tokens:
        raise ValueError("Rows that stop are filled with a pad id, and this model has no tokenizer pad token; "
                         "pass pad_token_id=....")
    return 0  # never written: without stop tokens no row finishes early


def generate(lm: LM, tokens, *, max_new_tokens: int, attention_mask=None, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int | None = None, seed: int = 0, stop_tokens=(), interventions=(),
             capture_sites=(), pad_token_id: int | None = None) -> Generation:
    """Continue a left-padded batch of prompts by up to ``max_new_tokens`` tokens.

    Args:
      lm: the model.
      tokens: int ``[batch, prompt_len]``, left-padded (see :func:`lrt_jax.encode`), or a
        :class:`~lrt_jax.text.Batch` holding tokens and mask.
      max_new_tokens: tokens to generate; ``prompt_len + max_new_tokens`` must fit the context.
      attention_mask: optional ``[batch, prompt_len]``, 1 for real tokens, 0 for left padding.
      temperature: 0 for greedy decoding, else the softmax temperature of sampling.
      top_p: nucleus sampling mass (1 keeps every token).
      top_k: keep only the ``top_k`` most likely tokens (``None``: all).
      seed: seed of ``jax.random.key`` for sampling.
      stop_tokens: ids that end a row (the stop token is kept; later tokens are the pad id).
      interventions: an intervention or a sequence of them, over ``prompt_len +
        max_new_tokens`` slots (see the module docstring for the position rules).
      capture_sites: sites whose activations at the generated tokens are returned.
      pad_token_id: id written after a row stops (default: the tokenizer's pad id, else its eos id).

    Returns:
      a :class:`Generation` ``(tokens, generated_mask, activations)``.

    Example::

        batch = lrt_jax.encode(lm, ["The cat", "Once upon a time"])
        out = lrt_jax.generate(lm, batch.tokens, attention_mask=batch.attention_mask, max_new_tokens=20,
                               interventions=Add("layers.4.resid_post", vector, 6.0, positions="generated"))
        print(lrt_jax.decode(lm, out.tokens, out.generated_mask))
    """
    tokens, attention_mask = split_batch(tokens, attention_mask)
    tokens, mask = check_inputs(lm.config, tokens, attention_mask)
    _check_left_padded(attention_mask)
    batch, prompt_len = tokens.shape
    sampling = Sampling(float(temperature), float(top_p), None if top_k is None else int(top_k))
    stop_tokens = _stop_token_ids(stop_tokens)
    _check_generation_options(lm, prompt_len, max_new_tokens, sampling, stop_tokens)
    interventions = check_interventions(lm.config, interventions, batch=batch, slots=prompt_len + max_new_tokens,
                                        allow_generated=True)
    capture_sites = tuple((site, site_width(lm.config, site)) for site in check_sites(lm.config, capture_sites))
    return _generate(lm.config, lm.params, tokens, mask, interventions, jax.random.key(seed),
                     max_new_tokens=int(max_new_tokens), sampling=sampling, stop_tokens=stop_tokens,
                     pad_token_id=_resolve_pad_token_id(lm, pad_token_id, stop_tokens), capture_sites=capture_sites)
