"""The decoder's layers under ``lax.scan``, with every site still readable and rewritable per layer.

With ``config.execution.scan_layers`` the blocks run as a ``jax.lax.scan`` over a
*period*: the shortest repeating unit of the layer types (one block for Llama, a
sliding + global pair for Gemma-2). Layer ``i = c · period + j`` is position ``j`` of
chunk ``c``; layers after the last whole period (a pattern that does not divide
``n_layers``) run unrolled. XLA then compiles one period instead of ``n_layers``
blocks, so compile time and executable size stop growing with depth.

Sites (see :mod:`lrt_jax.sites`). A hook cannot store a value from inside a loop body
(it would leak a tracer), and the layer index is traced there. So the hooks come as
a :class:`SiteHooks` saying which sites are *read* and which are *rewritten*, and the
stack is split into runs of consecutive chunks with the same signature (the kinds
read and rewritten at each position of the period). Each run of two or more chunks
is one scan; in its body a rewrite calls the hook of the right layer through
``lax.switch`` on the chunk index, and read values (already reduced by
``SiteHooks.prepare``) leave the scan as its stacked outputs and are stored per layer
after it. Capturing every ``resid_post`` is therefore one scan; capturing layer 2
only scans nothing that precedes it and leaves the rest of the stack dead, so XLA
drops it. Rewrites with a side effect (``SiteHooks.eager``, e.g. an ``Add`` that
measures the residual norm once for later steps) keep their chunk unrolled.

Parameters. The public format stays the per-layer tree (``layers_{i}/...``), which
loading, saving, LoRA and ``param_shardings`` use; each run stacks its layers'
weights inside the compiled function (one copy of the stacked layers, ``1/fsdp`` of
them per device under FSDP). :func:`stack_layers` gives the stacked format, which the
decoder also takes directly (no copy when one run covers the stack)::

    layers/offset_{j}/<block tree>  leaves [n_layers // period, ...]   (layer c·period + j at index c)
    layers_{i}/...                  for the layers after the last whole period

:func:`lrt_jax.parallel.param_shardings` places a stacked tree like the per-layer one
(the layer axis unsharded) and :func:`lrt_jax.parallel.plan` lowers scanned configs on
it. Stacking inside the program also costs compile time (one concatenation per weight):
on Gemma-2-9B, ``cpu:8``, capture of every ``resid_post`` at 8 × 4096, compile takes
8.0 s at 4 layers and 10.3 s at 42 on stacked weights (2.9× from 4 to 42 layers when
the program stacks them; unrolled, 9.7 s and 69 s).

Default: :func:`scanned_by_default` turns scanning on from 8 layers (real
checkpoints); model organisms and test models stay unrolled, the simplest program.

KV cache. In scan mode :func:`~lrt_jax.model.empty_cache` returns a :class:`ScanCache`
(caches stacked like the parameters), which the decoder carries through the scan
and updates in place; a tuple of per-layer :class:`LayerCache` is also accepted and
returned as such (stacked and unstacked at the boundary).

Reads leave a scan stacked (``[chunks, ...]`` per read kind), so a capture holds its
values once more as temporaries while they are split per layer.

Remat (``config.execution.remat``; with it the layers take this path also without
``scan_layers``, unscanned): ``"block"`` wraps each block in
``jax.checkpoint``; ``"dots"`` saves the outputs of the weight matmuls (dots without
batch dimensions, so not the attention scores) and recomputes the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax.model.attention import LayerCache
from lrt_jax.model.block import Block
from lrt_jax.model.tap import Tap

__all__ = ["ScanCache", "SiteHooks", "layer_period", "scanned_by_default", "stack_cache", "stack_layers",
           "unstack_cache", "unstack_layers"]

STACKED = "layers"
SCAN_BY_DEFAULT_FROM_LAYERS = 8


def _identity(site, value):
    return value


def _ignore(site, value):
    return None


class SiteHooks(NamedTuple):
    """What a decoder call does at its sites.

    Attributes:
      rewrite: ``rewrite(site, value) -> value`` at the sites in ``rewrites``; pure (it may
        run inside ``lax.switch`` in a loop body), except at the sites in ``eager``.
      rewrites: the sites rewritten.
      eager: rewritten sites whose rewrite has a side effect; their layers never run in a scan.
      reads: the sites read, after any rewrite.
      prepare: ``prepare(site, value) -> value``, pure, applied where a read value is computed
        (e.g. a reduction over the sequence, so that a scan stacks only what is kept); in a
        scan it is called once per position of the period, so it may depend on the site's
        kind but not on its layer.
      store: ``store(site, prepared)`` records a read value; always called outside any loop.
    """

    rewrite: Callable = _identity
    rewrites: frozenset = frozenset()
    eager: frozenset = frozenset()
    reads: frozenset = frozenset()
    prepare: Callable = _identity
    store: Callable = _ignore

    def __call__(self, site: str, value: jax.Array) -> jax.Array:
        """Apply the hooks at ``site`` directly (outside any loop): rewrite, then read."""
        if site in self.rewrites:
            value = self.rewrite(site, value)
        if site in self.reads:
            self.store(site, self.prepare(site, value))
        return value


class ScanCache(NamedTuple):
    """The KV cache in scan mode: ``periods[j]`` holds layers ``c · period + j`` stacked on a leading axis.

    Attributes:
      periods: one :class:`LayerCache` per position of the period, ``[n_layers // period,
        batch, slots, n_kv_heads, head_dim]`` each.
      rest: one :class:`LayerCache` per layer after the last whole period.
    """

    periods: tuple
    rest: tuple

    @property
    def slots(self) -> int:
        return (self.periods[0].k.shape[2] if self.periods else self.rest[0].k.shape[1])


def layer_period(config: ModelConfig) -> int:
    """The shortest ``p`` with ``layer_type(i) == layer_type(i + p)`` for every layer (1 when all are alike)."""
    types = [config.layer_type(i) for i in range(config.n_layers)]
    return next(p for p in range(1, config.n_layers + 1) if types[p:] == types[: len(types) - p])


def uses_layer_path(config: ModelConfig) -> bool:
    """Whether the decoder runs its layers through this module (scan, or remat) rather than its plain loop."""
    return config.execution.scan_layers or config.execution.remat != "none"


def scanned_by_default(config: ModelConfig) -> ModelConfig:
    """``config`` with ``scan_layers=True`` when it has at least 8 layers (real checkpoints), else unchanged.

    Below that compiling the unrolled stack is cheap and small models (model organisms,
    tests) keep the simplest program.
    """
    if config.n_layers < SCAN_BY_DEFAULT_FROM_LAYERS or config.execution.scan_layers:
        return config
    return config.replace(execution=dataclasses.replace(config.execution, scan_layers=True))


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def stack_layers(config: ModelConfig, params) -> dict:
    """The per-layer tree ``params`` with its whole periods stacked (see the module docstring)."""
    p, chunks = layer_period(config), config.n_layers // layer_period(config)
    stacked = {key: value for key, value in params.items()
               if not (key.startswith("layers_") and int(key[7:]) < chunks * p)}
    stacked[STACKED] = {f"offset_{j}": _stack([params[f"layers_{c * p + j}"] for c in range(chunks)])
                        for j in range(p)}
    return stacked


def unstack_layers(config: ModelConfig, params) -> dict:
    """The per-layer tree of a tree from :func:`stack_layers` (a per-layer tree is returned as is)."""
    if STACKED not in params:
        return params
    p = layer_period(config)
    tree = {key: value for key, value in params.items() if key != STACKED}
    for j in range(p):
        stack = params[STACKED][f"offset_{j}"]
        for c in range(config.n_layers // p):
            tree[f"layers_{c * p + j}"] = jax.tree.map(lambda leaf: leaf[c], stack)
    return dict(sorted(tree.items()))


def stack_cache(config: ModelConfig, cache: tuple) -> ScanCache:
    """A :class:`ScanCache` from a tuple of per-layer :class:`LayerCache`."""
    p, chunks = layer_period(config), config.n_layers // layer_period(config)
    periods = tuple(_stack([cache[c * p + j] for c in range(chunks)]) for j in range(p))
    return ScanCache(periods, tuple(cache[chunks * p:]))


def unstack_cache(config: ModelConfig, cache: ScanCache) -> tuple:
    """The tuple of per-layer :class:`LayerCache` of a :class:`ScanCache`."""
    p, chunks = layer_period(config), config.n_layers // layer_period(config)
    layers = [jax.tree.map(lambda s: s[i // p], cache.periods[i % p]) for i in range(chunks * p)]
    return tuple(layers) + tuple(cache.rest)


def _checkpointed(config: ModelConfig, fn, in_loop: bool, static_argnums=()):
    remat = config.execution.remat
    if remat == "none":
        return fn
    policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable if remat == "dots" else None
    # Inside a loop XLA cannot hoist the recomputation, so CSE protection is not needed there.
    return jax.checkpoint(fn, policy=policy, prevent_cse=not in_loop, static_argnums=static_argnums)


def _block_with_sites(config, index, layer_params, x, positions, kv_mask, cache, cache_index, rewrite, rewrite_kinds,
                      read_kinds, prepare):
    """Block ``index`` on ``layer_params`` with ``rewrite(kind, value)`` and ``prepare`` at its sites.

    Returns ``(resid_post, new_cache, {kind: prepared value})``.
    """
    reads = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, Tap) and context.method_name == "__call__":
            kind = context.module.site.split(".", 2)[2]
            if kind in rewrite_kinds:
                out = rewrite(kind, out)
            if kind in read_kinds:
                reads[kind] = prepare(kind, out)
        return out

    with nn.intercept_methods(interceptor):
        x, new_cache = Block(config, index, parent=None).apply({"params": layer_params}, x, positions, kv_mask, cache,
                                                               cache_index)
    return x, new_cache, reads


def _kinds(sites, layer: int) -> frozenset:
    prefix = f"layers.{layer}."
    return frozenset(site[len(prefix):] for site in sites if site.startswith(prefix))


def _signature(hooks: SiteHooks, layer: int):
    return _kinds(hooks.reads, layer), _kinds(hooks.rewrites, layer), bool(_kinds(hooks.eager, layer))


def _runs(config: ModelConfig, hooks: SiteHooks, period: int, chunks: int) -> list[tuple[int, int, bool]]:
    """``(first chunk, end chunk, scanned)`` runs of equal chunk signatures; eager chunks never scan."""
    signatures = [tuple(_signature(hooks, c * period + j) for j in range(period)) for c in range(chunks)]
    runs = []
    for c, signature in enumerate(signatures):
        if runs and signatures[runs[-1][0]] == signature:
            runs[-1][1] = c + 1
        else:
            runs.append([c, c + 1])
    scan = config.execution.scan_layers
    return [(a, b, scan and b - a > 1 and not any(eager for _, _, eager in signatures[a])) for a, b in runs]


def _layer_params(params, layer: int, period: int, chunks: int):
    if STACKED in params and layer < chunks * period:
        return jax.tree.map(lambda leaf: leaf[layer // period], params[STACKED][f"offset_{layer % period}"])
    return params[f"layers_{layer}"]


def _run_params(params, j: int, period: int, chunks: int, first: int, end: int):
    """Position ``j``'s parameters of chunks ``first..end-1``, stacked ``[end - first, ...]``."""
    if STACKED in params:
        stack = params[STACKED][f"offset_{j}"]
        return stack if (first, end) == (0, chunks) else jax.tree.map(lambda leaf: leaf[first:end], stack)
    return _stack([params[f"layers_{c * period + j}"] for c in range(first, end)])


