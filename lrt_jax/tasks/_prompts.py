"""Turning task records into prompt text, through a chat template or a plain template.

Two styles, chosen explicitly with :class:`PromptFormat`:

* ``"chat"`` — the question is the user turn of ``tokenizer.apply_chat_template``
  (with an optional system turn) and the prompt ends with the template's
  generation prompt, i.e. where the assistant's answer begins.
* ``"plain"`` — ``"Question: {question}\\nAnswer:"``, with an optional system
  text and a blank line before it.

Where the answer goes: the model's answer follows the prompt after
:attr:`PromptFormat.answer_separator` (``" "`` in plain style, nothing in chat
style), so ``prompt + fmt.answer_text(answer)`` is the full example for
persona answers (``"Yes"``/``"No"``), MC choices and GSM8K solutions.

A/B convention: :func:`format_ab_prompt` ends just before the answer letter,
with the opening parenthesis: ``"…\\nAnswer: ("`` (plain) or ``"<generation
prompt>("`` (chat). Appending the letter (:func:`format_ab_contrast_pair`) gives
the CAA contrast examples, and
:func:`lrt_jax.steering.find_answer_letter_positions` finds that letter token.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from lrt_jax.tasks._loaders import ABItem, GSM8KItem, MCItem, PersonaItem

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How questions become prompts.

    Attributes:
      style: ``"chat"`` (the tokenizer's chat template; an error if it has none) or
        ``"plain"`` (:data:`PLAIN_TEMPLATE`).
      system_prompt: optional system text: a system turn in chat style, a
        preamble followed by a blank line in plain style.
    """

    style: Literal["chat", "plain"]
    system_prompt: str | None = None

    def __post_init__(self):
        if self.style not in ("chat", "plain"):
            raise ValueError(f'PromptFormat.style must be "chat" or "plain", got {self.style!r}.')

    @property
    def answer_separator(self) -> str:
        """Text between the prompt and the answer: a space after ``"Answer:"``, none after a chat turn."""
        return " " if self.style == "plain" else ""

    @property
    def add_special_tokens(self) -> bool:
        """Whether to let the tokenizer add BOS etc.: chat templates already write them."""
        return self.style == "plain"

    def answer_text(self, answer: str) -> str:
        """The continuation to append to a prompt for ``answer``."""
        return self.answer_separator + answer


def _render_question(question: str, fmt: PromptFormat, tokenizer) -> str:
    if fmt.style == "plain":
        preamble = f"{fmt.system_prompt}\n\n" if fmt.system_prompt else ""
        return preamble + PLAIN_TEMPLATE.format(question=question)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            'PromptFormat(style="chat") needs a tokenizer with a chat template; this one has none. '
            'Use PromptFormat(style="plain") for base models, or set tokenizer.chat_template.'
        )
    messages = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def format_ab_prompt(item: ABItem, fmt: PromptFormat, tokenizer=None) -> str:
    """A/B prompt ending with ``"("``, just before the answer letter (see the module docstring)."""
    return _render_question(item.question, fmt, tokenizer) + fmt.answer_text("(")


def format_ab_contrast_pair(item: ABItem, fmt: PromptFormat, tokenizer=None) -> tuple[str, str]:
    """``(prompt + matching letter, prompt + non-matching letter)``, the CAA contrast pair."""
    prompt = format_ab_prompt(item, fmt, tokenizer)
    return prompt + item.answer_matching, prompt + item.answer_not_matching


def format_persona_prompt(item: PersonaItem, fmt: PromptFormat, tokenizer=None) -> str:
    """Persona prompt; continue with ``fmt.answer_text("Yes")`` or ``fmt.answer_text("No")``."""
    return _render_question(item.question, fmt, tokenizer)


def format_mc_prompt(item: MCItem, fmt: PromptFormat, tokenizer=None) -> str:
    """Multiple-choice context without the options; score each ``fmt.answer_text(choice)`` as a continuation."""
    return _render_question(item.question, fmt, tokenizer)


def format_gsm8k_prompt(item: GSM8KItem, fmt: PromptFormat, tokenizer=None) -> str:
    """GSM8K prompt for generation; read the result with :func:`~lrt_jax.tasks.extract_final_answer`."""
    return _render_question(item.question, fmt, tokenizer)
