"""Substitution fidelity: how far the next-token distribution moves when a site is overwritten.

A map from a source model into a target site can be judged by behaviour rather than by
geometry: replace the target's activation at ``site`` by the mapped source state at
every real token (:class:`lrt_jax.Replace`) and measure, per text, the mean over its
real positions of ``KL(p_original ‖ p_substituted)`` of the next token. 0 means the
mapped state is as good as the target's own; the unsubstituted pass runs once per batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lrt_jax._run import run
from lrt_jax.interventions import Replace


@functools.partial(jax.jit, static_argnames=("config", "site"))
def substituted_next_token_kl(config, params, tokens, mask, values, *, site: str) -> jax.Array:
    """``[k, batch]``: each row's mean next-token ``KL(original ‖ substituted)`` for every stack entry.

    Args:
      config, params: the target model (``lm.config``, ``lm.params``).
      tokens: int ``[batch, seq]`` texts (either padding side).
      mask: bool ``[batch, seq]``, true on real tokens.
      values: ``[k, batch, seq, width]`` states that replace ``site`` (padding slots are ignored).
      site: the replaced site, e.g. ``"layers.3.resid_post"``.

    The ``k`` substitutions run one after another (``jax.lax.map``), so memory holds one
    ``[batch, seq, vocab]`` distribution besides the original.
    """
    real = mask.astype(jnp.float32)

    def logprobs(interventions):
        logits = run(config, params, (tokens, mask), interventions=interventions).logits
        return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)

    original = logprobs(())

    def one(replacement):
        substituted = logprobs(Replace(site, replacement))
        kl = jnp.sum(jnp.exp(original) * (original - substituted), axis=-1)  # [batch, seq]
        return jnp.sum(kl * real, axis=-1) / jnp.maximum(jnp.sum(real, axis=-1), 1.0)

    return jax.lax.map(one, values)
