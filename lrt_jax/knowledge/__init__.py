"""Knowledge transfer between models: translate-and-substitute, latent semantic alignment,
low-rank trajectory distillation."""

from lrt_jax.knowledge._training import optimize_trainable
from lrt_jax.knowledge.layer_pairing import (
    LayerPairing, interpolate_teacher_layers, pair_layers_by_relative_depth, pair_student_layer)
from lrt_jax.knowledge.lora import (
    LayerTransferBatch, LayerTransferLoss, LoraAdapter, init_lora_adapters, kl_to_teacher, layer_transfer_loss,
    masked_cosine_distance, merge_lora_adapters, next_token_cross_entropy, projection_kernel_paths,
    run_and_read_site, train_layer_with_lora)
from lrt_jax.knowledge.semantic_bases import (
    VocabularyMismatchError, check_shared_vocabulary, effective_lm_head, reconstruct_from_coefficients,
    semantic_alignment_matrix, semantic_bases, semantic_coefficients, translate_activations)
from lrt_jax.knowledge.trajectory_distillation import (
    StudentReadout, TrajectoryDistillationBatch, TrajectoryDistillationLoss, TrajectorySubspace,
    fit_student_readout, fit_trajectory_subspace, project_on_subspace, random_orthonormal_basis,
    rank_for_explained_variance, statistic_matching_loss, train_student_with_trajectory_statistics,
    trajectory_distillation_loss, trajectory_statistics)
from lrt_jax.knowledge.correction import (
    Correlation, CorrectionRates, answers_correct, correction_rates, correlate_across_pairs)
from lrt_jax.knowledge.token_alignment import (
    TokenizedTexts, WordAlignment, align_words, find_word_spans, gather_word_states, last_word_mask, locate_words,
    real_word_rows, scatter_words_to_last_tokens, word_token_membership)
from lrt_jax.knowledge.translate import (
    SiteTranslation, capture_word_states, choose_substituted_words, fit_site_translation, forward_with_substitution,
    generate_with_substitution, random_translation_like, substitution_interventions)

__all__ = [
    "align_words",
    "answers_correct",
    "capture_word_states",
    "check_shared_vocabulary",
    "choose_substituted_words",
    "correction_rates",
    "CorrectionRates",
    "correlate_across_pairs",
    "Correlation",
    "effective_lm_head",
    "find_word_spans",
    "fit_site_translation",
    "fit_student_readout",
    "fit_trajectory_subspace",
    "forward_with_substitution",
    "gather_word_states",
    "generate_with_substitution",
    "init_lora_adapters",
    "interpolate_teacher_layers",
    "kl_to_teacher",
    "last_word_mask",
    "layer_transfer_loss",
    "LayerPairing",
    "LayerTransferBatch",
    "LayerTransferLoss",
    "locate_words",
    "LoraAdapter",
    "masked_cosine_distance",
    "merge_lora_adapters",
    "next_token_cross_entropy",
    "optimize_trainable",
    "pair_layers_by_relative_depth",
    "pair_student_layer",
    "project_on_subspace",
    "projection_kernel_paths",
    "random_orthonormal_basis",
    "random_translation_like",
    "rank_for_explained_variance",
    "real_word_rows",
    "reconstruct_from_coefficients",
    "run_and_read_site",
    "scatter_words_to_last_tokens",
    "semantic_alignment_matrix",
    "semantic_bases",
    "semantic_coefficients",
    "SiteTranslation",
    "statistic_matching_loss",
    "StudentReadout",
    "substitution_interventions",
    "TokenizedTexts",
    "train_layer_with_lora",
    "train_student_with_trajectory_statistics",
    "trajectory_distillation_loss",
    "trajectory_statistics",
    "TrajectoryDistillationBatch",
    "TrajectoryDistillationLoss",
    "TrajectorySubspace",
    "translate_activations",
    "VocabularyMismatchError",
    "word_token_membership",
    "WordAlignment",
]