def run_layers(config: ModelConfig, params, x, positions, kv_mask, cache, cache_index, hooks: SiteHooks | None):
    """The blocks on the residual ``x [batch, seq, d_model]``: ``(resid_post of the last layer, new cache)``.

    ``params`` is the decoder's tree (per-layer or from :func:`stack_layers`); ``cache`` is
    ``None``, a :class:`ScanCache` or a tuple of :class:`LayerCache` (returned in the same form).
    """
    hooks = hooks or SiteHooks()
    period = layer_period(config)
    chunks = config.n_layers // period
    as_tuple = cache is not None and not isinstance(cache, ScanCache)
    if as_tuple:
        cache = stack_cache(config, cache)
    periods = None if cache is None else list(cache.periods)
    rest = None if cache is None else list(cache.rest)

    def one_layer(layer, layer_params, x, layer_cache):
        """Layer ``layer`` run directly: hooks applied here, reads stored after it."""
        reads_at, rewrites_at = _kinds(hooks.reads, layer), _kinds(hooks.rewrites, layer)
        site = functools.partial("layers.{}.{}".format, layer)

        def block(layer_params, x, layer_cache):
            return _block_with_sites(config, layer, layer_params, x, positions, kv_mask, layer_cache, cache_index,
                                     lambda kind, value: hooks.rewrite(site(kind), value), rewrites_at, reads_at,
                                     lambda kind, value: hooks.prepare(site(kind), value))

        if not _kinds(hooks.eager, layer):
            block = _checkpointed(config, block, in_loop=False)
        x, new_cache, reads = block(layer_params, x, layer_cache)
        for kind, value in reads.items():
            hooks.store(site(kind), value)
        return x, new_cache

    for first, end, scanned in _runs(config, hooks, period, chunks):
        if not scanned:
            for c in range(first, end):
                for j in range(period):
                    layer = c * period + j
                    layer_cache = None if cache is None else jax.tree.map(lambda s: s[c], periods[j])
                    x, new_cache = one_layer(layer, _layer_params(params, layer, period, chunks), x, layer_cache)
                    if cache is not None:
                        periods[j] = jax.tree.map(lambda s, n: s.at[c].set(n), periods[j], new_cache)
            continue
        x, periods = _scan_run(config, hooks, params, x, positions, kv_mask, periods, cache_index, period, chunks,
                               first, end)

    for layer in range(chunks * period, config.n_layers):
        index = layer - chunks * period
        x, new_cache = one_layer(layer, params[f"layers_{layer}"], x, None if cache is None else rest[index])
        if cache is not None:
            rest[index] = new_cache

    if cache is None:
        return x, None
    cache = ScanCache(tuple(periods), tuple(rest))
    return x, unstack_cache(config, cache) if as_tuple else cache


