"""``lrt-jax capture``: saved activations equal per-prompt unpadded captures; --mesh gives the same numbers."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import hf_models
import lrt_jax
from lrt_jax.cli import main

PROMPTS = ["the cat sat", "a much longer prompt with more words in it", "hello"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return hf_models.save_tiny_hf_model("llama", tmp_path_factory.mktemp("capture_cli"), with_tokenizer=True)


@pytest.mark.parametrize("mesh", [None, "data=2,fsdp=2,tensor=2"])
def test_capture_writes_last_token_activations_of_every_prompt(checkpoint, tmp_path, mesh):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    out = tmp_path / "out"
    argv = ["capture", "--model", str(checkpoint), "--prompts", str(prompts), "--sites",
            "layers.0.resid_post,final_norm", "--batch-size", "2", "--out", str(out)]
    assert main(argv + (["--mesh", mesh] if mesh else [])) == 0

    saved = load_file(str(out / "activations.safetensors"))
    metadata = json.loads((out / "activations.json").read_text())
    assert metadata["sites"] == ["layers.0.resid_post", "final_norm"] and metadata["n_prompts"] == 3
    lm = lrt_jax.load(checkpoint)
    for row, text in enumerate(PROMPTS):
        ids = np.asarray(lm.tokenizer(text)["input_ids"])[None]
        reference = lrt_jax.capture(lm, ids, ["layers.0.resid_post", "final_norm"])
        for site in reference:
            np.testing.assert_allclose(saved[site][row], np.asarray(reference[site])[0, -1], atol=1e-5)


def test_capture_reports_bad_sites_without_a_traceback(checkpoint, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n")
    code = main(["capture", "--model", str(checkpoint), "--prompts", str(prompts), "--sites", "layers.9.resid_post",
                 "--out", str(tmp_path / "out")])
    assert code == 1
    assert "names layer 9, but the model has" in capsys.readouterr().err
