"""The experiment command at a tiny size: every run happens once, the table in the results
file is rebuilt from the runs' results.json (so the figures in docs/RESULTS.md trace to runs),
and a finished run is not repeated."""

import json
import os
import signal
import subprocess
import sys
import time
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
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint,mmoe", "--imbalanced_extra=joint_1:3,mmoe_1:10",
            "--seeds=1,2", "--max_steps=2", "--batch_size=2", "--eval_every=2", "--arxiv_train_limit=20",
            "--eval_limit=0", "--threads=1", f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}",
            f"--results={results}", f"--figures={tmp_path / 'img'}", "--train_args=--unfreeze_every=1",
            "--jobs=2"]  # each run is a process, mostly starting up: two at a time on two cores
    mtl_experiment.main(args)
    text = results.read_text()
    assert text.startswith("# Results\n\nkept text\n") and text.count(mtl_experiment.BEGIN) == 1
    main_table, paired = text.split("Paired differences to joint 1:1")
    rows = [line for line in main_table.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 6  # 2 balanced + 4 with 10% SciERC
    paired_rows = [line for line in paired.splitlines() if line.startswith("| tiny |")]
    assert len(paired_rows) == 4 and all(row.endswith("| 2 |") for row in paired_rows)  # every row but joint's
    joint = json.loads((tmp_path / "grid" / "tiny_scierc10_joint_1:3_s1" / "results.json").read_text())
    assert joint["settings"]["weights"] == "1,3" and joint["settings"]["task_fraction"] == "scierc=0.1"
    mmoe = json.loads((tmp_path / "grid" / "tiny_scierc10_mmoe_1:10_s1" / "results.json").read_text())
    assert mmoe["settings"]["strategy"] == "mmoe" and mmoe["settings"]["weights"] == "1,10"
    assert list(mmoe["phases"].values())[0]["final_task_weights"] == [1.0, 10.0]
    accuracies = [json.loads((tmp_path / "grid" / f"tiny_balanced_joint_s{seed}" / "results.json").read_text())
                  ["test"]["arxiv"]["accuracy"] for seed in (1, 2)]
    row = next(r for r in rows if "| balanced | joint |" in r).split("|")
    mean, std = (float(x) for x in row[6].split("±"))
    assert mean == pytest.approx(np.mean(accuracies), abs=1e-3) and std == pytest.approx(np.std(accuracies, ddof=1), abs=1e-3)
    assert row[9].strip() == "2" and row[10].strip() == "2, 2"  # seeds; the best dev step of each
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
    # the reference library's single-task runs, where bench/anchor_single_task.py put them, become a row
    (tmp_path / "grid" / "anchor").mkdir()
    (tmp_path / "grid" / "anchor" / "scierc_results.json").write_text(json.dumps({"runs": [
        {"seed": 1, "test": {"f1": 0.5}, "best_step": 2}, {"seed": 2, "test": {"f1": 0.6}, "best_step": 4}]}))
    mtl_experiment.main(args + ["--report_only=true"])
    anchor = next(line for line in results.read_text().splitlines() if line.startswith("| transformers |"))
    assert "| 0.550 ± 0.071 (2 seeds) |" in anchor and "scierc 2, 4" in anchor
    mtl_experiment.main(args + ["--report_only=true", "--data=scierc10", "--section=only10"])
    only10 = results.read_text().split("<!-- mtl-grid-only10:begin -->")[1]
    assert "| tiny | scierc10 |" in only10 and "| transformers |" not in only10  # anchors used the whole SciERC
    # a named section keeps its own block and figure beside the default one
    mtl_experiment.main(args + ["--report_only=true", "--section=long"])
    text = results.read_text()
    assert text.count(mtl_experiment.BEGIN) == 1 and text.count("<!-- mtl-grid-long:begin -->") == 1
    assert "--section=long" in text and (tmp_path / "img" / "mtl_grid_long.png").is_file()
    # --paired_to pairs every row with another variant: the 10% case's best static weighting
    mtl_experiment.main(args + ["--report_only=true", "--section=to13", "--paired_to=joint_1:3"])
    block = results.read_text().split("<!-- mtl-grid-to13:begin -->")[1]
    paired = block.split("Paired differences to joint_1:3")[1]
    paired_rows = [line for line in paired.splitlines() if line.startswith("| tiny |")]
    assert [row.split("|")[3].strip() for row in paired_rows] == ["joint", "mmoe", "mmoe_1:10"]  # 10% only
    assert "SciERC span F1 - joint_1:3" in paired
    with pytest.raises(ValueError, match="--paired_to takes a variant"):
        mtl_experiment.main(args + ["--report_only=true", "--paired_to=joint_1:4"])
    with pytest.raises(FileNotFoundError, match="train_mlm.py"):
        mtl_experiment.main(args[:0] + ["--backbones=mini=/nonexistent"] + args[1:])


def test_paired_difference_pairs_by_seed_and_gives_a_t_interval():
    # seeds 3, 1, 2 against a baseline listed as 1, 2, 3: differences 0.02, 0.04, 0.03
    mean, half, n = mtl_experiment.paired_difference([0.53, 0.54, 0.53], [0.50, 0.50, 0.51], [3, 1, 2], [1, 2, 3])
    assert n == 3 and mean == pytest.approx(0.03)
    assert half == pytest.approx(4.303 * 0.01 / np.sqrt(3))  # sd of (0.02, 0.04, 0.03) is 0.01; t(0.975, 2) = 4.303
    # a seed the baseline lacks is left out; one pair gives no interval
    assert mtl_experiment.paired_difference([0.6, 0.7], [0.5], [1, 2], [1]) == (pytest.approx(0.1), None, 1)


def test_seconds_per_step_sums_the_phases_and_skips_the_first_steps(tmp_path):
    # separate's two phases: 0.5 s/step and 0.25 s/step after step 2 (steps 1-2 are slower warm-up)
    (tmp_path / "arxiv_log.csv").write_text("step,elapsed_s,learning_rate\n1,3.0,0\n2,4.0,0\n3,4.5,0\n4,5.0,0\n5,5.5,0\n")
    (tmp_path / "scierc_log.csv").write_text("step,elapsed_s,learning_rate\n1,2.0,0\n2,2.5,0\n3,2.75,0\n5,3.25,0\n")
    assert mtl_experiment.seconds_per_step(tmp_path) == pytest.approx(0.75)


def test_time_steps_times_every_strategy_and_prices_the_grid(tmp_path, capsys):
    fixture = write_fixture(tmp_path / "data")
    per_step = mtl_experiment.time_strategies(mtl_experiment.parse_overrides(mtl_experiment.DEFAULTS, [
        f"--backbones=tiny={fixture / 'init'}", "--strategies=joint,separate", "--imbalanced_extra=", "--seeds=1,2",
        "--time_steps=5", "--max_steps=1000", "--batch_size=2", "--arxiv_train_limit=20", "--threads=1",
        f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}"]))
    assert set(per_step) == {("tiny", "joint"), ("tiny", "separate")} and all(v >= 0 for v in per_step.values())  # a tiny step can log 0.0 s
    printed = capsys.readouterr().out
    hours = 2 * 2 * 1000 * (per_step["tiny", "joint"] + per_step["tiny", "separate"]) / 3600  # 2 data x 2 seeds
    assert f"the grid: 8 runs of 1000 steps, about {hours:.1f} hours" in printed
    assert not list((tmp_path / "grid").glob("tiny_*"))  # nothing of the grid itself ran


def test_best_dev_steps_is_the_tested_checkpoint_of_each_phase(tmp_path):
    header = "step,elapsed_s,dev_score,dev_arxiv\n"
    (tmp_path / "arxiv_log.csv").write_text(header + "1,0.1,,\n2,0.2,0.5,0.5\n3,0.3,,\n4,0.4,0.7,0.7\n6,0.6,0.6,0.6\n")
    (tmp_path / "scierc_log.csv").write_text(header + "2,0.2,0.3,0.3\n4,0.4,0.3,0.3\n")  # a tie keeps the first
    assert mtl_experiment.best_dev_steps(tmp_path) == [4, 2]


def test_grid_runs_balanced_and_imbalanced_extras_only_in_their_case(tmp_path):
    fixture = write_fixture(tmp_path / "data")
    s = mtl_experiment.parse_overrides(mtl_experiment.DEFAULTS, [
        f"--backbones=tiny={fixture / 'init'}", "--strategies=joint", "--balanced_extra=frozen,separate",
        "--imbalanced_extra=joint_1:10", "--seeds=1"])
    assert [run["name"] for run in mtl_experiment.grid(s)] == [
        "tiny_balanced_joint_s1", "tiny_balanced_frozen_s1", "tiny_balanced_separate_s1",
        "tiny_scierc10_joint_s1", "tiny_scierc10_joint_1:10_s1"]


def test_a_run_stopped_mid_way_resumes_from_its_checkpoint(tmp_path):
    fixture = write_fixture(tmp_path / "data")
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint", "--imbalanced_extra=", "--data=balanced",
            "--seeds=1", "--max_steps=4", "--batch_size=2", "--eval_every=2", "--arxiv_train_limit=20",
            "--eval_limit=0", "--threads=1", f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}",
            f"--results={tmp_path / 'RESULTS.md'}", f"--figures={tmp_path / 'img'}"]
    mtl_experiment.main(args + ["--train_args=--unfreeze_every=15 --stop_at_step=2"])  # as if killed after step 2
    run_dir = tmp_path / "grid" / "tiny_balanced_joint_s1"
    assert not (run_dir / "results.json").is_file() and list(run_dir.glob("checkpoint*.pt"))
    mtl_experiment.main(args)
    log = (run_dir / "train_mtl.log").read_text()
    assert "stopping at step 2" in log and "resumed at step 2" in log  # one log, both parts
    assert (run_dir / "results.json").is_file()


def test_parallel_jobs_finish_every_run_and_a_failure_stops_new_ones(tmp_path):
    fixture = write_fixture(tmp_path / "data")
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint", "--imbalanced_extra=", "--seeds=1,2",
            "--max_steps=2", "--batch_size=2", "--eval_every=2", "--arxiv_train_limit=20", "--eval_limit=0",
            "--threads=1", f"--data_dir={fixture}", f"--results={tmp_path / 'RESULTS.md'}",
            f"--figures={tmp_path / 'img'}", "--train_args=--unfreeze_every=1 --test_limit=4", "--jobs=2"]
    mtl_experiment.main(args + [f"--out={tmp_path / 'grid'}"])
    names = {run["name"] for run in mtl_experiment.grid(mtl_experiment.parse_overrides(mtl_experiment.DEFAULTS, args))}
    assert len(names) == 4 and all((tmp_path / "grid" / name / "results.json").is_file() for name in names)
    main_table = (tmp_path / "RESULTS.md").read_text().split("Paired differences to joint 1:1")[0]
    rows = [line for line in main_table.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 2 and all(row.split("|")[9].strip() == "2" for row in rows)  # both seeds of every cell
    # every run fails (an unknown setting): the first two start, the rest never do
    with pytest.raises(ChildProcessError, match=r"2 runs failed: .*tiny_balanced_joint_s1 \(exit 2: .*; its log is .*train_mtl.log"):
        mtl_experiment.main(args[:-2] + ["--train_args=--no_such_setting=1", "--jobs=2", f"--out={tmp_path / 'bad'}"])
    assert len(list((tmp_path / "bad").iterdir())) == 2


def test_every_variant_is_a_valid_train_mtl_command():
    """A typo in a variant's settings would only show when its runs start, maybe hours into a
    grid; train_mtl.py's own checks catch it here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import train_mtl
    from minibert.overrides import parse_overrides
    from minibert.training import check_settings

    for name, args in mtl_experiment.VARIANTS.items():
        settings = parse_overrides(train_mtl.DEFAULTS, args)
        check_settings(settings, choices=train_mtl.CHOICES)
        assert train_mtl.chosen_strategy(settings) is not None, name
    assert parse_overrides(train_mtl.DEFAULTS, mtl_experiment.VARIANTS["gradnorm_alpha0"])["gradnorm_alpha"] == 0.0


def test_stopping_the_grid_stops_the_runs_it_started(tmp_path):
    """A grid stopped by `kill` (SIGTERM reaches only its own process) takes its runs with it:
    left alone they would go on in the background, and a second grid started over them would
    train the same runs into the same folders at once."""
    fixture = write_fixture(tmp_path / "data")
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint", "--imbalanced_extra=", "--seeds=1",
            "--max_steps=100000", "--batch_size=2", "--eval_every=100000", "--arxiv_train_limit=20",
            "--eval_limit=0", "--threads=1", f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}",
            f"--results={tmp_path / 'RESULTS.md'}", f"--figures={tmp_path / 'img'}",
            "--train_args=--unfreeze_every=1", "--jobs=2"]
    printed = tmp_path / "grid.log"
    with open(printed, "w") as out:
        grid = subprocess.Popen([sys.executable, mtl_experiment.__file__, *args], stdout=out, stderr=subprocess.STDOUT)
    pids, deadline = [], time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline and grid.poll() is None:
        time.sleep(0.2)  # both runs started: "[1/2] tiny_balanced_joint_s1 ... (pid 1234)"
        pids = [int(line.rsplit("(pid ", 1)[1].rstrip(")")) for line in printed.read_text().splitlines() if "(pid " in line]
    grid.send_signal(signal.SIGTERM)
    grid.wait(timeout=60)
    assert len(pids) == 2, f"the grid did not say which processes it started:\n{printed.read_text()}"
    assert grid.returncode != 0 and "stopped by SIGTERM" in printed.read_text()
    time.sleep(0.5)
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
            alive.append(pid)
            os.kill(pid, signal.SIGKILL)  # do not leave it training after a failed test
        except ProcessLookupError:
            pass
    assert not alive, f"runs {alive} went on after their grid was stopped"


def grid_args(tmp_path, *extra):
    """Settings of a one-run grid whose backbone is only a config.json: enough for every
    check made before a run starts."""
    init = tmp_path / "init"
    init.mkdir(exist_ok=True)
    (init / "config.json").write_text("{}")
    return [f"--backbones=tiny={init}", "--strategies=joint", "--imbalanced_extra=", "--data=balanced", "--seeds=1",
            f"--out={tmp_path / 'grid'}", f"--results={tmp_path / 'RESULTS.md'}", f"--figures={tmp_path / 'img'}",
            *extra]


@pytest.mark.parametrize("extra, message", [
    (["--jobs=0"], "--jobs must be >= 1 (runs at once), got 0"),  # waited forever, running nothing
    (["--seeds=1,a"], "--seeds takes whole numbers separated by commas, got '1,a'"),  # int() said "invalid literal"
    (["--data="], "the grid has no runs: --data is empty; give one or more ['balanced', 'scierc10']"),
    (["--strategies=", "--imbalanced_extra="], "the grid has no runs: --strategies is empty; give one or more variants"),
    (["--strategies=joint,joint"], "tiny_balanced_joint_s1 comes twice in the grid"),  # two runs in one folder
    (["--data=balanced,scierc10", "--imbalanced_extra=joint"], "tiny_scierc10_joint_s1 comes twice in the grid"),
    (["--backbones=tiny={init},tiny={init}"], "--backbones names tiny twice"),  # the first was dropped silently
])
def test_bad_grid_settings_stop_before_any_run(tmp_path, extra, message):
    args = grid_args(tmp_path)
    extra = [e.replace("{init}", str(tmp_path / "init")) for e in extra]
    with pytest.raises(ValueError) as error:
        mtl_experiment.main(args + extra)
    assert message in str(error.value)
    assert not (tmp_path / "grid").exists()


def test_the_command_line_gives_a_one_line_error(tmp_path):
    finished = subprocess.run([sys.executable, mtl_experiment.__file__, *grid_args(tmp_path, "--strategies=jiont")],
                              capture_output=True, text=True)
    assert finished.returncode == 2 and "Traceback" not in finished.stderr
    assert finished.stderr.startswith("mtl_experiment.py: error: unknown variant 'jiont' in --strategies")


def fake_run(tmp_path, accuracy=0.5):
    """The finished run of grid_args' grid, with only the files and fields the report reads."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import train_mtl

    s = mtl_experiment.parse_overrides(mtl_experiment.DEFAULTS, grid_args(tmp_path))
    run = mtl_experiment.grid(s)[0]
    run_dir = Path(s["out"]) / run["name"]
    run_dir.mkdir(parents=True)
    settings = mtl_experiment.parse_overrides(train_mtl.DEFAULTS, mtl_experiment.command(s, run, run_dir)[2:])
    (run_dir / "results.json").write_text(json.dumps({"settings": settings,
        "phases": {"joint": {"final_task_weights": [1.0, 1.0]}}, "trainable_parameters": 1000, "wall_time_s": 1.0,
        "test": {"arxiv": {"accuracy": accuracy, "macro_f1": 0.4}, "scierc": {"f1": 0.3}}}))
    (run_dir / "joint_log.csv").write_text("step,elapsed_s,dev_score\n2,0.1,0.5\n")


BEGIN, END = mtl_experiment.BEGIN, mtl_experiment.END


@pytest.mark.parametrize("text, message", [
    (f"# R\n{BEGIN}\nold table\n\nnotes\n", f"holds {BEGIN} without {END}"),  # the next rewrite cut the notes out
    (f"# R\n{END}\nnotes\n", f"holds {END} without {BEGIN}"),
    (f"{END}\nnotes\n{BEGIN}\n", f"{END} comes before {BEGIN}"),  # the rewrite doubled the notes
    (f"{BEGIN}\n{END}\nnotes\n{BEGIN}\n{END}\n", f"holds {BEGIN} 2 times"),
])
def test_a_results_file_with_broken_markers_is_left_alone(tmp_path, text, message):
    results = tmp_path / "RESULTS.md"
    results.write_text(text)
    fake_run(tmp_path)
    with pytest.raises(ValueError) as error:
        mtl_experiment.main(grid_args(tmp_path, "--report_only=true"))
    assert str(error.value).startswith(f"--results={results} {message}; mend the markers")
    assert results.read_text() == text


def test_a_results_file_that_cannot_be_written_stops_the_grid_before_any_run(tmp_path):
    # it was found when the first run had finished, maybe hours later
    nowhere = tmp_path / "no_folder" / "RESULTS.md"
    with pytest.raises(FileNotFoundError, match=f"--results={nowhere}: the folder {nowhere.parent} does not exist"):
        mtl_experiment.main(grid_args(tmp_path, f"--results={nowhere}"))
    with pytest.raises(IsADirectoryError, match=f"--results={tmp_path} is a folder; give a markdown file"):
        mtl_experiment.main(grid_args(tmp_path, f"--results={tmp_path}"))
    assert not (tmp_path / "grid").exists()


def test_report_only_without_finished_runs_says_so(tmp_path, capsys):
    # it printed "table written to ..." and wrote nothing (an --out with a typo, say)
    with pytest.raises(FileNotFoundError, match=r"--report_only: no run of this grid has finished in --out=.*grid "
                                                r"\(none of its 1 run folders holds a results.json\)"):
        mtl_experiment.main(grid_args(tmp_path, "--report_only=true"))
    assert "table written" not in capsys.readouterr().out and not (tmp_path / "RESULTS.md").exists()
    fake_run(tmp_path, accuracy=0.625)
    mtl_experiment.main(grid_args(tmp_path, "--report_only=true"))
    assert "| tiny | balanced | joint | 1,000 | 1 | 0.625 | 0.400 | 0.300 | 1 | 2 |" in (tmp_path / "RESULTS.md").read_text()


def test_a_second_grid_on_the_same_out_stops_and_leaves_the_first_ones_runs_alone(tmp_path):
    """It started the same runs: train_mtl.py's lock refused each, but only after the grid had
    emptied its log, and the second grid reported them as failed runs."""
    import socket

    out = tmp_path / "grid"
    log = out / "tiny_balanced_joint_s1" / "train_mtl.log"
    log.parent.mkdir(parents=True)
    log.write_text("the first grid's run, training\n")
    # the first grid: this very process, which is running
    (out / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "then"}))
    with pytest.raises(FileExistsError) as error:
        mtl_experiment.main(grid_args(tmp_path))
    assert str(error.value).startswith(f"--out={out} is in use by process {os.getpid()} on {socket.gethostname()}")
    assert "use another --out" in str(error.value)
    assert log.read_text() == "the first grid's run, training\n"


