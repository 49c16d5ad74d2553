"""trainer/run_info.py: the run directory's own records."""

from __future__ import annotations

import json

from trainer.run.run_dir import rewind_metrics


def test_a_resume_drops_the_records_after_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 1.0 / s} for s in range(1, 9)] + [{"step": 8, "eval_top1": 50.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rewind_metrics(path, 4)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:4]
    rewind_metrics(path, 4)  # nothing after: unchanged
    assert len(path.read_text().splitlines()) == 4
    rewind_metrics(tmp_path / "absent.jsonl", 4)
