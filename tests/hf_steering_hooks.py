"""The HF PyTorch reference for interventions: a forward hook that adds to a decoder layer's output.

Shared by the intervention and generation tests. Decoder layers in transformers 5
return a tensor or a tuple whose first entry is the hidden state; both are handled.
"""

from __future__ import annotations

import contextlib


def hf_decoder_layers(hf_model):
    """The list of decoder layers (``model.layers``, or ``gpt_neox.layers`` for GPT-NeoX)."""
    return hf_model.gpt_neox.layers if hasattr(hf_model, "gpt_neox") else hf_model.model.layers


@contextlib.contextmanager
def adding_to_layer_output(hf_model, layer: int, delta, *, decode_steps_only: bool = False):
    """While active, layer ``layer``'s output gets ``+ delta`` (a tensor broadcastable to it).

    With ``decode_steps_only`` the hook fires only on single-token calls, i.e. on the
    generated tokens of a KV-cached ``generate`` and never on the prompt.
    """

    def add(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if decode_steps_only and hidden.shape[1] != 1:
            return output
        hidden = hidden + delta
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = hf_decoder_layers(hf_model)[layer].register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
