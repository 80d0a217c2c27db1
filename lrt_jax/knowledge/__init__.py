"""Knowledge transfer between models: translate-and-substitute, latent semantic alignment,
low-rank trajectory distillation."""

from lrt_jax.knowledge.correction import (
    Correlation, CorrectionRates, answers_correct, correction_rates, correlate_across_pairs)
from lrt_jax.knowledge.token_alignment import (
    TokenizedTexts, WordAlignment, align_words, find_word_spans, gather_word_states, last_word_mask, locate_words,
    real_word_rows, scatter_words_to_last_tokens, word_token_membership)
from lrt_jax.knowledge.translate import (
    SiteTranslation, capture_word_states, choose_substituted_words, fit_site_translation, forward_with_substitution,
    generate_with_substitution, random_translation_like, substitution_interventions)
