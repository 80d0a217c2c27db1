"""Feed-forward blocks: dense (gated or plain) and mixture-of-experts.

MoE routing (Mixtral, OLMoE, Qwen2-MoE): router logits ``[batch, seq, n_experts]`` in
float32, softmax, top-k, optional renormalisation of the k weights
(``norm_topk_prob``); the token's output is the weighted sum of its k experts, plus a
shared expert gated by ``sigmoid(x · w)`` when ``shared_expert_d_ff > 0``.

Two dispatches compute the same numbers (``config.execution.moe``):

- **dense**: every expert on every token, non-selected experts weighted zero. Costs
  ``n_experts / top_k`` times the ideal flops; the faster one on a CPU, whose grouped
  matmul is no cheaper.
- **sparse**: the ``tokens × top_k`` assignments sorted by expert and three grouped
  matmuls (``jax.lax.ragged_dot``) over the sorted rows, then a weighted scatter-add
  back to the tokens. No capacity, so no token is ever dropped. With a mesh it runs
  inside ``shard_map``: expert weights are split along their hidden width
  (``expert_mlp`` → ``fsdp × tensor`` by default) and/or their expert index
  (``experts``); each device gathers the tokens of the batch axes it shares with the
  weights, computes its slice of every expert, and the partial outputs are
  reduce-scattered back to batch-sharded tokens. Weights never move, so an FSDP mesh
  pays two activation-sized collectives per layer instead of gathering every
  expert's weights.

``"auto"`` picks sparse on accelerators and dense on CPUs (:func:`moe_dispatch`).

Sites: ``layers.{i}.router_logits``; ``layers.{i}.mlp.hidden`` ``[b, t, d_ff]`` (the
dense MLP's post-activation neurons, the input of ``down_proj``); and
``layers.{i}.moe.expert_out`` ``[b, t, top_k, d_model]``, the outputs of each token's
chosen experts in the order of :func:`routing` (their indices), before weighting.
``expert_out`` is computed only when requested (``config.execution.materialize``);
rewriting it changes the layer's output, which is then ``Σ_k weight_k · expert_out_k``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from lrt_jax.config import ModelConfig
from lrt_jax.model.sharding import activation_spec, constrain
from lrt_jax.model.tap import Tap

__all__ = ["ACTIVATIONS", "MLP", "MoE", "grouped_experts", "moe_dispatch", "routing"]

INIT = nn.initializers.normal(stddev=0.02)

ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}



class MLP(nn.Module):
    """``down(act(gate(x)) · up(x))`` when gated, ``down(act(up(x)))`` when plain.

    With ``layer_index`` the post-activation neurons pass through the
    ``layers.{i}.mlp.hidden`` site (shared experts inside an MoE have none).
    """

    config: ModelConfig
    d_ff: int
    use_bias: bool = False
    layer_index: int | None = None

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
        if hidden.ndim == 3:
            hidden = constrain(cfg, hidden, "act_batch", "act_seq", "act_mlp")
        if self.layer_index is not None:
            hidden = Tap(f"layers.{self.layer_index}.mlp.hidden")(hidden)
        return nn.Dense(cfg.d_model, use_bias=self.use_bias, kernel_init=INIT, name="down_proj")(hidden)


def routing(config: ModelConfig, router_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(weights, indices)`` of each token's ``top_k`` experts, ``[..., top_k]`` each, from router logits.

    ``indices`` orders the ``moe.expert_out`` site's ``top_k`` axis.
    """
    probs = jax.nn.softmax(router_logits.astype(jnp.float32), axis=-1)
    weights, indices = jax.lax.top_k(probs, config.top_k)
    if config.norm_topk_prob:
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    return weights, indices


def moe_dispatch(config: ModelConfig) -> str:
    """``"dense"`` or ``"sparse"``: the dispatch ``config.execution.moe`` asks for, resolving ``"auto"``.

    ``"auto"`` is sparse on accelerators (the mesh's devices when there is one, so a
    plan for a deviceless TPU counts as TPU) and dense on CPUs: XLA's CPU ``ragged_dot``
    multiplies every row by every group, so there the sort only adds work
    (``experiments/bench_moe.py``: sparse 1–3.8× the dense time, slower from 200k
    expert parameters up).
    """
    choice = config.execution.moe
    if choice != "auto":
        return choice
    mesh = config.execution.mesh
    platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
    return "dense" if platform == "cpu" else "sparse"