def test_a_failed_run_is_shown_with_its_name_and_the_end_of_its_log(tmp_path, capsys):
    """It said only "failed (exit 2); see <log>", and the grid ended in a traceback."""
    with pytest.raises(ChildProcessError) as error:
        mtl_experiment.main(grid_args(tmp_path, "--train_args=--no_such_setting=1"))
    log = tmp_path / "grid" / "tiny_balanced_joint_s1" / "train_mtl.log"
    assert str(error.value) == (f"1 run failed: tiny_balanced_joint_s1 (exit 2: train_mtl.py: error: unknown setting "
                                f"--no_such_setting); its log is {log}")
    printed = capsys.readouterr().out
    assert f"tiny_balanced_joint_s1 failed (exit 2); the end of {log}:\n" \
           "    | train_mtl.py: error: unknown setting --no_such_setting\n" in printed


def test_ctrl_c_lets_the_runs_write_their_checkpoint(tmp_path):
    """Ctrl-C reaches the terminal's whole foreground group: the runs began to finish their
    step and write a checkpoint, and the grid killed them at once (SIGTERM), so the work since
    their last checkpoint was lost. Now the runs get one SIGINT from the grid alone."""
    fixture = write_fixture(tmp_path / "data")
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint", "--imbalanced_extra=", "--data=balanced",
            "--seeds=1", "--max_steps=100000", "--batch_size=2", "--eval_every=100000", "--arxiv_train_limit=20",
            "--eval_limit=0", "--threads=1", f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}",
            f"--results={tmp_path / 'RESULTS.md'}", f"--figures={tmp_path / 'img'}", "--train_args=--unfreeze_every=1"]
    run_dir = tmp_path / "grid" / "tiny_balanced_joint_s1"
    printed = tmp_path / "grid.log"
    with open(printed, "w") as out:  # its own process group, as a terminal's foreground job
        grid = subprocess.Popen([sys.executable, mtl_experiment.__file__, *args], stdout=out, stderr=subprocess.STDOUT,
                                process_group=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "step/s" not in ((run_dir / "train_mtl.log").read_text()
                                                           if (run_dir / "train_mtl.log").is_file() else ""):
        time.sleep(0.2)  # the run is training
    os.killpg(grid.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    try:
        grid.wait(timeout=60)
    finally:
        if grid.poll() is None:
            os.killpg(grid.pid, signal.SIGKILL)
    log = (run_dir / "train_mtl.log").read_text()
    assert "Ctrl-C: finishing this step, then writing a checkpoint" in log and list(run_dir.glob("checkpoint*.pt")), log
    assert grid.returncode == 130 and "Traceback" not in printed.read_text()
    assert "Ctrl-C: the runs stop after their step, with a checkpoint" in printed.read_text()


def test_a_finished_run_made_with_other_settings_is_not_taken_as_this_grids(tmp_path):
    """A grid rerun on the same --out with, say, more steps reused every results.json there,
    and the table showed the old runs under the new command."""
    fixture = write_fixture(tmp_path / "data")
    args = [f"--backbones=tiny={fixture / 'init'}", "--strategies=joint", "--imbalanced_extra=", "--data=balanced",
            "--seeds=1", "--batch_size=2", "--eval_every=2", "--arxiv_train_limit=20", "--eval_limit=0",
            "--threads=1", f"--data_dir={fixture}", f"--out={tmp_path / 'grid'}", f"--results={tmp_path / 'R.md'}",
            f"--figures={tmp_path / 'img'}", "--train_args=--unfreeze_every=1 --test_limit=4"]
    mtl_experiment.main(args + ["--max_steps=2"])
    results = tmp_path / "grid" / "tiny_balanced_joint_s1" / "results.json"
    stamp = results.stat().st_mtime_ns
    for extra in ([], ["--report_only=true"]):
        with pytest.raises(ValueError) as error:
            mtl_experiment.main(args + ["--max_steps=4", "--threads=2", *extra])  # threads: the speed, not the run
        assert str(error.value) == (f"{results.parent} finished with other settings than this grid gives it "
                                    f"(max_steps 2 there, 4 here); use another "
                                    f"--out, or delete the run's folder to run it again")
    assert results.stat().st_mtime_ns == stamp
    # a results.json that train_mtl.py did not write: an --out that holds something else
    results.write_text("{}")
    with pytest.raises(ValueError, match=f"{results} is not the results of a train_mtl.py run"):
        mtl_experiment.main(args + ["--max_steps=2", "--report_only=true"])


def test_a_run_still_going_from_an_earlier_grid_keeps_its_log(tmp_path):
    """A grid killed outright leaves its runs training (each in its own process group). A new
    grid on the same --out started them again and emptied their logs before train_mtl.py's own
    lock refused them: the running one's log was lost."""
    import socket

    run_dir = tmp_path / "grid" / "tiny_balanced_joint_s1"
    run_dir.mkdir(parents=True)
    (run_dir / "train_mtl.log").write_text("the earlier grid's run, training\n")
    (run_dir / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "then"}))
    with pytest.raises(ChildProcessError, match="1 run failed: tiny_balanced_joint_s1"):
        mtl_experiment.main(grid_args(tmp_path))
    log = (run_dir / "train_mtl.log").read_text()
    assert log.startswith("the earlier grid's run, training\n--- mtl_experiment.py: starting "), log
    assert f"is in use by process {os.getpid()}" in log, log
