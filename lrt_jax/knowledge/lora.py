"""LoRA adapters on chosen projections of one layer, and training of that layer alone.

**Adapters** are a pytree separate from the model's parameters: a dict from the
slash-joined parameter path of a kernel (``"layers_2/mlp/up_proj/kernel"``, see
:mod:`lrt_jax.model.decoder`) to a :class:`LoraAdapter` ``(a [in, rank], b [rank, out])``.
Merging is functional and touches only those kernels::

    kernel' = kernel + scale · a @ b          (scale = alpha / rank in the LoRA paper)

``b`` starts at zero, so a fresh adapter leaves the model unchanged, and ``a`` is
uniform in ``±1/√in`` (the PEFT default), so gradients reach ``b`` from step one.
Training differentiates with respect to the adapters only (base parameters are
closed over), so every base parameter — including the adapted kernels themselves —
comes out of training bit-identical.

**Layer transfer loss** (latent semantic alignment trains the paired student layer
with it)::

    loss = layer_weight · (1 − mean cos(student[site], target))      over real positions
         + output_weight · output loss

where the output loss is the next-token cross-entropy on the batch's own tokens
(``"cross_entropy"``, pairs of real tokens) or ``KL(teacher ‖ student)`` of the next-token
distributions (``"kl_to_teacher"``, every real position).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from lrt_jax.config import ModelConfig
from lrt_jax._run import run
from lrt_jax.knowledge._training import optimize_trainable


class LoraAdapter(NamedTuple):
    """Low-rank update ``a @ b`` of one ``[in, out]`` kernel."""

    a: jax.Array  # [in, rank]
    b: jax.Array  # [rank, out]


def projection_kernel_paths(layer: int, projections: Sequence[str]) -> tuple[str, ...]:
    """Kernel paths of ``projections`` (``"attn/q_proj"``, ``"mlp/down_proj"``, ...) in ``layers_{layer}``."""
    return tuple(f"layers_{layer}/{projection}/kernel" for projection in projections)


def init_lora_adapters(key: jax.Array, params, paths: Sequence[str], rank: int) -> dict[str, LoraAdapter]:
    """Fresh adapters (``b = 0``) of rank ``rank`` for the 2-D kernels at ``paths``."""
    flat = traverse_util.flatten_dict(params, sep="/")
    adapters = {}
    for path, path_key in zip(paths, jax.random.split(key, len(paths))):
        if path not in flat:
            layer_paths = sorted(p for p in flat if p.startswith(path.split("/")[0] + "/") and p.endswith("kernel"))
            raise KeyError(f"No parameter {path!r}; kernels of that layer are {layer_paths}.")
        kernel = flat[path]
        if kernel.ndim != 2:
            raise ValueError(
                f"{path!r} has shape {kernel.shape}; LoRA here adapts [in, out] kernels only (not MoE expert stacks)."
            )
        fan_in, fan_out = kernel.shape
        if not 0 < rank <= min(fan_in, fan_out):
            raise ValueError(f"rank {rank} must be in 1..{min(fan_in, fan_out)} for {path!r} of shape {kernel.shape}.")
        bound = fan_in**-0.5
        a = jax.random.uniform(path_key, (fan_in, rank), kernel.dtype, -bound, bound)
        adapters[path] = LoraAdapter(a, jnp.zeros((rank, fan_out), kernel.dtype))
    return adapters


def merge_lora_adapters(params, adapters: dict[str, LoraAdapter], scale: float = 1.0):
    """Parameters with ``kernel + scale · a @ b`` at each adapted path; every other leaf is the same array."""
    flat = traverse_util.flatten_dict(params, sep="/")
    missing = sorted(set(adapters) - set(flat))
    if missing:
        raise KeyError(f"Adapters for {missing} have no matching parameter; were they made for another model?")
    for path, adapter in adapters.items():
        flat[path] = flat[path] + scale * (adapter.a @ adapter.b).astype(flat[path].dtype)
    return traverse_util.unflatten_dict(flat, sep="/")


class LayerTransferBatch(NamedTuple):
    """One batch for :func:`layer_transfer_loss`.

    Attributes:
      tokens: int ``[batch, seq]``.
      mask: bool ``[batch, seq]``, true for real tokens (left or right padding).
      target_activations: ``[batch, seq, d_student]`` what the student site should point
        along (ignored when ``layer_weight == 0``).
      teacher_logits: ``[batch, seq, vocab]`` for ``"kl_to_teacher"``, else ``None``.
    """

    tokens: jax.Array
    mask: jax.Array
    target_activations: jax.Array
    teacher_logits: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class LayerTransferLoss:
    """Weights and kinds of the two terms of the layer transfer loss (see module doc)."""

    site: str
    layer_weight: float = 1.0
    output_weight: float = 1.0
    output_loss: Literal["cross_entropy", "kl_to_teacher"] = "cross_entropy"


def masked_cosine_distance(values: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """``1 − mean cos(values, targets)`` over the positions where ``mask [batch, seq]`` is true."""
    cosine = optax.cosine_similarity(values, targets, epsilon=1e-12)
    weights = mask.astype(cosine.dtype)
    return 1.0 - jnp.sum(cosine * weights) / jnp.sum(weights)


def next_token_cross_entropy(logits: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean cross-entropy of ``tokens[:, 1:]`` under ``logits[:, :-1]`` where both tokens are real."""
    real = (mask[:, :-1] & mask[:, 1:]).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:])
    return jnp.sum(nll * real) / jnp.sum(real)


