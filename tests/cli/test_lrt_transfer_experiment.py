"""``experiments/lrt_transfer.py`` on real-checkpoint configs, smoke-run on two tiny HF models with one tokenizer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hf_models
from lrt_jax import tasks

DATA = hf_models.TEST_DATA
SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "lrt_transfer.py"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    items = tasks.load_caa_ab(DATA / "caa" / "generate" / "sycophancy" / "generate_dataset.json")[:4]
    items += tasks.load_caa_ab(DATA / "caa" / "test" / "sycophancy" / "test_dataset_ab.json")[:4]
    persona = tasks.load_persona(DATA / "anthropic-model-written-evals" / "persona" / "narcissism.jsonl")
    # lrt_transfer.py trains on the first half of a persona file and tests on the second.
    persona = persona[:4] + persona[len(persona) // 2 :][:4]
    texts = [item.question for item in items] + [item.question for item in persona]
    paths = []
    # CAA prompts run to ~160 tokens: the context must hold them (longer sequences are refused).
    for name, overrides in (("source", {"max_position_embeddings": 512}),
                            ("target", {"hidden_size": 96, "num_hidden_layers": 3, "max_position_embeddings": 512})):
        path = hf_models.save_tiny_hf_model("llama", tmp_path_factory.mktemp(name), vocab_size=512, **overrides)
        hf_models.save_word_tokenizer(path, texts, vocab_size=512)
        paths.append(path)
    return paths


def test_checkpoint_config_runs_behaviours_and_personas_end_to_end(checkpoints, tmp_path, monkeypatch):
    source, target = checkpoints
    script = SCRIPT.read_text().replace('CheckpointConfig(source_layer=6, target_layer=12)',
                                        'CheckpointConfig(source_layer=1, target_layer=2, behaviours=("sycophancy",), '
                                        'persona_files=("narcissism",))')
    patched = tmp_path / "lrt_transfer.py"
    patched.write_text(script)
    subprocess.run([sys.executable, str(patched), "--config", "pythia-160m-1.4b", "--source", str(source),
                    "--target", str(target), "--data", str(DATA), "--limit", "4", "--out", str(tmp_path / "out")],
                   check=True, capture_output=True, text=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["behaviours"]) == {"sycophancy", "narcissism"}
    for name, result in summary["behaviours"].items():
        assert result["n_train"] == 4 and result["n_test"] == 4
        assert result["r2"] <= 1.0 and -1.0 <= result["cosine_linear"] <= 1.0
        comparison = json.loads((tmp_path / "out" / name / "comparison.json").read_text())
        assert comparison  # per-α Pearson/MSE records and slopes
        assert (tmp_path / "out" / name / "propensity.png").stat().st_size > 5_000
