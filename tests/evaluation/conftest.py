"""Fixtures for the evaluation tests: tiny random HF checkpoints with a word-level tokenizer.

The shared tiny tokenizer (``tests/hf_models.py``) knows only ``w0 … wN``, so ``"("``,
``"A"`` or ``"Yes"`` would all be ``<unk>``. Here the vocabulary is built from the
words of the test texts (plus the answer letters, ``Yes``/``No``, digits and
``####``), split by whitespace and punctuation, so prompts and answers tokenize into
distinct ids and ``prompt + answer`` always extends the prompt's tokens.
"""

from __future__ import annotations

import collections
import functools
import re
import shutil

import pytest

import hf_models

REQUIRED_TOKENS = ("<pad>", "<unk>", "<eos>", "(", ")", ":", "?", ".", ",", "####", "Question", "Answer", "Choices",
                   "Yes", "No", "A", "B", *"0123456789")
_PRE_TOKENS = re.compile(r"\w+|[^\w\s]+")


def save_word_tokenizer(directory, texts=(), vocab_size: int = hf_models.VOCAB_SIZE) -> None:
    """A WordLevel tokenizer over :data:`REQUIRED_TOKENS` plus the most frequent words of ``texts``."""
    import tokenizers
    import transformers

    counts = collections.Counter(token for text in texts for token in _PRE_TOKENS.findall(text))
    vocab = list(REQUIRED_TOKENS)
    vocab += [token for token, _ in counts.most_common() if token not in REQUIRED_TOKENS][: vocab_size - len(vocab)]
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                                     eos_token="<eos>")
    tokenizer.save_pretrained(str(directory))


WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture(scope="session")
def word_checkpoint(tiny_hf_checkpoint, tmp_path_factory):
    """``word_checkpoint(family, texts=(), **overrides) -> Path``: a tiny HF checkpoint copy with a word tokenizer."""

    @functools.cache
    def make(family: str, texts: tuple[str, ...] = (), **overrides):
        directory = tmp_path_factory.mktemp(f"words_{family}")
        shutil.copytree(tiny_hf_checkpoint(family, **overrides), directory, dirs_exist_ok=True)
        save_word_tokenizer(directory, (" ".join(WORDS), *texts))
        return directory

    return make
