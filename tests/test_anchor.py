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


def test_anchor_keeps_the_seeds_it_has_and_refuses_to_mix_settings(tmp_path, capsys):
    fixture = write_fixture(tmp_path / "data")
    args = [f"--init={fixture / 'init'}", "--task=arxiv", f"--data_dir={fixture}", "--max_steps=4", "--batch_size=4",
            "--eval_every=2", "--learning_rate=1e-3", "--threads=1", f"--out={tmp_path / 'anchor'}"]
    results, log = tmp_path / "anchor" / "arxiv_results.json", tmp_path / "anchor" / "arxiv_log.jsonl"
    anchor_single_task.main(args + ["--seeds=1"])
    first = json.loads(results.read_text())["runs"][0]
    # a later session adds seeds 2 and 3 (1 again): seed 1 is kept as it was, not trained again
    summary = anchor_single_task.main(args + ["--seeds=1,2,3"])
    assert "seed 1: already in" in capsys.readouterr().out
    saved = json.loads(results.read_text())
    assert [run["seed"] for run in saved["runs"]] == [1, 2, 3] and saved["runs"][0] == first
    assert saved["settings"]["seeds"] == "1,2,3" and summary["mean"] == saved["mean"]
    assert [(entry["seed"], entry["step"]) for entry in map(json.loads, log.read_text().splitlines())] == [
        (1, 2), (1, 4), (2, 2), (2, 4), (3, 2), (3, 4)]
    # a seed whose run stopped part-way loses its partial log lines when it is run again
    with open(log, "a") as handle:
        handle.write(json.dumps({"seed": 4, "step": 2, "loss": 1.0, "dev": {}}) + "\n")
    anchor_single_task.main(args + ["--seeds=4"])
    assert [entry["step"] for entry in map(json.loads, log.read_text().splitlines()) if entry["seed"] == 4] == [2, 4]
    # other training settings would make the seeds incomparable: one line naming the file and the setting
    with pytest.raises(ValueError, match=r"arxiv_results.json.*--max_steps=4.*--max_steps=6"):
        anchor_single_task.main([a.replace("--max_steps=4", "--max_steps=6") for a in args] + ["--seeds=5"])
