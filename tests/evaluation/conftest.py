"""Fixtures for the evaluation tests: tiny random HF checkpoints with a word-level tokenizer.

The shared tiny tokenizer (``tests/hf_models.py``) knows only ``w0 … wN``, so ``"("``,
``"A"`` or ``"Yes"`` would all be ``<unk>``. Here the vocabulary is built from the
words of the test texts (plus the answer letters, ``Yes``/``No``, digits and
``####``), split by whitespace and punctuation, so prompts and answers tokenize into
distinct ids and ``prompt + answer`` always extends the prompt's tokens.
"""

from __future__ import annotations

import functools
import shutil

import pytest

import hf_models

WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture(scope="session")
def word_checkpoint(tiny_hf_checkpoint, tmp_path_factory):
    """``word_checkpoint(family, texts=(), **overrides) -> Path``: a tiny HF checkpoint copy with a word tokenizer."""

    @functools.cache
    def make(family: str, texts: tuple[str, ...] = (), **overrides):
        directory = tmp_path_factory.mktemp(f"words_{family}")
        shutil.copytree(tiny_hf_checkpoint(family, **overrides), directory, dirs_exist_ok=True)
        hf_models.save_word_tokenizer(directory, (" ".join(WORDS), *texts))
        return directory

    return make
