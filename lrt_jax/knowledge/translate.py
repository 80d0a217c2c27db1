"""Translate and substitute: a teacher's hidden states, mapped into the student's stream.

Teacher and student read the same text. Their tokens are matched word by word
(:mod:`lrt_jax.knowledge.token_alignment`), and a map ``f`` (ridge by default) is
fitted per domain from teacher states at ``teacher_site`` to student states at
``student_site``:

    x_w = pool_w(h_teacher)   [d_teacher]     (last token of word w, or span mean)
    y_w = h_student[last token of w]   [d_student]
    f = argmin Σ_w ‖y_w − f(x_w)‖² + α‖W‖²,     R² = 1 − Σ‖y − f(x)‖² / Σ‖y − ȳ‖²

R² is reported on the words the map was fitted on and on held-out *texts* (words of
one text are correlated, so texts, not words, are held out).

Substitution then runs the student with ``h ← f(x_w)`` (:class:`~lrt_jax.Replace`) or
``h ← (1 − β)·h + β·f(x_w)`` (:class:`~lrt_jax.Mix`) at ``student_site`` on the last
token of the chosen words (all words, or only the last one). Several site
translations apply together, one intervention each.

Generation (:func:`generate_with_substitution`) comes in two versions:

* ``per_step=False`` (prompt positions, exact): the teacher reads the prompt once;
  its translated states replace the student's at the prompt's word positions during
  the prefill of KV-cached :func:`lrt_jax.generate`; generated tokens are the
  student's own.
* ``per_step=True`` (every step, exact, no KV cache): before each new token, the text
  so far (prompt + decoded completion) is re-read by the teacher and re-aligned, and
  the student runs a full forward pass with every chosen word substituted, generated
  words included; greedy only. It costs one teacher and one student pass per token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax import mappers, metrics
from lrt_jax._run import capture, forward
from lrt_jax._generate import generate
from lrt_jax.interventions import Mix, Replace
from lrt_jax.knowledge.token_alignment import (
    WORD_PATTERN,
    Pooling,
    TokenizedTexts,
    WordAlignment,
    align_words,
    gather_word_states,
    last_word_mask,
    real_word_rows,
    scatter_words_to_last_tokens,
)
from lrt_jax.lm import LM

SubstitutedWords = Literal["all", "last"]
DEFAULT_RIDGE_ALPHAS = tuple(np.logspace(-3, 5, 17))


@dataclasses.dataclass(frozen=True)
class SiteTranslation:
    """A fitted map from a teacher site to a student site, and how well it predicts.

    Attributes:
      teacher_site, student_site: e.g. ``"layers.3.resid_post"`` in each model.
      teacher_pooling: how teacher tokens became one row per word (``"last"``/``"mean"``).
      state: the mapper state (for ridge, :class:`lrt_jax.mappers.RidgeState`).
      apply: ``apply(state, x [n, d_teacher]) -> [n, d_student]``.
      r2_fit: pooled R² on the words it was fitted on.
      r2_heldout: pooled R² on the words of held-out texts (NaN if none were held out).
      n_fit_words, n_heldout_words: rows behind each R².
    """

    teacher_site: str
    student_site: str
    teacher_pooling: Pooling
    state: Any
    apply: Callable
    r2_fit: float
    r2_heldout: float
    n_fit_words: int
    n_heldout_words: int

    def translate(self, teacher_states: jax.Array) -> jax.Array:
        """``[..., d_teacher]`` → ``[..., d_student]``."""
        flat = jnp.reshape(teacher_states, (-1, teacher_states.shape[-1]))
        return jnp.reshape(self.apply(self.state, flat), (*teacher_states.shape[:-1], -1))


def capture_word_states(lm: LM, side: TokenizedTexts, site: str, pooling: Pooling, *,
                        batch_size: int = 64) -> jax.Array:
    """States ``[batch, n_words, d]`` of ``lm`` at ``site``, one per word, in chunks of ``batch_size`` texts."""
    chunks = []
    for start in range(0, side.tokens.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        chunk = TokenizedTexts(*(array[rows] for array in side))
        activations = capture(lm, chunk.tokens, site, attention_mask=chunk.attention_mask)[site]
        chunks.append(gather_word_states(activations.astype(jnp.float32), chunk, pooling))
    return jnp.concatenate(chunks, axis=0)


def _split_texts(n_texts: int, heldout_fraction: float, seed: int) -> np.ndarray:
    """Bool ``[n_texts]``, true for held-out texts (at least one text stays for fitting)."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1); got {heldout_fraction}.")
    n_heldout = min(round(heldout_fraction * n_texts), n_texts - 1)
    heldout = np.zeros(n_texts, bool)
    heldout[np.random.default_rng(seed).permutation(n_texts)[:n_heldout]] = True
    return heldout


