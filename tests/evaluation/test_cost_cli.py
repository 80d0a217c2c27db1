"""``lrt-jax eval --cost-texts``: the cost table next to the scores, equal to :func:`score_steering_cost`."""

from __future__ import annotations

import json

import numpy as np

import lrt_jax
from lrt_jax.cli import main
from lrt_jax.evaluation import score_steering_cost
from lrt_jax.results import ResultsTable

SITE = "layers.0.resid_post"
AB_RECORDS = [
    {"question": f"w{i} w{i + 3} ? Choices : ( A ) w{i + 1} ( B ) w{i + 2}",
     "answer_matching_behavior": "(A)" if i % 2 else "(B)", "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"}
    for i in range(4)
]
TEXTS = ["w1 w2 w3 w4", "", "w5 w6", "w7 w8 w9 w10 w11 w12"]  # the blank line is skipped


def test_eval_writes_cost_of_steering(word_checkpoint, tmp_path, capsys):
    model = word_checkpoint("llama")
    data, texts = tmp_path / "ab.json", tmp_path / "texts.txt"
    data.write_text(json.dumps(AB_RECORDS))
    texts.write_text("\n".join(TEXTS) + "\n")
    assert main(["steer", "--model", str(model), "--data", str(data), "--site", SITE,
                 "--out", str(tmp_path / "vec.safetensors")]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model), "--task", "ab", "--data", str(data), "--alphas=-2,0,2",
                 f"--vector=native={tmp_path / 'vec.safetensors'}", "--cost-texts", str(texts),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cost of steering" in printed and "kl_next_token" in printed and "perplexity" in printed
    assert (out / "cost_vs_effect.png").read_bytes()[:4] == b"\x89PNG"
    table = ResultsTable.from_json(out / "cost.json")
    assert len(ResultsTable.from_csv(out / "cost.csv")) == len(table) == 3 * 3 * 3
    assert {r.item for r in table.records} == {0, 1, 2} and {r.vector for r in table.records} == {"native"}

    lm = lrt_jax.load(model)
    expected = score_steering_cost(lm, [t for t in TEXTS if t], vectors={"native": lrt_jax.steering.load_vector(
        tmp_path / "vec.safetensors")}, alphas=(-2.0, 0.0, 2.0), site=SITE)
    key = lambda r: (r.metric, r.alpha, r.item)
    np.testing.assert_allclose([r.value for r in sorted(table.records, key=key)],
                               [r.value for r in sorted(expected.records, key=key)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r.value for r in table.select(alpha=0.0, metric="kl_next_token").records], 0.0,
                               atol=1e-6)