def kl_to_teacher(logits: jax.Array, teacher_logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean ``KL(softmax(teacher) ‖ softmax(student))`` of next-token distributions over real positions."""
    teacher_logprobs = jax.nn.log_softmax(teacher_logits, axis=-1)
    kl = jnp.sum(jnp.exp(teacher_logprobs) * (teacher_logprobs - jax.nn.log_softmax(logits, axis=-1)), axis=-1)
    weights = mask.astype(kl.dtype)
    return jnp.sum(kl * weights) / jnp.sum(weights)


def run_and_read_site(config: ModelConfig, params, tokens, mask, site: str) -> tuple[jax.Array, jax.Array]:
    """Differentiable ``(logits [batch, seq, vocab], activations at site [batch, seq, width])``."""
    logits, activations = run(config, params, (tokens, mask), sites=(site,))
    return logits, activations[site]


def layer_transfer_loss(config: ModelConfig, params, batch: LayerTransferBatch,
                        spec: LayerTransferLoss) -> tuple[jax.Array, dict]:
    """``(loss, {"layer": …, "output": …})`` of a student with ``params`` on ``batch`` (see module doc)."""
    logits, activations = run_and_read_site(config, params, batch.tokens, batch.mask, spec.site)
    layer = masked_cosine_distance(activations, batch.target_activations, batch.mask)
    if spec.output_loss == "cross_entropy":
        output = next_token_cross_entropy(logits, batch.tokens, batch.mask)
    elif spec.output_loss == "kl_to_teacher":
        if batch.teacher_logits is None:
            raise ValueError("output_loss='kl_to_teacher' needs LayerTransferBatch.teacher_logits.")
        output = kl_to_teacher(logits, batch.teacher_logits, batch.mask)
    else:
        raise ValueError(f"output_loss must be 'cross_entropy' or 'kl_to_teacher'; got {spec.output_loss!r}.")
    return spec.layer_weight * layer + spec.output_weight * output, {"layer": layer, "output": output}


def train_layer_with_lora(config: ModelConfig, params, adapters: dict[str, LoraAdapter],
                          batch_for_step: Callable[[int], LayerTransferBatch], spec: LayerTransferLoss,
                          optimizer: optax.GradientTransformation, steps: int, *, scale: float = 1.0):
    """Train only ``adapters`` on :func:`layer_transfer_loss`; ``params`` are never updated.

    Returns:
      ``(trained adapters, history)`` with ``history["loss" | "layer" | "output"] [steps]``;
      the trained model is ``merge_lora_adapters(params, adapters, scale)``.
    """

    def loss_fn(adapters, batch):
        return layer_transfer_loss(config, merge_lora_adapters(params, adapters, scale), batch, spec)

    return optimize_trainable(loss_fn, adapters, optimizer, batch_for_step, steps)
