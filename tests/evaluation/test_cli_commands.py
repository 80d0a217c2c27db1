"""``lrt-jax steer`` / ``transfer`` / ``eval`` end to end on tiny random HF checkpoints.

References: the steering vector against HF PyTorch hidden states at the answer letter;
the transferred vector against the saved map's linear part applied in NumPy; the
cosine against NumPy; ``eval``'s α = 0 rows (no steering) against the unsteered HF
propensity, and its comparison at α = 0 (every vector equal) against Pearson 1, MSE 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import hf_models
from lrt_jax import mappers, steering
from lrt_jax.cli import main
from lrt_jax.results import ResultsTable

import torch
import transformers

SITE = "layers.0.resid_post"
AB_RECORDS = [
    {"question": f"w{i} w{i + 3} w{i + 7} ? Choices : ( A ) w{i + 1} ( B ) w{i + 2}",
     "answer_matching_behavior": "(A)" if i % 2 else "(B)", "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"}
    for i in range(12)
]


@pytest.fixture(scope="module")
def ab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ab.json"
    path.write_text(json.dumps(AB_RECORDS, indent=2))
    return path


def _hf_answer_letter_vector(directory, layer: int) -> np.ndarray:
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    means = []
    for field in ("answer_matching_behavior", "answer_not_matching_behavior"):
        rows = []
        for record in AB_RECORDS:
            text = f"Question: {record['question']}\nAnswer: ({record[field].strip('()')}"
            with torch.no_grad():
                out = model(torch.tensor([tokenizer(text)["input_ids"]]), output_hidden_states=True)
            rows.append(out.hidden_states[layer + 1][0, -1].numpy())  # the letter is the last token
        means.append(np.mean(rows, axis=0))
    return means[0] - means[1]


def test_steer_transfer_eval_end_to_end(word_checkpoint, ab_file, tmp_path, capsys):
    source, target = word_checkpoint("llama"), word_checkpoint("qwen2")
    assert main(["steer", "--model", str(source), "--data", str(ab_file), "--site", SITE,
                 "--out", str(tmp_path / "source.safetensors"), "--batch-size", "5"]) == 0
    assert main(["steer", "--model", str(target), "--data", str(ab_file), "--site", SITE,
                 "--out", str(tmp_path / "native.safetensors")]) == 0
    source_vector = steering.load_vector(tmp_path / "source.safetensors")
    np.testing.assert_allclose(source_vector.vector, _hf_answer_letter_vector(source, 0), atol=1e-4)
    assert source_vector.metadata.position_rule == "answer_letter" and source_vector.metadata.count == 12

    assert main(["transfer", "--source", str(source), "--target", str(target), "--prompts", str(ab_file),
                 "--source-site", SITE, "--target-site", SITE, "--vector", str(tmp_path / "source.safetensors"),
                 "--native", str(tmp_path / "native.safetensors"), "--out", str(tmp_path / "transfer")]) == 0
    printed = capsys.readouterr().out
    assert "held-out R²" in printed and "cosine(transferred, native)" in printed
    loaded = mappers.load_map(tmp_path / "transfer" / "map.safetensors", source_site=SITE, target_site=SITE)
    state = loaded.state
    transferred = steering.load_vector(tmp_path / "transfer" / "transferred.safetensors")
    native = steering.load_vector(tmp_path / "native.safetensors")
    np.testing.assert_allclose(transferred.vector, np.asarray(source_vector.vector) @ np.asarray(mappers.linear(state)),
                               atol=1e-4)
    summary = json.loads((tmp_path / "transfer" / "transfer.json").read_text())
    cosine = np.dot(transferred.vector, native.vector) / np.linalg.norm(transferred.vector) / np.linalg.norm(native.vector)
    assert summary["cosine_with_native"] == pytest.approx(float(cosine), abs=1e-5)
    assert loaded.info.target_model == str(target) and loaded.info.n_fit == 10

    out = tmp_path / "eval"
    vectors = [f"--vector=native={tmp_path / 'native.safetensors'}"] + [
        f"--vector={name}={tmp_path / 'transfer' / f'{name}.safetensors'}" for name in ("transferred", "random", "unmapped")]
    assert main(["eval", "--model", str(target), "--task", "ab", "--data", str(ab_file), *vectors, "--alphas=-2,0,2",
                 "--native", "native", "--out", str(out)]) == 0
    assert {"scores.json", "scores.csv", "scores.png", "comparison.json", "comparison.csv", "comparison.png"} <= {
        p.name for p in out.iterdir()}
    table = ResultsTable.from_csv(out / "scores.csv")
    assert len(table) == 4 * 3 * len(AB_RECORDS)
    unsteered = _hf_unsteered_propensities(target)
    for name in ("native", "transferred", "random", "unmapped"):
        alphas, grid = table.propensity_matrix(vector=name, metric="logit_diff")
        np.testing.assert_allclose(grid[list(alphas).index(0.0)], unsteered, atol=1e-4)
    comparison = ResultsTable.from_json(out / "comparison.json")
    for record in comparison.select(alpha=0.0).records:
        assert record.value == pytest.approx(1.0 if record.metric == "pearson" else 0.0, abs=1e-6)
    assert "steerability slope" in capsys.readouterr().out


def _hf_unsteered_propensities(directory) -> np.ndarray:
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    values = []
    for record in AB_RECORDS:
        ids = tokenizer(f"Question: {record['question']}\nAnswer: (")["input_ids"]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], dim=-1)
        matching, not_matching = (tokenizer.convert_tokens_to_ids(record[f].strip("()"))
                                  for f in ("answer_matching_behavior", "answer_not_matching_behavior"))
        values.append(float(logprobs[matching] - logprobs[not_matching]))
    return np.array(values)


@pytest.mark.parametrize("task", ["persona", "mc2", "gsm8k"])
def test_eval_other_tasks(word_checkpoint, tmp_path, task, capsys):
    model = word_checkpoint("llama")
    if task == "persona":
        data = tmp_path / "persona.jsonl"
        lines = [{"question": f"w{i} w{i + 1} ?", "statement": f"w{i}", "answer_matching_behavior": " Yes",
                  "answer_not_matching_behavior": " No", "label_confidence": 0.9} for i in range(3)]
        data.write_text("\n".join(json.dumps(line) for line in lines))
    elif task == "mc2":
        data = tmp_path / "mc_task.json"
        records = [{"question": f"w{i} ?", "mc1_targets": {f"w{i + 1}": 1, f"w{i + 2} w3": 0},
                    "mc2_targets": {f"w{i + 1}": 1, f"w{i + 4} w5": 1, f"w{i + 2} w3 w9": 0}} for i in range(3)]
        data.write_text(json.dumps(records))
    else:
        data = tmp_path / "test.jsonl"
        data.write_text("\n".join(json.dumps({"question": f"w{i} w2 ?", "answer": f"w1 w2\n#### {i}"}) for i in range(3)))
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model), "--task", task, "--data", str(data), "--alphas", "0,3",
                 "--max-new-tokens", "4", "--out", str(out)]) == 0
    table = ResultsTable.from_json(out / "scores.json")
    assert {r.vector for r in table.records} == {"unsteered"} and {r.item for r in table.records} == {0, 1, 2}
    assert (out / "scores.png").exists() and "unsteered" in capsys.readouterr().out


CAA = str(hf_models.TEST_DATA / "caa" / "{split}" / "sycophancy" / "{name}.json")


def test_steer_and_eval_on_a_real_caa_file(word_checkpoint, tmp_path):
    generate, test = CAA.format(split="generate", name="generate_dataset"), CAA.format(split="test", name="test_dataset_ab")
    texts = tuple(record["question"] for record in json.loads(open(generate).read())[:4])
    model = word_checkpoint("llama", texts, max_position_embeddings=1024)
    assert main(["steer", "--model", str(model), "--data", generate, "--site", SITE, "--limit", "4",
                 "--out", str(tmp_path / "vec.safetensors")]) == 0
    assert np.all(np.isfinite(steering.load_vector(tmp_path / "vec.safetensors").vector))
    assert main(["eval", "--model", str(model), "--task", "ab", "--data", test, "--limit", "3",
                 f"--vector=native={tmp_path / 'vec.safetensors'}", "--alphas=-1:1:3", "--out", str(tmp_path)]) == 0
    assert len(ResultsTable.from_csv(tmp_path / "scores.csv")) == 3 * 3


def test_steer_and_eval_round_batches_to_the_mesh(word_checkpoint, ab_file, tmp_path):
    """Batch 3 on a data=2 mesh runs as 4 (a short last batch is filled): same numbers as one device."""
    model = word_checkpoint("llama")
    mesh = ["--mesh", "data=2,fsdp=2,tensor=2"]
    for name, extra in (("plain", []), ("mesh", mesh)):
        assert main(["steer", "--model", str(model), "--data", str(ab_file), "--site", SITE, "--limit", "11",
                     "--batch-size", "3", "--out", str(tmp_path / f"{name}.safetensors"), *extra]) == 0
    plain, sharded = (steering.load_vector(tmp_path / f"{name}.safetensors") for name in ("plain", "mesh"))
    assert sharded.metadata.count == 11
    np.testing.assert_allclose(sharded.vector, plain.vector, atol=1e-5)
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model), "--task", "ab", "--data", str(ab_file), "--batch-size", "3",
                 f"--vector=native={tmp_path / 'mesh.safetensors'}", "--alphas=0", "--out", str(out), *mesh]) == 0
    _, grid = ResultsTable.from_csv(out / "scores.csv").propensity_matrix(vector="native", metric="logit_diff")
    np.testing.assert_allclose(grid[0], _hf_unsteered_propensities(model), atol=1e-4)
