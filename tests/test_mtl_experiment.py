"""The experiment command at a tiny size: every run happens once, the table in the results
file is rebuilt from the runs' results.json (so the figures in docs/RESULTS.md trace to runs),
and a finished run is not repeated."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from test_mtl import write_fixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import mtl_experiment  # noqa: E402


def test_experiment_grid_writes_the_table(tmp_path):
    fixture = write_fixture(tmp_path / "data")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nkept text\n")
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint,mmoe", "--imbalanced_extra=joint_1:3",
            "--seeds=1,2", "--max_steps=2", "--batch_size=2", "--eval_every=2", "--arxiv_train_limit=20",
            "--eval_limit=0", "--threads=1", f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}",
            f"--results={results}", f"--figures={tmp_path / 'img'}", "--train_args=--unfreeze_every=1"]
    mtl_experiment.main(args)
    text = results.read_text()
    assert text.startswith("# Results\n\nkept text\n") and text.count(mtl_experiment.BEGIN) == 1
    main_table, paired = text.split("Paired differences to joint 1:1")
    rows = [line for line in main_table.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 5  # 2 balanced + 3 with 10% SciERC
    paired_rows = [line for line in paired.splitlines() if line.startswith("| tiny |")]
    assert len(paired_rows) == 3 and all(row.endswith("| 2 |") for row in paired_rows)  # every row but joint's
    joint = json.loads((tmp_path / "grid" / "tiny_scierc10_joint_1:3_s1" / "results.json").read_text())
    assert joint["settings"]["weights"] == "1,3" and joint["settings"]["task_fraction"] == "scierc=0.1"
    accuracies = [json.loads((tmp_path / "grid" / f"tiny_balanced_joint_s{seed}" / "results.json").read_text())
                  ["test"]["arxiv"]["accuracy"] for seed in (1, 2)]
    row = next(r for r in rows if "| balanced | joint |" in r).split("|")
    mean, std = (float(x) for x in row[6].split("±"))
    assert mean == pytest.approx(np.mean(accuracies), abs=1e-3) and std == pytest.approx(np.std(accuracies, ddof=1), abs=1e-3)
    assert row[-2].strip() == "2"  # seeds
    assert "Mean gate weight" in text and (tmp_path / "img" / "mtl_grid.png").is_file()
    # a second call finds every results.json and runs nothing
    stamp = (tmp_path / "grid" / "tiny_balanced_joint_s1" / "results.json").stat().st_mtime_ns
    mtl_experiment.main(args)
    assert (tmp_path / "grid" / "tiny_balanced_joint_s1" / "results.json").stat().st_mtime_ns == stamp
    # --report_only rebuilds the same table from the runs on disk
    results.write_text("# Results\n")
    mtl_experiment.main(args + ["--report_only=true"])
    rebuilt = results.read_text().split("Paired differences to joint 1:1")[0]
    assert [l for l in rebuilt.splitlines() if l.startswith("| tiny |")] == rows
    with pytest.raises(FileNotFoundError, match="train_mlm.py"):
        mtl_experiment.main(args[:0] + ["--backbones=mini=/nonexistent"] + args[1:])


def test_paired_difference_pairs_by_seed_and_gives_a_t_interval():
    # seeds 3, 1, 2 against a baseline listed as 1, 2, 3: differences 0.02, 0.04, 0.03
    mean, half, n = mtl_experiment.paired_difference([0.53, 0.54, 0.53], [0.50, 0.50, 0.51], [3, 1, 2], [1, 2, 3])
    assert n == 3 and mean == pytest.approx(0.03)
    assert half == pytest.approx(4.303 * 0.01 / np.sqrt(3))  # sd of (0.02, 0.04, 0.03) is 0.01; t(0.975, 2) = 4.303
    # a seed the baseline lacks is left out; one pair gives no interval
    assert mtl_experiment.paired_difference([0.6, 0.7], [0.5], [1, 2], [1]) == (pytest.approx(0.1), None, 1)
