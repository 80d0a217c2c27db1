"""Output safety: strict JSON, atomic writes, one run per directory, and CLI refusals before any work."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import safetensors.numpy

from lrt_jax import steering
from lrt_jax.cli import main
from lrt_jax.outputs import (
    MANIFEST,
    atomic_path,
    prepare_output_dir,
    to_strict_json,
    write_json_atomic,
)
from lrt_jax.results import ResultRecord, ResultsTable


def test_strict_json_writes_non_finite_values_as_null():
    text = to_strict_json({"a": float("nan"), "b": [1.0, float("inf"), -float("inf")], "c": np.float32(2.5),
                           "d": np.array([np.nan, 1.0])})
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": 2.5, "d": [None, 1.0]}
    assert "NaN" not in text and "Infinity" not in text


def test_results_table_round_trips_nan_through_strict_json(tmp_path):
    table = ResultsTable((ResultRecord("t", "m", "v", 0.0, 0, "logit_diff", float("nan")),
                          ResultRecord("t", "m", "v", 1.0, 0, "logit_diff", 0.25)))
    table.to_json(tmp_path / "scores.json")
    raw = (tmp_path / "scores.json").read_text()
    json.loads(raw, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    values = [r.value for r in ResultsTable.from_json(tmp_path / "scores.json").records]
    assert math.isnan(values[0]) and values[1] == 0.25


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"run": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text('{"run": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"run": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left behind


def test_prepare_output_dir_refuses_existing_results_and_names_the_flag(tmp_path):
    (tmp_path / "scores.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"already holds results \(scores.json\).*--overwrite"):
        prepare_output_dir(tmp_path, "eval", ("scores.json", "scores.csv"))


def test_overwrite_removes_only_this_commands_and_the_previous_runs_files(tmp_path):
    for name in ("scores.json", "comparison.json", "comparison.png", "notes.txt"):
        (tmp_path / name).write_text("old")
    (tmp_path / MANIFEST).write_text(json.dumps({"files": ["scores.json", "comparison.json", "comparison.png"]}))
    out = prepare_output_dir(tmp_path, "eval", ("scores.json", "scores.csv"), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # stale comparison.* removed too
    (tmp_path / "scores.json").write_text("{}")
    manifest = json.loads(out.finish().read_text())
    assert manifest["command"] == "eval" and manifest["files"] == ["scores.json"]


def test_output_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        prepare_output_dir(tmp_path / "file" / "out", "eval", ("scores.json",))


def test_eval_refuses_a_used_out_before_loading_anything(tmp_path, capsys):
    (tmp_path / "scores.json").write_text("{}")
    code = main(["eval", "--model", str(tmp_path / "no-model"), "--task", "ab", "--data", str(tmp_path / "no.json"),
                 "--out", str(tmp_path)])
    assert code == 1
    assert "already holds results" in capsys.readouterr().err
    assert (tmp_path / "scores.json").read_text() == "{}"


def test_eval_out_beneath_a_file_is_refused_before_scoring(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["eval", "--model", "none", "--task", "ab", "--data", "none.json", "--out", str(tmp_path / "f" / "o")]) == 1
    assert "is a file" in capsys.readouterr().err


def test_eval_and_steer_refuse_a_negative_limit(tmp_path, capsys):
    assert main(["eval", "--model", "m", "--task", "ab", "--data", "d.json", "--limit", "-1",
                 "--out", str(tmp_path / "o")]) == 1
    assert "--limit -1" in capsys.readouterr().err
    assert main(["steer", "--model", "m", "--data", "d.json", "--site", "embed", "--limit", "-1",
                 "--out", str(tmp_path / "v.safetensors")]) == 1
    assert "--limit -1" in capsys.readouterr().err


def _vector(width=4):
    info = steering.VectorInfo(model="m", site="layers.0.resid_post", d_model=width, position_rule="last",
                               estimator="diff_of_means", dataset="d", count=2)
    return steering.SteeringVector(np.arange(width, dtype=np.float32), info)


def test_steer_refuses_to_overwrite_a_vector_unless_asked(tmp_path, capsys):
    path = tmp_path / "v.safetensors"
    steering.save_vector(_vector(), path)
    assert main(["steer", "--model", "m", "--data", "d.json", "--site", "embed", "--out", str(path)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    np.testing.assert_array_equal(steering.load_vector(path).vector, np.arange(4, dtype=np.float32))


def test_capture_with_no_site_is_refused(tmp_path, capsys):
    assert main(["capture", "--model", "m", "--prompts", "p.txt", "--sites", ",", "--out", str(tmp_path / "o")]) == 1
    assert "names no site" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_cache_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "cache").write_text("x")
    assert main(["demo", "--quick", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "o")]) == 1
    assert "is a file" in capsys.readouterr().err


def test_vector_without_an_info_record_names_the_file(tmp_path, capsys):
    path = tmp_path / "v.safetensors"
    safetensors.numpy.save_file({"vector": np.ones(4, np.float32)}, str(path))
    with pytest.raises(ValueError, match=r"v\.safetensors is a safetensors file without an lrt_jax\.artifact header"):
        steering.load_vector(path)
    assert main(["eval", "--model", "m", "--task", "ab", "--data", "d.json", f"--vector=n={path}",
                 "--out", str(tmp_path / "o")]) == 1
    assert "without an lrt_jax.artifact header" in capsys.readouterr().err


def test_truncated_vector_file_names_the_file(tmp_path):
    path = tmp_path / "v.safetensors"
    steering.save_vector(_vector(64), path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"v\.safetensors is not a readable safetensors file.*truncated"):
        steering.load_vector(path)


def test_a_bug_in_a_command_keeps_its_traceback(monkeypatch, tmp_path):
    import lrt_jax.cli.capture as capture_command

    def buggy(args):
        raise KeyError("internal")

    monkeypatch.setattr(capture_command, "run", buggy)
    with pytest.raises(KeyError, match="internal"):
        main(["capture", "--model", "m", "--prompts", "p", "--sites", "embed", "--out", str(tmp_path)])


def test_transfer_refuses_a_used_out_before_any_capture(tmp_path, capsys):
    (tmp_path / "transfer.json").write_text("{}")
    code = main(["transfer", "--source", "no-source", "--target", "no-target", "--prompts", "p.txt",
                 "--source-site", "embed", "--target-site", "embed", "--vector", "v.safetensors",
                 "--out", str(tmp_path)])
    assert code == 1
    assert "already holds results (transfer.json)" in capsys.readouterr().err


def test_an_explicit_cache_dir_holds_the_xla_cache_too(tmp_path, monkeypatch):
    import jax

    from lrt_jax.cli.demo import enable_compilation_cache

    updates = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: updates.__setitem__(name, value))
    enable_compilation_cache(tmp_path / "cache")
    assert updates["jax_compilation_cache_dir"] == str(tmp_path / "cache" / "xla_cache")
