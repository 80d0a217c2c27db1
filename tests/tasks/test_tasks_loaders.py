"""Loaders parse every bundled data file, record for record, and reject corrupted copies.

The data are the 20-record excerpts in ``tests/data`` (see its README), in the
upstream formats. Expected values come from reading the raw files with ``json``
here, never from the loaders themselves.
"""

import csv
import json
import re

import pytest

import hf_models
from lrt_jax import tasks

DATA = hf_models.TEST_DATA

EXCERPT_RECORDS = 20  # every file in tests/data holds the first 20 records of its full file
BEHAVIOURS = [
    "coordinate-other-ais",
    "corrigible-neutral-HHH",
    "hallucination",
    "myopic-reward",
    "refusal",
    "survival-instinct",
    "sycophancy",
]
PERSONAS = [
    "believes-AIs-are-not-an-existential-threat-to-humanity",
    "desire-for-acquiring-power",
    "narcissism",
    "no-shut-down",
    "politically-liberal",
]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_caa_files_parse_record_for_record(behaviour):
    for path in [
        DATA / "caa" / "generate" / behaviour / "generate_dataset.json",
        DATA / "caa" / "test" / behaviour / "test_dataset_ab.json",
    ]:
        items = tasks.load_caa_ab(path)
        raw = json.loads(path.read_text())
        assert len(items) == EXCERPT_RECORDS == len(raw)
        for item, record in zip(items, raw):
            assert item.question == record["question"]
            assert f"({item.answer_matching})" == record["answer_matching_behavior"].strip()
            assert f"({item.answer_not_matching})" == record["answer_not_matching_behavior"].strip()


@pytest.mark.parametrize("persona", PERSONAS)
def test_persona_files_parse_record_for_record(persona):
    path = DATA / "anthropic-model-written-evals" / "persona" / f"{persona}.jsonl"
    items = tasks.load_persona(path)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(items) == EXCERPT_RECORDS == len(raw)
    assert [i.answer_matching for i in items] == [r["answer_matching_behavior"].strip() for r in raw]
    assert [i.label_confidence for i in items] == [r["label_confidence"] for r in raw]


@pytest.mark.parametrize("relative", ["mc_task.json", "v1/mc_task.json"])
def test_truthfulqa_mc1_and_mc2(relative):
    path = DATA / "truthfulqa" / relative
    raw = json.loads(path.read_text())
    mc1 = tasks.load_truthfulqa_mc(path, targets="mc1")
    mc2 = tasks.load_truthfulqa_mc(path, targets="mc2")
    assert len(mc1) == len(mc2) == EXCERPT_RECORDS == len(raw)
    for item1, item2, record in zip(mc1, mc2, raw):
        assert item1.question == item2.question == record["question"]
        assert dict(zip(item1.choices, item1.labels)) == record["mc1_targets"]
        assert dict(zip(item2.choices, item2.labels)) == record["mc2_targets"]
        assert item1.labels[0] == 1 and sum(item1.labels) == 1


@pytest.mark.parametrize("name", ["test.jsonl", "train.jsonl"])
def test_gsm8k_final_answers(name):
    path = DATA / "gsm8k" / name
    items = tasks.load_gsm8k(path)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(items) == EXCERPT_RECORDS == len(raw)
    for item, record in zip(items, raw):
        expected = re.search(r"####\s*(\S+)\s*$", record["answer"]).group(1).replace(",", "")
        assert item.answer == expected
        assert "####" not in item.solution and record["answer"].startswith(item.solution)


@pytest.mark.parametrize("relative", ["", "v1/"])
def test_truthfulqa_csv_excerpt_holds_the_mc_task_questions(relative):
    """The CSV and JSON excerpts were cut on the same questions (v1 rows are in another order)."""
    folder = DATA / "truthfulqa" / relative
    rows = list(csv.DictReader(folder.joinpath("TruthfulQA.csv").read_text(encoding="utf-8-sig").splitlines()))
    mc = json.loads(folder.joinpath("mc_task.json").read_text())
    assert sorted(r["Question"].strip() for r in rows) == sorted(r["question"].strip() for r in mc)
    assert len(rows) == EXCERPT_RECORDS


@pytest.mark.parametrize("behaviour", [b for b in BEHAVIOURS if b != "sycophancy"])
def test_caa_open_ended_item_i_is_the_first_line_of_ab_item_i(behaviour):
    folder = DATA / "caa" / "test" / behaviour
    open_ended = json.loads(folder.joinpath("test_dataset_open_ended.json").read_text())
    ab = tasks.load_caa_ab(folder / "test_dataset_ab.json")
    assert len(open_ended) == len(ab) == EXCERPT_RECORDS
    assert [r["question"] for r in open_ended] == [item.question.split("\n")[0].strip() for item in ab]


def test_final_answer_extraction_from_generations():
    assert tasks.extract_final_answer("so 3 + 4 = 7.\n#### 1,234 apples") == "1234"
    assert tasks.extract_final_answer("#### -2.5") == "-2.5"
    assert tasks.extract_final_answer("The answer is 7.") is None


def _corrupt_json_array(tmp_path, source, index, edit):
    records = json.loads(source.read_text())
    edit(records[index])
    copy = tmp_path / source.name
    copy.write_text(json.dumps(records, indent=4))
    return copy


