"""Compile a job without weights and say whether it fits (``lrt-jax plan``).

``plan`` lowers the package's own jitted ``capture`` / ``forward`` / ``generate`` on
abstract parameters (``jax.eval_shape`` of :func:`~lrt_jax.model.init_params`, cast to
``dtype``, placed by :func:`param_shardings`; stacked by :func:`~lrt_jax.model.stack_layers`
when ``config.execution.scan_layers``) and abstract batch-sharded tokens, compiles
it for a topology, and reads XLA's own accounting:

* ``per_device_bytes``: ``compiled.memory_analysis()`` (arguments, outputs, temporaries;
  total = their sum minus aliased bytes), per device;
* ``flops``: ``compiled.cost_analysis()["flops"]`` times the number of devices (XLA
  reports the flops of one SPMD partition);
* ``ideal_flops = 2 · matmul_params · batch · seq``: the flops of the weights alone,
  no attention scores. ``matmul_params`` is ``params_active`` (only ``top_k`` of
  ``n_experts`` experts) without the embedding table (a gather) and without the LM head
  when the job computes no logits (a capture without the ``logits`` site, whose head XLA
  drops). For ``generate`` the tokens are ``batch · (seq + max_new_tokens)``, but XLA
  counts the decode loop's body once, so its ratio is not a measure of waste; likewise
  with ``scan_layers`` XLA counts the scanned period once, so plan flops with it off;
* on TPU the program is compiled with XLA's windowed einsums off (a loop that passes
  FSDP shards around the ring while it multiplies, moving the same bytes as the
  all-gather or reduce-scatter it replaces): cost analysis counts a loop body once, so
  with them on, flops and collectives read low;
* ``collective_bytes``: the result bytes of every all-reduce, all-gather,
  reduce-scatter, all-to-all and collective-permute in the compiled HLO text, per
  device (an op inside a loop body, as in ``generate``, is counted once).

Topologies: ``"cpu:N"`` uses N of the local CPU devices; a TPU topology such as
``"v5e:2x4"`` or ``"v5p:2x2x1"`` compiles deviceless through
``jax.experimental.topologies`` and needs ``libtpu`` (``pip install -e ".[tpu-plan]"``).
``hbm_bytes`` is the chip's HBM (v4 32 GiB, v5e 16 GiB, v5p 95 GiB, v6e 32 GiB); on CPU it
is the host's physical memory divided by N. ``fits`` is ``total <= hbm_bytes``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from lrt_jax._generate import Sampling, _generate
from lrt_jax._run import _capture, _forward
from lrt_jax.config import ModelConfig
from lrt_jax.model import init_params, stack_layers
from lrt_jax.parallel.mesh import MeshError, make_mesh, parse_mesh_spec
from lrt_jax.parallel.rules import batch_spec, param_shardings
from lrt_jax.sites import all_sites, check_sites, site_width

JOBS = ("capture", "forward", "generate")
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
HBM_GIB = {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
                "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
_COLLECTIVE_OP = re.compile(r"=\s*(\(.*?\)|\S+)\s+(" + "|".join(COLLECTIVES) + r")(-start|-done)?\(")
_CHANNEL = re.compile(r"channel_id=(\d+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_SHAPE = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one compiled job needs per device; see the module docstring for each field."""

    job: str
    topology: str
    mesh: dict
    fits: bool
    per_device_bytes: dict
    hbm_bytes: int | None
    flops: float
    ideal_flops: float
    flops_ratio: float
    collective_bytes: dict
    compile_s: float
    params_total: int
    params_active: int
    execution: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def _tpu_devices(topology: str):
    # Several planners (test workers, a notebook) may compile at once; libtpu's lock file would refuse the second.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        import libtpu  # noqa: F401
    except ImportError as error:
        raise ValueError(f"topology {topology!r} compiles for TPU and needs libtpu; install it with "
                         f"pip install -e \".[tpu-plan]\" (no TPU needed).") from error
    from jax.experimental import topologies

    try:
        return list(topologies.get_topology_desc(topology, "tpu").devices)
    except Exception as error:  # libtpu's own message says which names it knows
        raise ValueError(f"libtpu does not know the topology {topology!r} ({error}); write it as "
                         f"GENERATION:SHAPE, e.g. v5e:2x4 or v5p:2x2x1.") from error


