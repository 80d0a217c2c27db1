"""The canonical vocabulary of activation sites, the same for every family.

======================== ====================== ==========================================
site                     shape                  meaning
======================== ====================== ==========================================
``embed``                [batch, seq, d_model]  input embedding (+ learned positions, × scale)
``layers.{i}.resid_pre`` [batch, seq, d_model]  residual stream entering layer ``i``
``layers.{i}.attn_out``  [batch, seq, d_model]  attention branch output (after post-norm)
``layers.{i}.resid_mid`` [batch, seq, d_model]  ``resid_pre + attn_out``
``layers.{i}.mlp_out``   [batch, seq, d_model]  MLP / MoE branch output (after post-norm)
``layers.{i}.resid_post``[batch, seq, d_model]  residual leaving layer ``i`` (= HF ``hidden_states[i+1]``)
``layers.{i}.router_logits`` [batch, seq, n_experts] MoE router logits (MoE models only)
``layers.{i}.mlp.hidden``    [batch, seq, d_ff]     MLP neurons after the activation (input of ``down_proj``; dense MLPs)
``layers.{i}.moe.expert_out`` [batch, seq, top_k, d_model] outputs of each token's chosen experts, unweighted,
                         in the order of ``lrt_jax.model.mlp.routing`` (MoE models only)
``final_norm``           [batch, seq, d_model]  output of the final norm
``logits``               [batch, seq, vocab]    output logits (after soft-capping), float32
======================== ====================== ==========================================

Finer sites inside attention, per head (not in :func:`all_sites` unless asked for by ``kind``):

============================ ============================== ========================================
site                         shape                          meaning
============================ ============================== ========================================
``layers.{i}.attn.q``        [batch, seq, n_heads, hd]      queries after RoPE (and QK-norm)
``layers.{i}.attn.k``        [batch, seq, n_kv_heads, hd]   keys after RoPE; GQA: query head ``h``
                                                            reads KV head ``h // (n_heads/n_kv_heads)``
``layers.{i}.attn.v``        [batch, seq, n_kv_heads, hd]   values
``layers.{i}.attn.z``        [batch, seq, n_heads, hd]      per-head outputs, the input of ``o_proj``
``layers.{i}.attn.pattern``  [batch, n_heads, seq, slots]   probabilities after softmax; requesting it
                                                            materialises that layer's scores
============================ ============================== ========================================

Vectors and interventions see a per-head site flattened to ``[batch, seq, heads ·
head_dim]`` (head ``h`` at columns ``h·hd … (h+1)·hd − 1``, the layout of ``o_proj``'s
input), so :func:`site_width` is ``heads · head_dim``. ``attn.pattern`` has no fixed
width and can be captured, not edited. In a cached call (generation) ``attn.k``/``.v``
hold the new tokens' keys and values, and ``attn.pattern`` spans the cache's slots.

For parallel-residual families (GPT-NeoX) see :mod:`lrt_jax.model.decoder` for what
``resid_mid`` means.

The *fine* sites (``FINE_SITE_KINDS``: neurons, per-expert outputs) cost nothing unless
requested; ``moe.expert_out`` then switches its layer to a path that keeps each expert's
output apart (:func:`materializing`). :func:`all_sites` lists them only when asked.
"""

from __future__ import annotations

import re

from lrt_jax.config import ModelConfig

STREAM_SITE_KINDS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "router_logits")
RESIDUAL_SITE_KINDS = STREAM_SITE_KINDS
HEAD_SITE_KINDS = ("attn.q", "attn.k", "attn.v", "attn.z", "attn.pattern")
FINE_SITE_KINDS = ("mlp.hidden", "moe.expert_out")
LAYER_SITE_KINDS = (*STREAM_SITE_KINDS, *HEAD_SITE_KINDS, *FINE_SITE_KINDS)
GLOBAL_SITES = ("embed", "final_norm", "logits")
SITE_PATTERNS = ("embed", *(f"layers.{{i}}.{kind}" for kind in LAYER_SITE_KINDS), "final_norm", "logits")
# Site kinds whose value exists only on a path chosen for it (the config's execution.materialize).
MATERIALIZING_KINDS = ("moe.expert_out",)
_MOE_ONLY = ("router_logits", "moe.expert_out")
_LAYER_SITE = re.compile(r"^layers\.(\d+)\.([\w.]+)$")


class UnknownSiteError(KeyError):
    """A site name that is not in the vocabulary of this model."""

    def __str__(self) -> str:  # KeyError would print the message with quotes.
        return str(self.args[0])


