# Writes tests/data from a full copy of the datasets; see tests/data/README.md.
# Usage: python tests/data/make_excerpt.py FULL_DATA_DIR tests/data
import csv, io, json, shutil, sys
from pathlib import Path
SRC = Path(sys.argv[1]); DST = Path(sys.argv[2]); N = 20

def dump(records, indent, like):
    text = json.dumps(records, indent=indent)
    full = json.loads(like.read_text())
    assert json.dumps(full, indent=indent) == like.read_text(), f"format not reproduced: {like}"
    return text

def write(rel, text, mode="w"):
    out = DST / rel; out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(text if isinstance(text, bytes) else text.encode())

for d in ("caa", "anthropic-model-written-evals", "truthfulqa", "gsm8k"):
    (DST / d).mkdir(parents=True, exist_ok=True); shutil.copyfile(SRC / d / "LICENSE", DST / d / "LICENSE")
for p in sorted((SRC / "caa").rglob("*.json")):
    rel = p.relative_to(SRC)
    write(rel, dump(json.loads(p.read_text())[:N], 4, p))
for p in sorted((SRC / "anthropic-model-written-evals" / "persona").glob("*.jsonl")) + [SRC / "gsm8k/test.jsonl", SRC / "gsm8k/train.jsonl"]:
    data = p.read_bytes(); lines = data.split(b"\n")
    assert data.endswith(b"\n")
    write(p.relative_to(SRC), b"\n".join(lines[:N]) + b"\n")
for rel, indent in (("truthfulqa/mc_task.json", None), ("truthfulqa/v1/mc_task.json", 2)):
    p = SRC / rel; mc = json.loads(p.read_text())[:N]
    write(rel, dump(mc, indent, p))
    questions = {r["question"].strip() for r in mc}
    csvp = p.with_name("TruthfulQA.csv"); raw = csvp.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf"); body = raw[3:] if bom else raw
    physical = body.decode("utf-8").split("\n")
    trailing = physical[-1] == ""
    if trailing: physical = physical[:-1]
    rows = list(csv.reader(physical))
    assert len(rows) == len(physical), "a CSV record spans lines"
    qcol = rows[0].index("Question")
    kept = [physical[0]] + [line for line, row in zip(physical[1:], rows[1:]) if row[qcol].strip() in questions]
    assert len(kept) == N + 1, (rel, len(kept))
    text = "\n".join(kept) + ("\n" if trailing else "")
    write(csvp.relative_to(SRC), (b"\xef\xbb\xbf" if bom else b"") + text.encode())
    print(rel, "bom", bom, "trailing newline", trailing)
