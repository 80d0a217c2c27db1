"""``experiments/summarise_seeds.py``: mean and range over seeds, checked by hand on made-up runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "summarise_seeds.py"


@pytest.fixture(scope="module")
def summarise_seeds(experiment_script):
    return experiment_script("summarise_seeds")


def _run(seed, no_transfer, transfer, teacher_only=None, experiment="latent_semantic_alignment"):
    return {
        "experiment": experiment, "teacher_model": "large-long", "student_model": "small",
        "args": {"seed": seed},
        "teacher": {"train": 0.9, "held_out_teacher_only": None},
        "student_before": {"train": 0.5},
        "after": {"2": {"pairing": {"student_layer": 2, "teacher_position": 3.3},
                        "no_transfer": {"train": no_transfer, "final_loss": {"loss": 1.0}},
                        "transfer": {"train": transfer, "held_out_teacher_only": teacher_only}}},
    }


def test_mean_and_range_per_score_by_hand(summarise_seeds):
    runs = [_run(0, 0.5, 0.25, 0.0), _run(1, 0.75, 0.5, 0.1), _run(2, 1.0, 0.75)]
    summary = summarise_seeds.summarise(runs)
    rows = {row["score"]: row for row in summary["scores"]}
    assert summary["seeds"] == [0, 1, 2]
    assert rows["after/2/no_transfer/train"]["mean"] == pytest.approx(0.75)
    assert (rows["after/2/no_transfer/train"]["min"], rows["after/2/no_transfer/train"]["max"]) == (0.5, 1.0)
    assert rows["after/2/transfer/train"]["values"] == [0.25, 0.5, 0.75]
    assert rows["teacher/train"]["mean"] == pytest.approx(0.9)
    # Losses and the layer pairing are not scores; a score missing (None) in one run is left out.
    assert not any("final_loss" in name or "pairing" in name for name in rows)
    assert "after/2/transfer/held_out_teacher_only" not in rows
    assert "teacher/held_out_teacher_only" not in rows


def test_mixed_experiments_and_repeated_seeds_are_refused(summarise_seeds):
    with pytest.raises(ValueError, match="mix experiments"):
        summarise_seeds.summarise([_run(0, 0.5, 0.5), _run(1, 0.5, 0.5, experiment="trajectory_distillation")])
    with pytest.raises(ValueError, match="same seed"):
        summarise_seeds.summarise([_run(0, 0.5, 0.5), _run(0, 0.6, 0.5)])
    with pytest.raises(ValueError, match="no runs"):
        summarise_seeds.summarise([])


def test_command_line_writes_json_and_plot(tmp_path):
    paths = []
    for seed, value in ((0, 0.25), (1, 0.75)):
        path = tmp_path / f"run{seed}.json"
        path.write_text(json.dumps(_run(seed, value, value, value)))
        paths.append(str(path))
    out = tmp_path / "summary"
    result = subprocess.run([sys.executable, str(SCRIPT), *paths, "--out", str(out)],
                            capture_output=True, text=True, check=True)
    assert "mean 0.500" in result.stdout
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["files"] == ["run0.json", "run1.json"]
    assert out.with_suffix(".png").stat().st_size > 0
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope.json"), "--out", str(out)],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no such result file" in missing.stderr
