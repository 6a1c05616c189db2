"""Which pretraining recipe learns most per minute on this machine: held-out loss and
context gain against wall-clock time, for several train_mlm.py settings at one time budget.

    python bench/mlm_recipes.py                          # every recipe below, 5 minutes each
    python bench/mlm_recipes.py --recipes=mini_v30k,tiny_v8k --minutes=3
    python bench/mlm_recipes.py --report_only=true       # redraw the figure and table from finished runs

Each recipe is `python train_mlm.py ...` in its own process (one heavy job at a time), on
the whole arXiv corpus, with its log in out/<recipe>/log.csv. A recipe whose model exists
is not run again. Every recipe is evaluated on the same held-out documents (the split
depends only on the seed) and about the same number of held-out sequences, so the curves
compare. The context gain (train_mlm.py) is the held-out loss's distance below a unigram
model under the recipe's own vocabulary: it compares vocabularies, which accuracy does not.
"""

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minibert.overrides import parse_overrides  # noqa: E402
from minibert.plots import pyplot, read_log  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# name -> train_mlm.py settings that differ from its defaults (batch_size must be given).
RECIPES = {
    # the recipe before this study: mini, BERT's vocabulary size, float32, batch 32 at 5e-4
    "mini_v30k": ["--preset=mini", "--vocab_size=30522", "--batch_size=32", "--learning_rate=5e-4"],
    "mini_v8k_bf16_lr1e-3": ["--preset=mini", "--vocab_size=8000", "--dtype=bfloat16", "--batch_size=32",
                             "--learning_rate=1e-3"],
    "tiny_v8k_bf16_lr1e-3": ["--preset=tiny", "--vocab_size=8000", "--dtype=bfloat16", "--batch_size=32",
                             "--learning_rate=1e-3"],
    "tiny_v8k_bf16_lr2e-3": ["--preset=tiny", "--vocab_size=8000", "--dtype=bfloat16", "--batch_size=32",
                             "--learning_rate=2e-3"],
    "tiny_v8k_bf16_b128_lr2e-3": ["--preset=tiny", "--vocab_size=8000", "--dtype=bfloat16", "--batch_size=128",
                                  "--learning_rate=2e-3"],
    "tiny_v8k_bf16_lr2e-3_dropout0": ["--preset=tiny", "--vocab_size=8000", "--dtype=bfloat16", "--batch_size=32",
                                      "--learning_rate=2e-3", "--dropout=0"],
}

DEFAULTS = dict(
    recipes=",".join(RECIPES),
    minutes=5.0,
    evaluations=12,           # about this many held-out evaluations per run
    eval_sequences=640,       # held-out sequences per evaluation, whatever the batch size
    extra="",                 # more train_mlm.py settings for every recipe, e.g. "--dtype=bfloat16"
    threads=2,
    data_dir="",
    out="runs/recipes",
    figure="docs/img/mlm_recipes.png",
    report_only=False,
)


def batch_size_of(recipe):
    return int(next(arg for arg in RECIPES[recipe] if arg.startswith("--batch_size=")).split("=")[1])


def run(settings, recipe):
    run_dir = Path(settings["out"]) / recipe
    if (run_dir / "model" / "model.safetensors").is_file():
        return
    batch_size = batch_size_of(recipe)
    # Evaluations every few steps: a first guess of the step rate (tokens/s grows with a
    # smaller model and vocabulary) is refined by nothing; 12 points are enough for a curve.
    steps_guess = {"tiny": 8.0, "mini": 1.6}[next(a for a in RECIPES[recipe] if a.startswith("--preset=")).split("=")[1]]
    steps_guess *= 32 / batch_size
    eval_every = max(10, int(settings["minutes"] * 60 * steps_guess / settings["evaluations"]))
    command = [sys.executable, str(ROOT / "train_mlm.py"), *RECIPES[recipe], f"--max_minutes={settings['minutes']}",
               "--max_steps=10000000", f"--eval_every={eval_every}",
               f"--eval_batches={math.ceil(settings['eval_sequences'] / batch_size)}",
               f"--checkpoint_every={eval_every * 4}", f"--threads={settings['threads']}",
               f"--run_dir={run_dir}", f"--out_dir={run_dir / 'model'}", "--overwrite=true",
               *([f"--data_dir={settings['data_dir']}"] if settings["data_dir"] else []), *settings["extra"].split()]
    print(f"{recipe}: {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    with open(Path(settings["out"]) / f"{recipe}.out", "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise RuntimeError(f"{recipe} failed (exit {finished.returncode}); see {settings['out']}/{recipe}.out")
    print(f"    done in {time.perf_counter() - started:.0f} s", flush=True)


def report(settings, recipes):
    logs = {r: read_log(Path(settings["out"]) / r / "log.csv") for r in recipes
            if (Path(settings["out"]) / r / "log.csv").is_file()}
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for recipe, log in logs.items():
        keep = np.isfinite(log["eval_loss"])
        minutes = log["elapsed_s"][keep] / 60
        axes[0].plot(minutes, log["eval_loss"][keep], marker=".", label=recipe)
        axes[1].plot(minutes, log["context_gain"][keep], marker=".", label=recipe)
    axes[0].set_ylabel("held-out MLM loss (nats)")
    axes[1].set_ylabel("context gain (nats) = unigram loss - held-out loss")
    axes[1].axhline(0, color="grey", lw=0.8)
    for axis in axes:
        axis.set_xlabel("training minutes (evaluation not counted)")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"MLM pretraining recipes on this machine, {settings['minutes']:g} minutes each")
    fig.tight_layout()
    Path(settings["figure"]).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(settings["figure"], dpi=110)
    plt.close(fig)

    print("\n| recipe | settings | steps | tokens | tokens/s | held-out loss | unigram loss | context gain | accuracy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for recipe, log in logs.items():
        last = np.flatnonzero(np.isfinite(log["eval_loss"]))[-1]
        tokens, elapsed = log["tokens"][last], log["elapsed_s"][last]
        print(f"| {recipe} | `{' '.join(a[2:] for a in RECIPES[recipe])}` | {int(log['step'][last]):,} | "
              f"{int(tokens):,} | {tokens / elapsed:,.0f} | {log['eval_loss'][last]:.3f} | "
              f"{log['unigram_loss'][last]:.3f} | **{log['context_gain'][last]:.2f}** | "
              f"{log['eval_accuracy'][last]:.3f} |")
    print(f"\nfigure: {settings['figure']}")


def main(argv=None):
    settings = parse_overrides(DEFAULTS, sys.argv[1:] if argv is None else argv)
    recipes = [r for r in settings["recipes"].split(",") if r]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise ValueError(f"--recipes: unknown {unknown}; known: {', '.join(RECIPES)}")
    Path(settings["out"]).mkdir(parents=True, exist_ok=True)
    if not settings["report_only"]:
        for recipe in recipes:
            run(settings, recipe)
    report(settings, recipes)


if __name__ == "__main__":
    main()