def grouped_experts(rows, indices, weights, w_gate, w_up, w_down, activation: str, *, n_experts: int,
                    first_expert=0, per_expert: bool = False):
    """Sparse expert computation of ``rows [N, d]``, each routed to ``indices [N, k]`` with ``weights [N, k]``.

    ``w_gate``/``w_up`` ``[E_local, d, f]`` and ``w_down [E_local, f, d]`` hold experts
    ``first_expert .. first_expert + E_local`` (all of them unless expert-sharded; ``f``
    may be a slice of the hidden width); ``activation`` names one of :data:`ACTIVATIONS`.
    The ``N · k`` assignments are sorted by expert; ``jax.lax.ragged_dot`` multiplies each
    expert's contiguous group of rows by its weights; assignments to experts held
    elsewhere contribute zero. Returns float32 ``[N, d]`` (``Σ_k weight · expert(row)``)
    or, with ``per_expert``, ``[N, k, d]`` (unweighted). Exact: every assignment is
    computed, none is dropped.

    Composes with ``jax.grad`` and ``jax.vmap`` (``ragged_dot`` alone batches only
    when every operand is batched): under ``vmap`` with shared weights the batch is
    folded into the rows, one grouped matmul for all of it; with batched weights, and
    in the backward pass under ``vmap`` (which needs per-example weight gradients),
    the batch is mapped sequentially.
    """
    op = _grouped_op(activation, n_experts, per_expert)
    return op(rows, indices, weights, w_gate, w_up, w_down, jnp.asarray(first_expert, jnp.int32))


def _grouped_core(activation: str, n_experts: int, per_expert: bool):
    act = ACTIVATIONS[activation]

    def core(rows, indices, weights, w_gate, w_up, w_down, first_expert):
        n, k = indices.shape
        flat = indices.reshape(-1)
        order = jnp.argsort(flat, stable=True)
        token = order // k
        counts = jnp.bincount(flat, length=n_experts).astype(jnp.int32)
        local = w_gate.shape[0]
        if local == n_experts:
            group_sizes, start = counts, None
        else:
            group_sizes = jax.lax.dynamic_slice(counts, (first_expert,), (local,))
            start = jnp.sum(jnp.where(jnp.arange(n_experts) < first_expert, counts, 0))
        sorted_rows = rows[token]
        if start is not None:
            sorted_rows = jnp.roll(sorted_rows, -start, axis=0)
        hidden = act(jax.lax.ragged_dot(sorted_rows, w_gate, group_sizes))
        hidden = hidden * jax.lax.ragged_dot(sorted_rows, w_up, group_sizes)
        out = jax.lax.ragged_dot(hidden, w_down, group_sizes, preferred_element_type=jnp.float32)
        # Rows past the local groups belong to experts held elsewhere: zero, not whatever the kernel leaves.
        out = jnp.where((jnp.arange(n * k) < jnp.sum(group_sizes))[:, None], out, 0.0)
        if start is not None:
            out = jnp.roll(out, start, axis=0)
        if per_expert:
            return jnp.zeros_like(out).at[order].set(out).reshape(n, k, -1)
        scaled = out * weights.reshape(-1)[order][:, None].astype(jnp.float32)
        return jnp.zeros((n, out.shape[-1]), jnp.float32).at[token].add(scaled)

    return core


def _broadcast_batched(size, args, batched):
    return tuple(a if b else jnp.broadcast_to(a, (size, *jnp.shape(a))) for a, b in zip(args, batched))


@functools.cache
def _grouped_op(activation: str, n_experts: int, per_expert: bool):
    """``grouped_experts`` as a ``custom_vjp`` over ``custom_vmap`` pieces (see its docstring)."""
    core = _grouped_core(activation, n_experts, per_expert)

    @jax.custom_batching.custom_vmap
    def forward(*args):
        return core(*args)

    @forward.def_vmap
    def _forward_batched(size, batched, *args):
        if any(batched[3:]):  # weights or the first expert differ per example
            return jax.lax.map(lambda a: forward(*a), _broadcast_batched(size, args, batched)), True
        rows, indices, weights = _broadcast_batched(size, args[:3], batched[:3])
        out = forward(rows.reshape(-1, rows.shape[-1]), indices.reshape(-1, indices.shape[-1]),
                      weights.reshape(-1, weights.shape[-1]), *args[3:])
        return out.reshape(size, -1, *out.shape[1:]), True

    @jax.custom_batching.custom_vmap
    def backward(rows, indices, weights, w_gate, w_up, w_down, first_expert, cotangent):
        def differentiable(rows, weights, w_gate, w_up, w_down):
            return core(rows, indices, weights, w_gate, w_up, w_down, first_expert)

        return jax.vjp(differentiable, rows, weights, w_gate, w_up, w_down)[1](cotangent)

    @backward.def_vmap
    def _backward_batched(size, batched, *args):
        return jax.lax.map(lambda a: backward(*a), _broadcast_batched(size, args, batched)), (True,) * 5

    @jax.custom_vjp
    def op(*args):
        return forward(*args)

    def op_forward(*args):
        return forward(*args), args

    def op_backward(args, cotangent):
        d_rows, d_weights, d_gate, d_up, d_down = backward(*args, cotangent)
        return d_rows, None, d_weights, d_gate, d_up, d_down, None

    op.defvjp(op_forward, op_backward)
    return op


def _axes(entry) -> tuple[str, ...]:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def _expert_weight_specs(config: ModelConfig, shape) -> tuple[PartitionSpec, PartitionSpec]:
    """Mesh specs of ``gate/up [E, d, f]`` and ``down [E, f, d]`` inside the sparse dispatch (``d`` whole)."""
    from lrt_jax.parallel.rules import DEFAULT_RULES, fit_spec_to_mesh  # parallel imports the model

    rules = config.execution.rules or DEFAULT_RULES
    spec = nn.logical_to_mesh_axes(("experts", None, "expert_mlp"), rules)
    spec = fit_spec_to_mesh(shape, spec, config.execution.mesh)[0]
    return spec, PartitionSpec(spec[0], spec[2], None)