def _scan_run(config, hooks, params, x, positions, kv_mask, periods, cache_index, period, chunks, first, end):
    """Chunks ``first..end-1`` (same signature) as one ``lax.scan``; reads stored after it."""
    count = end - first
    layers = [[(first + k) * period + j for k in range(count)] for j in range(period)]

    def position(j, layer_params, x, layer_cache, k):
        """Position ``j`` of chunk ``first + k``; its block is built as layer ``layers[j][0]`` (types repeat)."""
        representative = layers[j][0]

        def rewrite(kind, value):
            branches = [functools.partial(hooks.rewrite, f"layers.{layer}.{kind}") for layer in layers[j]]
            return jax.lax.switch(k, branches, value)

        def prepare(kind, value):  # the same for every layer (see SiteHooks.prepare)
            return hooks.prepare(f"layers.{representative}.{kind}", value)

        return _block_with_sites(config, representative, layer_params, x, positions, kv_mask, layer_cache,
                                 cache_index, rewrite, _kinds(hooks.rewrites, representative),
                                 _kinds(hooks.reads, representative), prepare)

    position = _checkpointed(config, position, in_loop=True, static_argnums=(0,))

    def body(carry, xs):
        x, periods = carry
        layer_params, k = xs
        chunk = first + k
        reads = {}
        for j in range(period):
            layer_cache = None if periods is None else jax.tree.map(
                lambda s: jax.lax.dynamic_index_in_dim(s, chunk, 0, keepdims=False), periods[j])
            x, new_cache, layer_reads = position(j, layer_params[j], x, layer_cache, k)
            if periods is not None:  # written back in place: the stacked cache never leaves the carry
                periods = [*periods[:j], jax.tree.map(lambda s, n: jax.lax.dynamic_update_index_in_dim(s, n, chunk, 0),
                                                      periods[j], new_cache), *periods[j + 1:]]
            reads.update({f"{j}.{kind}": value for kind, value in layer_reads.items()})
        return (x, periods), reads

    xs = (tuple(_run_params(params, j, period, chunks, first, end) for j in range(period)), jnp.arange(count))
    (x, periods), ys = jax.lax.scan(body, (x, periods), xs)
    for key, values in ys.items():
        j, kind = key.split(".", 1)
        for k, layer in enumerate(layers[int(j)]):
            hooks.store(f"layers.{layer}.{kind}", values[k])
    return x, periods
