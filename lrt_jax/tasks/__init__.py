"""Evaluation tasks: loaders for the upstream files and prompt formatting.

Loaders take a file path and return a tuple of frozen records:

==========================  ==================================================  ==============
loader                      files                                               record
==========================  ==================================================  ==============
:func:`load_caa_ab`         CAA ``generate_dataset.json``, ``test_dataset_ab.json``  :class:`ABItem`
:func:`load_persona`        Anthropic persona ``<behaviour>.jsonl``             :class:`PersonaItem`
:func:`load_truthfulqa_mc`  TruthfulQA ``mc_task.json`` (current and ``v1/``)   :class:`MCItem`
:func:`load_gsm8k`          GSM8K ``test.jsonl``, ``train.jsonl``               :class:`GSM8KItem`
==========================  ==================================================  ==============

A malformed record raises :class:`TaskFormatError` with the file and the 1-based
record number. Prompts are built with a :class:`PromptFormat` (``"chat"`` or
``"plain"``); see :mod:`lrt_jax.tasks._prompts` for where answers attach and the
A/B answer-letter convention.
"""

from lrt_jax.tasks._loaders import (
    ABItem,
    GSM8KItem,
    MCItem,
    PersonaItem,
    extract_final_answer,
    load_caa_ab,
    load_gsm8k,
    load_persona,
    load_truthfulqa_mc,
)
from lrt_jax.tasks._prompts import (
    PLAIN_TEMPLATE,
    PromptFormat,
    format_ab_contrast_pair,
    format_ab_prompt,
    format_gsm8k_prompt,
    format_mc_prompt,
    format_persona_prompt,
)
from lrt_jax.tasks._reading import TaskFormatError

__all__ = [
    "ABItem",
    "extract_final_answer",
    "format_ab_contrast_pair",
    "format_ab_prompt",
    "format_gsm8k_prompt",
    "format_mc_prompt",
    "format_persona_prompt",
    "GSM8KItem",
    "load_caa_ab",
    "load_gsm8k",
    "load_persona",
    "load_truthfulqa_mc",
    "MCItem",
    "PersonaItem",
    "PLAIN_TEMPLATE",
    "PromptFormat",
    "TaskFormatError",
]