def topology_devices(topology: str) -> tuple[list, int | None]:
    """``(devices, hbm_bytes per device)`` of ``"cpu:N"`` or a TPU name such as ``"v5e:2x4"``."""
    kind, sep, shape = topology.partition(":")
    if not sep or not shape:
        raise ValueError(f"topology {topology!r} is not of the form cpu:N or GENERATION:SHAPE (e.g. v5e:2x4).")
    if kind == "cpu":
        if not shape.isdigit() or int(shape) < 1:
            raise ValueError(f"topology {topology!r}: N in cpu:N must be a positive integer.")
        n, cpus = int(shape), jax.devices("cpu")
        if n > len(cpus):
            raise ValueError(f"topology {topology!r} needs {n} CPU devices but {len(cpus)} exist; set "
                             f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before JAX starts.")
        host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return cpus[:n], host // n
    if kind not in HBM_GIB:
        raise ValueError(f"topology {topology!r}: unknown TPU generation {kind!r}; known are cpu, "
                         f"{', '.join(HBM_GIB)}.")
    return _tpu_devices(topology), HBM_GIB[kind] * 2**30


def parameter_counts(config: ModelConfig, abstract_params) -> tuple[int, int]:
    """``(params_total, params_active)``: active counts ``top_k`` of the ``n_experts`` experts' weights."""
    total = experts = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_params)[0]:
        total += leaf.size
        name = getattr(path[-1], "key", None)
        if config.is_moe and name in ("gate_proj", "up_proj", "down_proj") and leaf.ndim == 3:
            experts += leaf.size
    return total, total - experts * (config.n_experts - config.top_k) // max(config.n_experts, 1)


def matmul_params(config: ModelConfig, active: int, *, logits: bool) -> int:
    """Active parameters that multiply activations: no embedding table, the head only if ``logits``."""
    table = config.vocab_size * config.d_model
    head = 0 if config.tie_embeddings else table
    return active - table - head + (table if logits else 0)


def collective_bytes(hlo_text: str) -> dict[str, int]:
    """Result bytes of each collective kind in compiled HLO text (async pairs counted at ``-done``).

    TPU's async collective fusions repeat one all-gather in the computations that
    start, advance and finish it, with the same channel, source op and shape; such
    repeats are counted once (``shard_map``'s collectives share one channel id, so the
    source op tells them apart).
    """
    counts = dict.fromkeys(COLLECTIVES, 0)
    seen = set()
    for line in hlo_text.splitlines():
        match = _COLLECTIVE_OP.search(line)
        if match is None or match.group(3) == "-start":
            continue
        shape, op = match.group(1), match.group(2)
        channel, name = _CHANNEL.search(line), _OP_NAME.search(line)
        if channel:
            key = (op, channel.group(1), name.group(1) if name else None, shape.split("{")[0])
            if key in seen:
                continue
            seen.add(key)
        counts[op] += sum(_DTYPE_BYTES.get(dtype, 0) * math.prod(int(d) for d in dims.split(",") if d)
                          for dtype, dims in _SHAPE.findall(shape))
    return counts


def _resolve_sites(config: ModelConfig, sites) -> tuple[str, ...]:
    if sites == "all-resid":
        return all_sites(config, "resid_post")
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    return check_sites(config, sites)


def _lower(config, params, job, batch, seq, sites, max_new_tokens, mesh):
    rows = NamedSharding(mesh, batch_spec(ndim=2))
    tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32, sharding=rows)
    mask = jax.ShapeDtypeStruct((batch, seq), jnp.bool_, sharding=rows)
    if job == "capture":
        return _capture.lower(config, params, tokens, mask, (), sites, None)
    if job == "forward":
        return _forward.lower(config, params, tokens, mask, ())
    key = jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype,
                               sharding=NamedSharding(mesh, PartitionSpec()))
    return _generate.lower(config, params, tokens, mask, (), key, max_new_tokens=max_new_tokens,
                           sampling=Sampling(), stop_tokens=(), pad_token_id=0,
                           capture_sites=tuple((s, site_width(config, s)) for s in sites))


