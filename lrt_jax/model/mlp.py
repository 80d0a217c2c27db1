"""Feed-forward blocks: dense (gated or plain) and mixture-of-experts.

MoE routing (Mixtral, OLMoE, Qwen2-MoE): router logits ``[batch, seq, n_experts]`` in
float32, softmax, top-k, optional renormalisation of the k weights
(``norm_topk_prob``); the token's output is the weighted sum of its k experts, plus a
shared expert gated by ``sigmoid(x · w)`` when ``shared_expert_d_ff > 0``.

Every expert is evaluated on every token and non-selected experts get weight zero.
That is exact and simple, and fast for the small expert counts this project trains;
a capacity-based dispatch would be the next step for large MoE checkpoints.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax.model.tap import Tap

INIT = nn.initializers.normal(stddev=0.02)

ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


class MLP(nn.Module):
    """``down(act(gate(x)) · up(x))`` when gated, ``down(act(up(x)))`` when plain."""

    config: ModelConfig
    d_ff: int
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        act = ACTIVATIONS[cfg.activation]
        up = nn.Dense(self.d_ff, use_bias=self.use_bias, kernel_init=INIT, name="up_proj")(x)
        if cfg.mlp_type == "gated":
            gate = nn.Dense(self.d_ff, use_bias=self.use_bias, kernel_init=INIT, name="gate_proj")(x)
            hidden = act(gate) * up
        else:
            hidden = act(up)
        return nn.Dense(cfg.d_model, use_bias=self.use_bias, kernel_init=INIT, name="down_proj")(hidden)


class MoE(nn.Module):
    """Top-k mixture of gated experts; router logits pass through the ``router_logits`` site."""

    config: ModelConfig
    layer_index: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        e, f, d = cfg.n_experts, cfg.moe_d_ff, cfg.d_model
        logits = nn.Dense(e, use_bias=False, kernel_init=INIT, dtype=jnp.float32, name="router")(x.astype(jnp.float32))
        logits = Tap(f"layers.{self.layer_index}.router_logits")(logits)
        probs = jax.nn.softmax(logits, axis=-1)
        top_w, top_i = jax.lax.top_k(probs, cfg.top_k)
        if cfg.norm_topk_prob:
            top_w = top_w / jnp.sum(top_w, axis=-1, keepdims=True)
        weights = jnp.sum(jax.nn.one_hot(top_i, e, dtype=jnp.float32) * top_w[..., None], axis=-2)

        w_gate = self.param("gate_proj", INIT, (e, d, f), jnp.float32)
        w_up = self.param("up_proj", INIT, (e, d, f), jnp.float32)
        w_down = self.param("down_proj", INIT, (e, f, d), jnp.float32)
        act = ACTIVATIONS[cfg.activation]
        hidden = act(jnp.einsum("btd,edf->btef", x, w_gate.astype(x.dtype)))
        hidden = hidden * jnp.einsum("btd,edf->btef", x, w_up.astype(x.dtype))
        expert_out = jnp.einsum("btef,efd->bted", hidden, w_down.astype(x.dtype))
        out = jnp.einsum("bted,bte->btd", expert_out, weights.astype(x.dtype))

        if cfg.shared_expert_d_ff:
            shared = MLP(cfg, cfg.shared_expert_d_ff, name="shared")(x)
            gate = nn.Dense(1, use_bias=False, kernel_init=INIT, name="shared_gate")(x)
            out = out + jax.nn.sigmoid(gate.astype(jnp.float32)).astype(x.dtype) * shared
        return out
