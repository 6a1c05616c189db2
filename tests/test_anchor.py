"""bench/anchor_single_task.py, the reference library's single-task fine-tune, at a tiny size:
it trains, keeps the best dev checkpoint, and scores test with minibert's metrics."""

import json
import sys
from pathlib import Path

import pytest

from test_mtl import write_fixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import anchor_single_task  # noqa: E402


@pytest.mark.parametrize("task, metric, dtype", [("arxiv", "accuracy", "float32"), ("scierc", "f1", "bfloat16")])
def test_anchor_trains_and_scores_test(tmp_path, task, metric, dtype):
    fixture = write_fixture(tmp_path / "data")
    summary = anchor_single_task.main([f"--init={fixture / 'init'}", f"--task={task}", f"--data_dir={fixture}",
                                       "--seeds=1,2", "--max_steps=6", "--batch_size=4", "--eval_every=3",
                                       "--learning_rate=1e-3", "--threads=1", f"--dtype={dtype}", f"--out={tmp_path / 'anchor'}"])
    saved = json.loads((tmp_path / "anchor" / f"{task}_results.json").read_text())
    assert [run["seed"] for run in saved["runs"]] == [1, 2]
    for run in saved["runs"]:
        assert run["best_step"] in (3, 6) and 0.0 <= run["test"][metric] <= 1.0
    assert saved["mean"] == pytest.approx(sum(saved[f"test_{metric}"]) / 2)
    logged = [json.loads(line) for line in (tmp_path / "anchor" / f"{task}_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [3, 6, 3, 6]
    assert summary["mean"] == saved["mean"]