def plan(config: ModelConfig, *, topology: str = "cpu:8", mesh: str | dict = "fsdp=8", batch: int, seq: int,
         job: str = "capture", sites="all-resid", max_new_tokens: int = 32, dtype="bfloat16",
         execution: dict | None = None, pin_activations: bool = True) -> Plan:
    """Compile ``job`` for ``config`` on ``topology`` without weights; see the module docstring.

    ``execution`` overrides fields of ``config.execution`` (e.g. ``{"moe": "dense",
    "attention": "materialized"}``: how the job is computed, see
    :class:`lrt_jax.Execution`). With ``pin_activations`` (the default) the compiled
    mesh goes into the execution settings, so activations are constrained and the
    sparse MoE runs in ``shard_map`` as they would after :func:`shard_lm`; ``False``
    leaves activation placement to GSPMD's propagation alone.

    Example::

        p = plan(config_from_hf(json.load(open("config.json"))), topology="v5e:2x4", batch=8, seq=4096)
        print(p.fits, p.per_device_bytes["total"] / 2**30)
    """
    if job not in JOBS:
        raise ValueError(f"job {job!r} is unknown; choose one of {', '.join(JOBS)}.")
    if batch < 1 or seq < 1 or (job == "generate" and max_new_tokens < 1):
        raise ValueError(f"batch ({batch}), seq ({seq}) and max_new_tokens ({max_new_tokens}) must be positive.")
    devices, hbm = topology_devices(topology)
    sizes = parse_mesh_spec(mesh)
    if -1 not in sizes.values() and math.prod(sizes.values()) != len(devices):
        raise MeshError(f"mesh {mesh!r} spans {math.prod(sizes.values())} devices but topology {topology!r} has "
                        f"{len(devices)}; make the product of the axis sizes {len(devices)}.")
    device_mesh = make_mesh(sizes, devices=devices)
    config = with_execution(config, execution, device_mesh if pin_activations else None)
    sites = _resolve_sites(config, sites) if job != "forward" else ()
    abstract = jax.eval_shape(lambda: init_params(config, jax.random.key(0), jnp.dtype(dtype)))
    total, active = parameter_counts(config, abstract)
    if config.execution.scan_layers:  # weights held stacked, as on a pod: the program copies none of them
        abstract = jax.eval_shape(lambda p: stack_layers(config, p), abstract)
    shardings = param_shardings(abstract, device_mesh)
    params = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), abstract, shardings)

    start = time.perf_counter()
    lowered = _lower(config, params, job, batch, seq, sites, max_new_tokens, device_mesh)
    try:
        compiled = lowered.compile(compiler_options=_accounting_options(topology))
    except Exception as error:  # XLA refuses a program whose buffers exceed the chip: that is "does not fit"
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        total, active = parameter_counts(config, abstract)
        unknown = dict.fromkeys(("arguments", "outputs", "temporaries", "total"))
        return Plan(job=job, topology=topology, mesh=dict(device_mesh.shape), fits=False, per_device_bytes=unknown,
                    hbm_bytes=hbm, flops=None, ideal_flops=None, flops_ratio=None, collective_bytes={},
                    compile_s=round(time.perf_counter() - start, 3), params_total=int(total),
                    params_active=int(active), execution=describe_execution(config),
                    note=f"XLA refused to compile: {str(error).splitlines()[0][:300]}")
    compile_s = time.perf_counter() - start

    memory = compiled.memory_analysis()
    per_device = {"arguments": int(memory.argument_size_in_bytes), "outputs": int(memory.output_size_in_bytes),
                  "temporaries": int(memory.temp_size_in_bytes)}
    per_device["total"] = sum(per_device.values()) - int(memory.alias_size_in_bytes)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) * len(devices)
    tokens = batch * (seq + (max_new_tokens if job == "generate" else 0))
    ideal = 2.0 * matmul_params(config, active, logits=job != "capture" or "logits" in sites) * tokens
    return Plan(job=job, topology=topology, mesh=dict(device_mesh.shape), fits=hbm is None or per_device["total"] <= hbm,
                per_device_bytes=per_device, hbm_bytes=hbm, flops=flops, ideal_flops=ideal,
                flops_ratio=flops / ideal, collective_bytes=collective_bytes(compiled.as_text()),
                compile_s=round(compile_s, 3), params_total=int(total), params_active=int(active),
                execution=describe_execution(config))


# XLA's TPU compiler may split an FSDP matmul into a "windowed einsum": a loop that passes weight or
# activation shards around the ring while it multiplies. It moves the same bytes as the all-gather /
# reduce-scatter it replaces, but cost analysis counts a loop body once, so flops and collective bytes
# would read low. The planner compiles with those loops off to count what the job does.
_TPU_ACCOUNTING = {"xla_tpu_enable_windowed_einsum_for_all_gather": False,
                   "xla_tpu_enable_windowed_einsum_for_reduce_scatter": False}


def _accounting_options(topology: str) -> dict:
    return {} if topology.startswith("cpu:") else dict(_TPU_ACCOUNTING)


def with_execution(config: ModelConfig, overrides: dict | None, mesh) -> ModelConfig:
    """``config`` with ``overrides`` applied to its execution settings and ``mesh`` recorded in them."""
    fields = {f.name for f in dataclasses.fields(config.execution)} - {"mesh", "rules", "materialize"}
    unknown = set(overrides or {}) - fields
    if unknown:
        raise ValueError(f"execution settings {sorted(unknown)} are unknown; choose among {', '.join(sorted(fields))}.")
    return config.replace(execution=dataclasses.replace(config.execution, **(overrides or {}), mesh=mesh))


def describe_execution(config: ModelConfig) -> dict:
    """The execution settings as plain JSON values (the mesh as its axis sizes)."""
    execution = config.execution
    return {f.name: (dict(execution.mesh.shape) if f.name == "mesh" and execution.mesh is not None
                     else list(getattr(execution, f.name)) if isinstance(getattr(execution, f.name), tuple)
                     else getattr(execution, f.name))
            for f in dataclasses.fields(execution)}