def parse_site(site: str) -> tuple[int | None, str]:
    """Split ``"layers.3.resid_post"`` into ``(3, "resid_post")``; global sites give ``(None, name)``."""
    match = _LAYER_SITE.match(site)
    if match:
        return int(match.group(1)), match.group(2)
    return None, site


def check_site(config: ModelConfig, site: str) -> str:
    """Return ``site`` if this model has it, else raise :class:`UnknownSiteError` listing valid patterns."""
    layer, kind = parse_site(site) if isinstance(site, str) else (None, None)
    valid = kind in GLOBAL_SITES if layer is None else kind in LAYER_SITE_KINDS
    if not valid:
        raise UnknownSiteError(
            f"Unknown site {site!r}. Valid sites: {', '.join(SITE_PATTERNS)} "
            f"(with i in 0..{config.n_layers - 1}; router_logits only for MoE models)."
        )
    if layer is not None and layer >= config.n_layers:
        raise UnknownSiteError(
            f"Site {site!r} names layer {layer}, but the model has {config.n_layers} layers (0..{config.n_layers - 1})."
        )
    if kind in _MOE_ONLY and not config.is_moe:
        raise UnknownSiteError(f"Site {site!r} exists only in mixture-of-experts models; this model is dense.")
    if kind == "mlp.hidden" and config.is_moe:
        raise UnknownSiteError(f"Site {site!r} exists only in dense-MLP models; this mixture-of-experts model has "
                               f"per-expert outputs at layers.{layer}.moe.expert_out instead.")
    return site


def materializing(config: ModelConfig, sites) -> ModelConfig:
    """``config`` whose execution settings materialise the requested sites that need it (``moe.expert_out``).

    Called by :func:`lrt_jax.run` with the sites read or rewritten, so a program that
    touches only other sites is exactly the one without them.
    """
    wanted = tuple(sorted(s for s in sites if parse_site(s)[1] in MATERIALIZING_KINDS))
    if wanted == tuple(config.execution.materialize):
        return config
    import dataclasses

    return config.replace(execution=dataclasses.replace(config.execution, materialize=wanted))


def check_sites(config: ModelConfig, sites) -> tuple[str, ...]:
    """Validate a site name or a sequence of them; returns a tuple without duplicates, order kept."""
    if isinstance(sites, str):
        sites = (sites,)
    return tuple(dict.fromkeys(check_site(config, s) for s in sites))


def site_heads(config: ModelConfig, site: str) -> tuple[int, int] | None:
    """``(heads, head_dim)`` of a per-head site (``attn.q/k/v/z``), ``None`` for the other sites."""
    _, kind = parse_site(check_site(config, site))
    if kind in ("attn.k", "attn.v"):
        return config.n_kv_heads, config.head_dim
    if kind in ("attn.q", "attn.z"):
        return config.n_heads, config.head_dim
    return None


def site_width(config: ModelConfig, site: str) -> int:
    """Size of the last axis at ``site``; ``heads · head_dim`` for a per-head site (flattened)."""
    _, kind = parse_site(check_site(config, site))
    if kind == "attn.pattern":
        raise ValueError(f"Site {site!r} is [batch, heads, q, slots] and has no fixed width: it can be captured, "
                         "not edited or used as a vector site. Edit attn.z (per-head outputs) instead.")
    heads = site_heads(config, site)
    if heads is not None:
        return heads[0] * heads[1]
    if kind == "logits":
        return config.vocab_size
    if kind == "router_logits":
        return config.n_experts
    if kind == "mlp.hidden":
        return config.d_ff
    if kind == "moe.expert_out":  # [b, t, top_k, d_model], edited flattened
        return config.top_k * config.d_model
    return config.d_model


def all_sites(config: ModelConfig, kind: str | None = None, *, fine: bool = False) -> tuple[str, ...]:
    """Every residual-stream site of the model in data-flow order, or the per-layer sites of one ``kind``.

    With ``fine`` the list adds, per layer, the per-head sites ``attn.q/k/v/z`` and the
    neuron or per-expert site (``mlp.hidden`` or ``moe.expert_out``); ``attn.pattern``
    is listed only when asked for by ``kind``.
    """
    if kind is not None:
        return check_sites(config, [f"layers.{i}.{kind}" for i in range(config.n_layers)])
    extra = (*HEAD_SITE_KINDS[:-1], *FINE_SITE_KINDS) if fine else ()
    kinds = [k for k in (*STREAM_SITE_KINDS, *extra)
             if (k not in _MOE_ONLY or config.is_moe) and (k != "mlp.hidden" or not config.is_moe)]
    per_layer = [f"layers.{i}.{k}" for i in range(config.n_layers) for k in kinds]
    return ("embed", *per_layer, "final_norm", "logits")