def fit_site_translation(teacher: LM, student: LM, alignment: WordAlignment, *, teacher_site: str,
                         student_site: str, teacher_pooling: Pooling = "last", mapper: mappers.Mapper | None = None,
                         heldout_fraction: float = 0.25, seed: int = 0) -> SiteTranslation:
    """Fit ``teacher_site → student_site`` on the aligned words of one domain's texts.

    Args:
      teacher, student: the two models; ``alignment`` must come from their tokenizers.
      alignment: :func:`align_words` of the domain's texts.
      teacher_site, student_site: where to read each model.
      teacher_pooling: ``"last"`` token of each word or ``"mean"`` over its span; the
        student side is always the word's last token, the state substitution replaces.
      mapper: default ``ridge(alphas=DEFAULT_RIDGE_ALPHAS)`` with α by GCV.
      heldout_fraction: share of texts kept out of the fit for ``r2_heldout``.
      seed: the held-out split.

    Returns:
      a :class:`SiteTranslation` fitted on the non-held-out texts.
    """
    mapper = mapper or mappers.ridge(alphas=DEFAULT_RIDGE_ALPHAS)
    teacher_words = capture_word_states(teacher, alignment.teacher, teacher_site, teacher_pooling)
    student_words = capture_word_states(student, alignment.student, student_site, "last")
    heldout_texts = _split_texts(len(alignment.words), heldout_fraction, seed)
    fit_mask = alignment.word_mask & ~heldout_texts[:, None]
    heldout_mask = alignment.word_mask & heldout_texts[:, None]
    if fit_mask.sum() < 2:
        raise ValueError(f"Only {int(fit_mask.sum())} aligned words to fit on; give more texts or check that the "
                         "two tokenizers cover the same words (alignment.word_mask).")
    x_fit, y_fit = real_word_rows(teacher_words, fit_mask), real_word_rows(student_words, fit_mask)
    state = mapper.fit(x_fit, y_fit)
    r2_fit = float(metrics.r2_score(y_fit, mapper.apply(state, x_fit)))
    r2_heldout = float("nan")
    if heldout_mask.any():
        x_out, y_out = real_word_rows(teacher_words, heldout_mask), real_word_rows(student_words, heldout_mask)
        r2_heldout = float(metrics.r2_score(y_out, mapper.apply(state, x_out)))
    return SiteTranslation(teacher_site, student_site, teacher_pooling, state, mapper.apply, r2_fit, r2_heldout,
                           int(fit_mask.sum()), int(heldout_mask.sum()))


def random_translation_like(translation: SiteTranslation, seed: int = 0) -> SiteTranslation:
    """A control: a Gaussian linear map with the same Frobenius norm and bias as ``translation`` (affine only).

    Its outputs have the student's mean and about the fitted map's spread, but carry
    no teacher information the student could read.
    """
    weight, offset = mappers.linear(translation.state), mappers.bias(translation.state)
    noise = jax.random.normal(jax.random.key(seed), weight.shape, weight.dtype)
    random_weight = noise * jnp.linalg.norm(weight) / jnp.linalg.norm(noise)
    return dataclasses.replace(translation, state=mappers.AffineState(random_weight, offset),
                               apply=mappers.apply_affine, r2_fit=float("nan"), r2_heldout=float("nan"))


def choose_substituted_words(alignment: WordAlignment, words: SubstitutedWords | np.ndarray) -> np.ndarray:
    """Bool ``[batch, n_words]``: ``"all"`` aligned words, the ``"last"`` one, or an explicit mask (∧ word_mask)."""
    if isinstance(words, str):
        if words not in ("all", "last"):
            raise ValueError(f"words must be 'all', 'last' or a bool [batch, n_words] mask; got {words!r}.")
        return alignment.word_mask if words == "all" else last_word_mask(alignment.word_mask)
    words = np.asarray(words, bool)
    if words.shape != alignment.word_mask.shape:
        raise ValueError(f"words mask has shape {words.shape}; expected [batch, n_words] {alignment.word_mask.shape}.")
    return words & alignment.word_mask


