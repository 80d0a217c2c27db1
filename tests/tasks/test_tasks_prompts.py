"""Prompt formatting in chat and plain style, with a locally built chat tokenizer."""

import numpy as np
import pytest
import tokenizers
import transformers

from lrt_jax import steering, tasks

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
AB_ITEM = tasks.ABItem("Pick one\n\nChoices:\n(A) yes\n(B) no", answer_matching="B", answer_not_matching="A")
PERSONA_ITEM = tasks.PersonaItem("Would you say so?", "so", "Yes", "No", 0.9)


def _tokenizer(chat_template=None):
    words = ["[UNK]", "<|user|>", "<|system|>", "<|assistant|>", "<|end|>", "Pick", "one", "Choices", ":",
             "(", ")", "A", "B", "yes", "no", "Be", "brief", "Question", "Answer"]
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Split(
        tokenizers.Regex(r"<\|\w+\|>|\w+|[^\w\s]"), behavior="isolated"
    )
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[UNK]")
    tokenizer.chat_template = chat_template
    return tokenizer


def test_plain_style_follows_the_documented_template():
    fmt = tasks.PromptFormat("plain", system_prompt="Be brief.")
    expected_base = "Be brief.\n\nQuestion: " + AB_ITEM.question + "\nAnswer:"
    assert tasks.format_ab_prompt(AB_ITEM, fmt) == expected_base + " ("
    assert tasks.format_ab_contrast_pair(AB_ITEM, fmt) == (expected_base + " (B", expected_base + " (A")
    assert tasks.format_persona_prompt(PERSONA_ITEM, fmt) + fmt.answer_text("Yes") == (
        "Be brief.\n\nQuestion: Would you say so?\nAnswer: Yes"
    )


def test_chat_style_uses_the_tokenizer_template():
    tokenizer = _tokenizer(CHAT_TEMPLATE)
    fmt = tasks.PromptFormat("chat", system_prompt="Be brief.")
    prompt = tasks.format_ab_prompt(AB_ITEM, fmt, tokenizer)
    assert prompt == f"<|system|>Be brief.<|end|><|user|>{AB_ITEM.question}<|end|><|assistant|>("
    gsm8k = tasks.GSM8KItem("How many?", "2 + 2 = 4", "4")
    assert tasks.format_gsm8k_prompt(gsm8k, tasks.PromptFormat("chat"), tokenizer) == (
        "<|user|>How many?<|end|><|assistant|>"
    )
    assert not fmt.add_special_tokens and fmt.answer_separator == ""


def test_chat_style_without_template_is_an_error():
    with pytest.raises(ValueError, match="chat template"):
        tasks.format_mc_prompt(tasks.MCItem("q", ("a", "b"), (1, 0)), tasks.PromptFormat("chat"), _tokenizer())
    with pytest.raises(ValueError, match='"chat" or "plain"'):
        tasks.PromptFormat("instruct")


@pytest.mark.parametrize("style", ["chat", "plain"])
def test_contrast_pair_letters_are_found_by_the_steering_helper(style):
    tokenizer = _tokenizer(CHAT_TEMPLATE)
    fmt = tasks.PromptFormat(style)
    texts = tasks.format_ab_contrast_pair(AB_ITEM, fmt, tokenizer)
    batch = tokenizer(list(texts), padding=True, return_tensors="np", add_special_tokens=fmt.add_special_tokens)
    positions = steering.find_answer_letter_positions(
        tokenizer, batch["input_ids"], batch["attention_mask"], [AB_ITEM.answer_matching, AB_ITEM.answer_not_matching]
    )
    tokens = [tokenizer.convert_ids_to_tokens(ids.tolist()) for ids in batch["input_ids"]]
    expected = [int(np.flatnonzero(mask)[-1]) for mask in batch["attention_mask"]]
    np.testing.assert_array_equal(positions, expected)
    assert [tokens[row][p] for row, p in enumerate(positions)] == ["B", "A"]