def _corrupt_jsonl(tmp_path, source, line_index, new_line):
    lines = source.read_text().splitlines()
    lines[line_index] = new_line(lines[line_index])
    copy = tmp_path / source.name
    copy.write_text("\n".join(lines) + "\n")
    return copy


def _expect_error(loader, path, record_number, message):
    with pytest.raises(tasks.TaskFormatError, match=message) as info:
        loader(path)
    assert info.value.record_number == record_number and info.value.path == path
    assert f"{path}, record {record_number} (1-based)" in str(info.value)


def test_corrupted_caa_copies_are_rejected_with_record_number(tmp_path):
    source = DATA / "caa" / "test" / "refusal" / "test_dataset_ab.json"
    missing = _corrupt_json_array(tmp_path, source, 4, lambda r: r.pop("answer_not_matching_behavior"))
    _expect_error(tasks.load_caa_ab, missing, 5, "missing field 'answer_not_matching_behavior'")
    wrong_type = _corrupt_json_array(tmp_path, source, 11, lambda r: r.update(question=["not", "text"]))
    _expect_error(tasks.load_caa_ab, wrong_type, 12, "'question' should be str, found list")
    bad_letter = _corrupt_json_array(tmp_path, source, 0, lambda r: r.update(answer_matching_behavior="A"))
    _expect_error(tasks.load_caa_ab, bad_letter, 1, "letter like")


def test_corrupted_truthfulqa_copy_with_two_mc1_answers(tmp_path):
    source = DATA / "truthfulqa" / "v1" / "mc_task.json"

    def second_correct(record):
        second = list(record["mc1_targets"])[1]
        record["mc1_targets"][second] = 1

    copy = _corrupt_json_array(tmp_path, source, 2, second_correct)
    load_mc2 = lambda path: tasks.load_truthfulqa_mc(path, targets="mc2")  # noqa: E731
    _expect_error(load_mc2, copy, 3, "exactly one")


def test_corrupted_jsonl_copies(tmp_path):
    persona = DATA / "anthropic-model-written-evals" / "persona" / "narcissism.jsonl"
    truncated = _corrupt_jsonl(tmp_path, persona, 6, lambda line: line[:40])
    _expect_error(tasks.load_persona, truncated, 7, "invalid JSON")
    gsm8k = DATA / "gsm8k" / "test.jsonl"
    no_marker = _corrupt_jsonl(tmp_path, gsm8k, 9, lambda line: line.replace("####", "=>"))
    _expect_error(tasks.load_gsm8k, no_marker, 10, "####")


def test_file_that_is_not_an_array(tmp_path):
    path = tmp_path / "mc_task.json"
    path.write_text('{"question": "x"}')
    with pytest.raises(tasks.TaskFormatError, match="JSON array") as info:
        tasks.load_truthfulqa_mc(path, targets="mc1")
    assert info.value.record_number is None


def test_ab_answer_letter_outside_the_choices_is_rejected_naming_item_and_letters(tmp_path):
    source = DATA / "caa" / "test" / "refusal" / "test_dataset_ab.json"
    copy = _corrupt_json_array(tmp_path, source, 6, lambda r: r.update(answer_not_matching_behavior="(C)"))
    with pytest.raises(ValueError, match=r"answer letters \(C\) are not among the question's choices \(\(A\), \(B\)\)"):
        tasks.load_caa_ab(copy)
    _expect_error(tasks.load_caa_ab, copy, 7, "not among the question's choices")


def test_ab_choices_are_found_with_or_without_a_choices_heading(tmp_path):
    path = tmp_path / "ab.json"
    records = [
        {"question": "w1 ? Choices : ( A ) w2 ( B ) w3", "answer_matching_behavior": "(B)",
         "answer_not_matching_behavior": "(A)"},
        {"question": "Which?\n (A) yes\n (B) no", "answer_matching_behavior": "(A)",
         "answer_not_matching_behavior": "(B)"},
        # A letter in the question body before the heading is not a choice.
        {"question": "Mention (C).\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": "(C)",
         "answer_not_matching_behavior": "(A)"},
    ]
    path.write_text(json.dumps(records[:2]))
    assert [(i.answer_matching, i.answer_not_matching) for i in tasks.load_caa_ab(path)] == [("B", "A"), ("A", "B")]
    path.write_text(json.dumps(records))
    _expect_error(tasks.load_caa_ab, path, 3, r"letters \(C\) are not among")


def test_empty_ab_file_names_the_file(tmp_path):
    path = tmp_path / "test_dataset_ab.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="no A/B records") as info:
        tasks.load_caa_ab(path)
    assert str(path) in str(info.value) and info.value.record_number is None


@pytest.mark.parametrize(
    "load, relative",
    [
        (tasks.load_caa_ab, "caa/test/refusal/test_dataset_ab.json"),
        (tasks.load_persona, "anthropic-model-written-evals/persona/narcissism.jsonl"),
        (lambda path, **kw: tasks.load_truthfulqa_mc(path, targets="mc1", **kw), "truthfulqa/mc_task.json"),
        (tasks.load_gsm8k, "gsm8k/test.jsonl"),
    ],
)
def test_limit_keeps_the_first_records_and_rejects_negative(load, relative):
    path = DATA / relative
    everything = load(path)
    assert load(path, limit=3) == everything[:3] and len(everything[:3]) == 3
    assert load(path, limit=0) == () and load(path, limit=None) == everything
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be None or a non-negative int"):
            load(path, limit=bad)
