"""The organisms' LRT experiment set-up, shared by ``lrt-jax demo`` and ``experiments/lrt_transfer.py``.

The source organism is read at its middle layer; every target at the layer of the
same relative depth (:func:`relative_depth_layer`), and the maps of the layer-pair
grid pair each source layer with its relative-depth partner. Maps are fitted on
attribute documents of a corpus seed that no organism was trained on
(:func:`held_out_texts`).
"""

from __future__ import annotations

from lrt_jax.knowledge import pair_student_layer
from lrt_jax.lrt.experiment import LRTConfig
from lrt_jax.organisms.corpus import CorpusConfig, generate_corpus


def relative_depth_layer(layer: int, source_layers: int, target_layers: int) -> int:
    """The target layer nearest to the same relative depth as ``layer`` of the source."""
    return pair_student_layer(layer, source_layers, target_layers).nearest_teacher_layer


def held_out_texts(count: int, seed: int) -> list[str]:
    """``count`` attribute documents from a corpus seed no organism was trained on."""
    documents = generate_corpus(CorpusConfig(n_documents=2 * count, seed=10_000 + seed))
    return [d.text for d in documents if d.kind == "attribute"][:count]


def demo_config(source, targets: dict, attributes, quick: bool, seed: int) -> LRTConfig:
    """The :class:`~lrt_jax.lrt.LRTConfig` of the demo: middle source layer, relative-depth targets.

    ``quick`` shrinks the numbers of fit texts, contrastive pairs and probe prompts
    for a smoke run.
    """
    n = source.config.n_layers
    source_layer = n // 2
    target_layers = tuple((name, relative_depth_layer(source_layer, n, lm.config.n_layers))
                          for name, lm in targets.items())
    sizes = dict(n_fit_texts=96, n_pairs=24, n_probe_prompts=24) if quick else {}
    return LRTConfig(source_layer=source_layer, target_layers=target_layers, attributes=tuple(attributes), seed=seed,
                     **sizes)