def sparse_experts(config: ModelConfig, x, indices, weights, w_gate, w_up, w_down, *, per_expert: bool = False):
    """Sparse dispatch of ``x [b, t, d]``; ``[b, t, d]`` (weighted sum) or ``[b, t, k, d]`` with ``per_expert``.

    Without a mesh this is :func:`grouped_experts` on the flattened tokens. With one it
    runs in ``shard_map`` (see the module docstring): tokens are all-gathered over the
    batch axes that also split the weights, partial outputs reduce-scattered back over
    them and summed over the weight axes that do not split the batch.
    """
    k = config.top_k
    mesh = config.execution.mesh

    def local(x, indices, weights, w_gate, w_up, w_down, first_expert):
        n = x.shape[0] * x.shape[1]
        out = grouped_experts(x.reshape(n, -1), indices.reshape(n, k), weights.reshape(n, k),
                              w_gate.astype(x.dtype), w_up.astype(x.dtype), w_down.astype(x.dtype), config.activation,
                              n_experts=config.n_experts, first_expert=first_expert, per_expert=per_expert)
        return out.reshape(*x.shape[:2], *out.shape[1:])

    if mesh is None:
        return local(x, indices, weights, w_gate, w_up, w_down, 0).astype(x.dtype)

    token_spec = activation_spec(config, x.shape, ("act_batch", None, None))
    batch_axes = _axes(token_spec[0])
    up_spec, down_spec = _expert_weight_specs(config, w_gate.shape)
    expert_axes, width_axes = _axes(up_spec[0]), _axes(up_spec[2])
    weight_axes = expert_axes + tuple(a for a in width_axes if a not in expert_axes)
    gathered = tuple(a for a in batch_axes if a in weight_axes)
    summed = tuple(a for a in weight_axes if a not in batch_axes)
    local_experts = w_gate.shape[0] // max(1, _size(mesh, expert_axes))

    def body(x, indices, weights, w_gate, w_up, w_down):
        if gathered:
            x, indices, weights = (jax.lax.all_gather(v, gathered, axis=0, tiled=True) for v in (x, indices, weights))
        first = jax.lax.axis_index(expert_axes) * local_experts if expert_axes else 0
        out = local(x, indices, weights, w_gate, w_up, w_down, first)
        if gathered:
            out = jax.lax.psum_scatter(out, gathered, scatter_dimension=0, tiled=True)
        if summed:
            out = jax.lax.psum(out, summed)
        return out.astype(x.dtype)

    rest = (None,) * (3 if per_expert else 2)
    return jax.shard_map(
        body, mesh=mesh,
        in_specs=(token_spec, token_spec, token_spec, up_spec, up_spec, down_spec),
        out_specs=PartitionSpec(token_spec[0], *rest), check_vma=False,
    )(x, indices, weights, w_gate, w_up, w_down)


def _size(mesh, axes) -> int:
    size = 1
    for axis in axes:
        size *= mesh.shape[axis]
    return size


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
        top_w, top_i = routing(cfg, logits)

        w_gate = self.param("gate_proj", INIT, (e, d, f), jnp.float32)
        w_up = self.param("up_proj", INIT, (e, d, f), jnp.float32)
        w_down = self.param("down_proj", INIT, (e, f, d), jnp.float32)
        site = f"layers.{self.layer_index}.moe.expert_out"
        per_expert = site in cfg.execution.materialize
        if moe_dispatch(cfg) == "dense":
            act = ACTIVATIONS[cfg.activation]
            hidden = act(jnp.einsum("btd,edf->btef", x, w_gate.astype(x.dtype)))
            hidden = hidden * jnp.einsum("btd,edf->btef", x, w_up.astype(x.dtype))
            expert_out = jnp.einsum("btef,efd->bted", hidden, w_down.astype(x.dtype))
            if per_expert:
                out = jnp.take_along_axis(expert_out, top_i[..., None], axis=2)
            else:
                weights = jnp.sum(jax.nn.one_hot(top_i, e, dtype=jnp.float32) * top_w[..., None], axis=-2)
                out = jnp.einsum("bted,bte->btd", expert_out, weights.astype(x.dtype))
        else:
            out = sparse_experts(cfg, x, top_i, top_w, w_gate, w_up, w_down, per_expert=per_expert)
        if per_expert:
            out = Tap(site)(out)
            out = jnp.einsum("btkd,btk->btd", out, top_w.astype(out.dtype))
        out = constrain(cfg, out, "act_batch", "act_seq", "act_embed")

        if cfg.shared_expert_d_ff:
            shared = MLP(cfg, cfg.shared_expert_d_ff, name="shared")(x)
            gate = nn.Dense(1, use_bias=False, kernel_init=INIT, name="shared_gate")(x)
            out = out + jax.nn.sigmoid(gate.astype(jnp.float32)).astype(x.dtype) * shared
        return out