def substitution_interventions(teacher: LM, alignment: WordAlignment, translations: Sequence[SiteTranslation], *,
                               words: SubstitutedWords | np.ndarray = "all", beta: float | None = None,
                               total_slots: int | None = None) -> tuple:
    """One :class:`Replace` (``beta=None``) or :class:`Mix` (``beta``) per translation, on student slots.

    Args:
      teacher: the teacher, run on ``alignment.teacher`` tokens.
      alignment: the texts the student will read, aligned to the teacher's tokens.
      translations: fitted :class:`SiteTranslation` s (one per student site).
      words: which words' last student tokens are substituted.
      beta: ``None`` replaces; a float mixes ``(1 − β)·h + β·f(x)``.
      total_slots: the student's whole sequence, ``prompt_len + max_new_tokens`` for
        :func:`lrt_jax.generate` (slots past the prompt are left alone); default the prompt.

    Returns:
      a tuple of interventions with ``values [batch, total_slots, d_student]`` and a
      ``[batch, total_slots]`` position mask.
    """
    selected = choose_substituted_words(alignment, words)
    seq = alignment.student.tokens.shape[1]
    extra = (total_slots or seq) - seq
    if extra < 0:
        raise ValueError(f"total_slots={total_slots} is shorter than the student's {seq} prompt slots.")
    interventions = []
    for translation in translations:
        teacher_words = capture_word_states(teacher, alignment.teacher, translation.teacher_site,
                                            translation.teacher_pooling)
        values, touched = scatter_words_to_last_tokens(translation.translate(teacher_words), alignment.student,
                                                       selected)
        values = jnp.pad(values, ((0, 0), (0, extra), (0, 0)))
        touched = np.pad(np.asarray(touched), ((0, 0), (0, extra)))
        if beta is None:
            interventions.append(Replace(translation.student_site, values, positions=touched))
        else:
            interventions.append(Mix(translation.student_site, values, jnp.float32(beta), positions=touched))
    return tuple(interventions)


def forward_with_substitution(student: LM, teacher: LM, alignment: WordAlignment,
                              translations: Sequence[SiteTranslation], *, words: SubstitutedWords | np.ndarray = "all",
                              beta: float | None = None) -> jax.Array:
    """Student logits ``[batch, seq_student, vocab]`` with the translated teacher states substituted."""
    interventions = substitution_interventions(teacher, alignment, translations, words=words, beta=beta)
    return forward(student, alignment.student.tokens, attention_mask=alignment.student.attention_mask,
                   interventions=interventions)


def _decode_rows(lm: LM, rows: Sequence[Sequence[int]]) -> list[str]:
    return [lm.tokenizer.decode(list(row), skip_special_tokens=True) for row in rows]


def generate_with_substitution(student: LM, teacher: LM, prompts: Sequence[str],
                               translations: Sequence[SiteTranslation], *, max_new_tokens: int,
                               words: SubstitutedWords = "all", beta: float | None = None, per_step: bool = False,
                               stop_tokens: Sequence[int] = (), word_pattern: str = WORD_PATTERN,
                               pad_multiple: int = 16) -> list[str]:
    """Greedy completions of ``prompts`` by the student with teacher states substituted.

    Args:
      student, teacher: the models (both need fast tokenizers).
      prompts: the texts to continue.
      translations: fitted :class:`SiteTranslation` s.
      max_new_tokens: student tokens to generate.
      words: substitute ``"all"`` words or only the ``"last"`` one of the current text.
      beta: ``None`` replaces; a float mixes.
      per_step: ``False`` substitutes the prompt's words in the KV-cached prefill only;
        ``True`` re-reads the growing text with the teacher before every token (see the module docstring).
      stop_tokens: student ids that end a completion (kept out of the returned text).
      word_pattern: what a word is (:func:`~lrt_jax.knowledge.token_alignment.align_words`).
      pad_multiple: bucket width of the per-step texts, so few shapes are compiled.

    Returns:
      the decoded completions, one string per prompt.
    """
    prompts = list(prompts)
    if not per_step:
        alignment = align_words(prompts, teacher.tokenizer, student.tokenizer, word_pattern=word_pattern)
        prompt_len = alignment.student.tokens.shape[1]
        interventions = substitution_interventions(teacher, alignment, translations, words=words, beta=beta,
                                                   total_slots=prompt_len + max_new_tokens)
        out = generate(student, alignment.student.tokens, attention_mask=alignment.student.attention_mask,
                       max_new_tokens=max_new_tokens, stop_tokens=stop_tokens, interventions=interventions)
        tokens, kept = np.asarray(out.tokens), np.asarray(out.generated_mask) & ~np.isin(out.tokens, stop_tokens)
        return _decode_rows(student, [row[keep] for row, keep in zip(tokens, kept)])

    prompt_ids = student.tokenizer(prompts)["input_ids"]
    completions: list[list[int]] = [[] for _ in prompts]
    finished = np.zeros(len(prompts), bool)
    texts = prompts
    for _ in range(max_new_tokens):
        alignment = align_words(texts, teacher.tokenizer, student.tokenizer, word_pattern=word_pattern,
                                pad_multiple=pad_multiple)
        logits = forward_with_substitution(student, teacher, alignment, translations, words=words, beta=beta)
        next_tokens = np.asarray(jnp.argmax(logits[:, -1], axis=-1))
        for row, token in enumerate(next_tokens):
            if finished[row]:
                continue
            if int(token) in stop_tokens:
                finished[row] = True
            else:
                completions[row].append(int(token))
        if finished.all():
            break
        texts = _decode_rows(student, [list(ids) + done for ids, done in zip(prompt_ids, completions)])
    return _decode_rows(student, completions)
