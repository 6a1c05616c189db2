"""Multi-task fine-tuning: one encoder, one head per task, any number of tasks.

    python train_mtl.py --init=base-transformer --strategy=joint                # arXiv10 + SciERC
    python train_mtl.py --init=... --strategy=gradnorm --task_fraction=scierc=0.1  # the imbalanced case
    python train_mtl.py --init=... --tasks=my_tasks.json --weights=topic=1,entities=3

The tasks are data (minibert/tasks.py): --tasks names a JSON list of classification and
tagging tasks; without it, arXiv10 + SciERC from the data directory. The strategies are
data too (STRATEGIES below): each is a few choices, acted on where they matter in the loop.

Each step draws one batch of each task. Dev metrics are measured every --eval_every steps and
the best model (mean over tasks of accuracy or span F1) is kept in run_dir/best_<phase>; at the
end it is scored on the test sets, into run_dir/results.json. minibert/loops.py has the same
steps as three plain loops, without the plumbing (tested to end with the same weights).
"""

import csv
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from minibert import distributed
from minibert.config import BertConfig
from minibert.mixture import gate_usage
from minibert.overrides import run_from_command_line
from minibert.plots import plot_heatmap, plot_training_log
from minibert.pretraining_data import batch_at
from minibert.task_weighting import GradNorm, StaticWeights, Uncertainty
from minibert.tasks import Features, builtin_tasks, parse_per_task, read_task_file
from minibert.tokenizer import WordPieceTokenizer
from minibert.training import (RESUMABLE, ProgressBar, WallClock, already_past_stop, begin_run, check_losses_finite,
                               checkpoint_on_interrupt, dropout_overrides, learning_rate_at, load_checkpoint,
                               optimizer_groups, rng_states, run_progress, save_checkpoint, seed_this_rank,
                               set_learning_rate, set_rng_states, stop_requested, truncate_log)
from minibert.transformer_with_heads import TransformerWithHeads


@dataclass
class Strategy:
    heads_only: bool = False      # which parameters train: the heads alone, on features computed once
    gradual: bool = False         # when layers open: from the top, one more every --unfreeze_every steps
    weighting: str = "static"     # how the losses combine: static (--weights), gradnorm or uncertainty
    model_per_task: bool = False  # how many models: one per task instead of one for all
    mixture: bool = False         # the top layers become experts with one gate per task


STRATEGIES = {
    "frozen": Strategy(heads_only=True),               # backbone frozen, each head trained alone
    "joint": Strategy(),                               # backbone and heads together on sum_i w_i L_i
    "gradual": Strategy(gradual=True),                 # joint, encoder layers unfrozen from the top
    "gradnorm": Strategy(weighting="gradnorm"),        # joint, weights adapted by GradNorm (Chen et al. 2018)
    "uncertainty": Strategy(weighting="uncertainty"),  # joint, weights learned as uncertainty (Kendall et al. 2018)
    "separate": Strategy(model_per_task=True),         # one model per task: the baseline for sharing
    # joint, with the top --expert_layers layers as --experts experts and one gate per task (Ma et al.
    # 2018; minibert/mixture.py); the gates' mean use per task and expert goes to results.json and gates.png
    "mmoe": Strategy(mixture=True),
}
WEIGHTINGS = ("static", "gradnorm", "uncertainty")
CHOICES = {"strategy": tuple(STRATEGIES), "weighting": WEIGHTINGS}  # checked before any work


def chosen_strategy(settings):
    """--strategy as its choices; MMoE takes its weighting from --weighting."""
    strategy = STRATEGIES[settings["strategy"]]
    if strategy.mixture:
        strategy = replace(strategy, weighting=settings["weighting"])
        if settings["top_k"] > settings["experts"]:
            raise ValueError(f"--top_k={settings['top_k']} routes each example to more experts than "
                             f"--experts={settings['experts']}; give 0 (dense gates) up to --experts")
    elif settings["weighting"] != "static" or settings["freeze_shared"] or settings["top_k"]:
        raise ValueError("--weighting, --freeze_shared and --top_k belong to --strategy=mmoe; the other "
                         "strategies name their weighting themselves (e.g. --strategy=gradnorm)")
    # Static weights mix the losses of one shared model. GradNorm and uncertainty set their own;
    # a head that trains alone (frozen, separate) has one loss, whose scale Adam undoes.
    if settings["weights"] and (strategy.weighting != "static" or strategy.heads_only or strategy.model_per_task):
        raise ValueError(f"--weights mix the task losses of one shared model: --strategy=joint, gradual or mmoe "
                         f"(with --weighting=static) use them, --strategy={settings['strategy']}"
                         + (f" --weighting={settings['weighting']}" if strategy.mixture else "") + " does not")
    return strategy


DEFAULTS = dict(
    init="base-transformer",  # pretrained model directory (ours or all-MiniLM-L6-v2)
    strategy="joint",
    tasks="",                 # a JSON task file (see minibert/tasks.py); empty = arXiv10 + SciERC from data_dir
    data_dir=None,            # folder holding classification/ and ner/ (else $MINIBERT_DATA, ../shared/data)
    dropout=None,             # hidden and attention dropout (none = the pretrained model's)
    # Per-task settings name tasks (scierc=0.1,arxiv=0.5), or give one value per task in order, or one for all.
    weights="",               # static weights (joint, gradual, mmoe): default 1 each
    task_fraction="",         # e.g. scierc=0.1: keep 10% of that task's training data
    train_limit="",           # e.g. arxiv=1600: use at most that many of its training examples (default all)
    eval_limit=0,             # score dev on at most this many examples per task (0 = all)
    test_limit=0,             # score test on at most this many (0 = all, as every reported figure is)
    cls_max_length=128,       # classification tasks: texts cut at this many tokens
    ner_max_length=128,       # tagging tasks: sentences cut into windows of this many tokens
    batch_size=16,            # per task, the global batch: the same whatever the number of processes
    accumulation_steps=1,     # micro-steps per optimizer step (not with GradNorm, which needs the step's gradient)
    learning_rate=5e-5,
    head_learning_rate=1e-3,  # frozen strategy: only heads train, so they take a larger step
    weight_decay=0.01,
    warmup_fraction=0.1,
    schedule="linear",
    max_steps=1000,
    max_minutes=0.0,
    stop_at_step=0,
    unfreeze_every=100,       # gradual
    gradnorm_alpha=1.5,
    gradnorm_lr=0.025,
    uncertainty_lr=0.0,       # learning rate of uncertainty's log-variances (0 = the network's, as in the paper)
    experts=4,                # mmoe: number of experts
    expert_layers=2,          # mmoe: how many top encoder layers each expert copies
    top_k=0,                  # mmoe: 0 = dense gates; 1 or 2 = route each example to its top experts
    balance_weight=0.0,       # mmoe: weight of the load-balancing loss (0 = off)
    weighting="static",       # mmoe: static (--weights), gradnorm or uncertainty
    freeze_shared=False,      # mmoe: freeze the embeddings and the layers below the experts
    eval_every=200,
    checkpoint_every=200,
    run_dir="runs/mtl",
    resume=False,
    overwrite=False,          # true: start afresh, deleting the earlier run in run_dir (see minibert/run_folder.py)
    seed=1337,
    device="auto",
    dtype="auto",             # auto (bfloat16 on a CUDA card that has it, else float32) | float32 | bfloat16 | float16
    threads=0,
    compile=False,            # torch.compile the model's forward pass
)


def build_model(settings, tasks, strategy):
    model = TransformerWithHeads.from_pretrained(settings["init"], **dropout_overrides(settings["dropout"]))
    for name in list(model.heads):  # start from the encoder only (an MLM head is not needed)
        del model.heads[name]
    for task in tasks:
        model.add_head(task.name, task.head(model.config))
    model.config.extra["head_labels"] = {task.name: task.label_map.names for task in tasks}
    if strategy.mixture:
        model.add_mixture(settings["experts"], settings["expert_layers"], [task.name for task in tasks],
                          top_k=settings["top_k"])
    return model


def unfreeze_groups(model):
    """Parameter groups from the top of the encoder down: last layer, ..., first layer, embeddings."""
    return [list(layer.parameters()) for layer in reversed(model.encoder.layers)] + \
        [list(model.encoder.embeddings.parameters())]


def apply_gradual_unfreezing(model, step, unfreeze_every):
    """Heads always train; encoder groups open from the top, one more every `unfreeze_every`
    steps, starting with the top layer at step 0. Returns how many groups are open."""
    groups = unfreeze_groups(model)
    open_groups = min(len(groups), 1 + step // unfreeze_every)
    for index, group in enumerate(groups):
        for p in group:
            p.requires_grad_(index < open_groups)
    return open_groups


class TaskLosses(nn.Module):
    """Every task's mean loss on its rows of one (micro-)step, in one forward call: under
    DistributedDataParallel a step must be one forward and one backward. The weighting joins
    as a submodule when it has parameters (uncertainty), so that DDP averages their gradients."""

    def __init__(self, model, tasks, weighting, features=None, balance_weight=0.0):
        super().__init__()
        self.model, self.tasks, self.features, self.balance_weight = model, tasks, features, balance_weight
        self.weighting = weighting if isinstance(weighting, nn.Module) else None

    def forward(self, rows):  # {task name: indices of training examples}
        losses = []
        for task in self.tasks:
            loss = task.loss(self.model, rows[task.name], self.features and self.features[task.name]["train"])
            if self.balance_weight:  # mixture: keep every expert in use
                loss = loss + self.balance_weight * self.model.mixture.load_balancing_loss(task.name)
            losses.append(loss)
        return losses


def main(argv=None):
    return distributed.run_script(DEFAULTS, train, argv, CHOICES)  # settings checked, run folder claimed, one process or torchrun's


def train(settings, context, device):
    # ---- settings ----
    strategy = chosen_strategy(settings)
    distributed.check_batch(settings["batch_size"], context, settings["accumulation_steps"])
    if settings["accumulation_steps"] > 1 and strategy.weighting == "gradnorm":
        raise ValueError("GradNorm adapts its weights from each step's gradients: use --accumulation_steps=1 "
                         "(with several processes the batch is still split across them)")
    run_dir, precision, say = begin_run(settings, context, device)  # checks, threads, run_dir, seed
    clock = WallClock()  # the run's time, over all its segments if it is interrupted and resumed

    # ---- tasks ----
    tasks = read_task_file(settings["tasks"]) if settings["tasks"] else builtin_tasks(settings["data_dir"])
    names = [task.name for task in tasks]
    weights = parse_per_task("--weights", settings["weights"], names, float, 1.0, lambda w: w >= 0, "a number >= 0")
    fractions = parse_per_task("--task_fraction", settings["task_fraction"], names, float, 1.0, lambda f: 0 < f <= 1,
                               "a fraction in (0, 1]")
    limits = parse_per_task("--train_limit", settings["train_limit"], names, int, 0, lambda n: n >= 0, "a count >= 0")
    # Checked against the model before any data is read: the first forward pass would fail on a
    # longer sequence, and building the experts on more layers than the model has.
    max_lengths = {"classification": "cls_max_length", "tagging": "ner_max_length"}
    config = BertConfig.from_json(Path(settings["init"]) / "config.json")
    for kind, setting in max_lengths.items():
        if settings[setting] > config.max_position_embeddings and any(task.kind == kind for task in tasks):
            raise ValueError(f"--{setting}={settings[setting]} is more than the {config.max_position_embeddings} "
                             f"positions of the model (max_position_embeddings of --init={settings['init']})")
    if strategy.mixture and settings["expert_layers"] > config.num_hidden_layers:
        raise ValueError(f"--expert_layers={settings['expert_layers']} is more than the {config.num_hidden_layers} "
                         f"layers of the model (num_hidden_layers of --init={settings['init']})")
    tokenizer = WordPieceTokenizer.from_pretrained(settings["init"])
    for task in tasks:
        task.load(tokenizer, settings[max_lengths[task.kind]], fractions[task.name], limits[task.name],
                  settings["eval_limit"], settings["test_limit"], settings["seed"])
        say(task.describe())
        if len(task.data["train"]) < settings["batch_size"]:  # every step draws one batch of each task
            raise ValueError(f"task {task.name!r} has {len(task.data['train'])} training examples (after "
                             f"--task_fraction and --train_limit), fewer than one batch of --batch_size="
                             f"{settings['batch_size']}")
    # Each task draws its batches from its own seed, the same in every phase.
    seeds = {task.name: settings["seed"] + index for index, task in enumerate(tasks)}

    # ---- one model for all tasks, or one per task ----
    results = {"settings": settings, "phases": {}}
    for group in ([[task] for task in tasks] if strategy.model_per_task else [tasks]):
        phase = f"separate_{group[0].name}" if strategy.model_per_task else settings["strategy"]
        # The new heads of every phase start from the seed, whatever ran before: the same
        # initialisation in one process and on every rank of several.
        torch.manual_seed(settings["seed"])
        model = build_model(settings, group, strategy).to(device)
        best_dir, checkpoint_path, log_path = run_dir / f"best_{phase}", run_dir / f"checkpoint_{phase}.pt", \
            run_dir / f"{phase}_log.csv"

        # which parameters train: all, or the heads only, or (mmoe --freeze_shared) not the layers below the experts
        if strategy.heads_only or (strategy.mixture and settings["freeze_shared"]):
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        # A backbone that never changes has one output per example, computed once here;
        # training the heads then costs a small matrix multiply per example instead of a
        # full encoder pass. That is why frozen training is cheap.
        features = {task.name: {split: Features(model, task.data[split], task.pooled) for split in task.data}
                    for task in group} if strategy.heads_only else None

        # how the losses combine
        if strategy.weighting == "gradnorm" and len(group) > 1:
            # W = the last shared layer's weight matrix (the top block's output projection, or
            # with every layer an expert the embeddings' LayerNorm): the paper measures each
            # task's gradient there, the cheapest place that sees all tasks. Under torchrun the
            # gradients and loss values are averaged across ranks first (GradNorm's `reduce`).
            shared = model.encoder.layers[-1].feed_forward.down.weight if len(model.encoder.layers) \
                else model.encoder.embeddings.layer_norm.weight
            weighting = GradNorm(len(group), shared, alpha=settings["gradnorm_alpha"], lr=settings["gradnorm_lr"],
                                 reduce=lambda tensor: distributed.all_reduce_mean(tensor, context))
        elif strategy.weighting == "uncertainty" and len(group) > 1:
            weighting = Uncertainty(len(group), device=device)
        else:
            weighting = StaticWeights([weights[task.name] for task in group])

        # The optimizer gets every tensor that will ever train (for gradual, also those
        # still closed at step 0: AdamW skips a tensor whose gradient is None).
        params = optimizer_groups(model, settings["weight_decay"], verbose=False)
        if isinstance(weighting, GradNorm) and not weighting.shared_weight.requires_grad:
            # Shared layers frozen (mmoe --freeze_shared): GradNorm still needs each task's
            # gradient on W, so W joins autograd, but it is given to no optimizer: it stays put.
            weighting.shared_weight.requires_grad_(True)
        if isinstance(weighting, Uncertainty):
            # At the network's learning rate a log-variance moves by at most about lr per step
            # (Adam), 0.01 in 100 steps of 1e-4: too slow for a short run. Like GradNorm's
            # weights, it can have its own rate, as a multiple of the schedule's.
            scale = settings["uncertainty_lr"] / settings["learning_rate"] if settings["uncertainty_lr"] else 1.0
            params.append({"params": list(weighting.parameters()), "weight_decay": 0.0, "lr_scale": scale})
        trainable = sum(p.numel() for g in params for p in g["params"])  # frozen: the heads; gradual: all, by the end
        say(f"{phase}: {trainable:,} trainable parameters of {sum(p.numel() for p in model.parameters()):,}")
        lr_peak = settings["head_learning_rate"] if strategy.heads_only else settings["learning_rate"]
        optimizer = torch.optim.AdamW(params, lr=lr_peak)

        step, elapsed, best = 0, 0.0, -1.0
        clock.mark(phase)
        if settings["resume"] and checkpoint_path.is_file():
            checkpoint = load_checkpoint(checkpoint_path, settings, RESUMABLE)
            if already_past_stop(checkpoint, settings, say):  # stopped there already
                return None
            # The settings match, but a data file may have changed: a head's ids must name the same labels.
            for task in group:
                saved = checkpoint.get("head_labels", {}).get(task.name, task.label_map.names)  # (older: unknown)
                if saved != task.label_map.names:
                    raise ValueError(f"--resume: task {task.name!r} has other training labels than the checkpoint: "
                                     f"new {sorted(set(task.label_map.names) - set(saved))}, gone "
                                     f"{sorted(set(saved) - set(task.label_map.names))}; restore its training file, "
                                     f"or start afresh with --overwrite=true")
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            weighting.load_state_dict(checkpoint["weighting"])
            step, elapsed, best = checkpoint["step"], checkpoint["elapsed"], checkpoint["best"]
            set_rng_states(checkpoint["rng"])
            precision.load_state_dict(checkpoint.get("scaler"))
            clock.load_state_dict(checkpoint["wall_clock"])
            say(f"{phase}: resumed at step {step} ({context.world_size} process(es) now)")
            if context.is_main:
                truncate_log(log_path, step)  # rows logged after the checkpoint come again
        elif context.is_main:
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(["step", "elapsed_s", "learning_rate", *[f"loss_{t.name}" for t in group],
                                        *[f"weight_{t.name}" for t in group], "dev_score",
                                        *[f"dev_{t.name}" for t in group]])
        seed_this_rank(settings, context, step)

        def write_checkpoint():
            if context.is_main:
                save_checkpoint(checkpoint_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed,
                    "best": best, "settings": settings, "rng": rng_states(), "scaler": precision.state_dict(),
                    "weighting": weighting.state_dict(), "wall_clock": clock.state_dict(),
                    "head_labels": {task.name: task.label_map.names for task in group}})

        def progress():
            return run_progress(step, settings["max_steps"], elapsed, settings["max_minutes"])

        # ---- the loop ----
        balance_weight = settings["balance_weight"] if strategy.mixture else 0.0
        task_losses = TaskLosses(model, group, weighting, features, balance_weight)
        # Routed experts may sit out a step: DDP must then look for parameters without a gradient.
        find_unused = strategy.mixture and settings["top_k"] > 0
        wrapped, open_groups = distributed.wrap(task_losses, context, device, find_unused), None
        if settings["compile"]:
            # GradNorm differentiates each task's loss with retain_graph=True before the network's
            # backward pass; a compiled backward frees ("donates") its saved buffers after one use.
            torch._functorch.config.donated_buffer = False
            model.compile()  # in place: the state dict keeps its names
        model.train()
        bar = ProgressBar(settings, step, elapsed, phase, **distributed.quiet(context))
        with checkpoint_on_interrupt(checkpoint_path, say, bar) as ctrl_c:
            while progress() < 1.0:
                step_started = time.perf_counter()
                lr = learning_rate_at(progress(), lr_peak, settings["warmup_fraction"], settings["schedule"])
                set_learning_rate(optimizer, lr)

                # when layers open
                if strategy.gradual:
                    now_open = apply_gradual_unfreezing(model, step, settings["unfreeze_every"])
                    if now_open != open_groups and context.distributed:
                        # DDP only averages the parameters that required a gradient when it was
                        # built, so each newly opened group needs a new wrapper (a few times a run).
                        wrapped = distributed.wrap(task_losses, context, device, find_unused)
                    open_groups = now_open

                # forward backward: one global batch of each task, the same whatever the number of processes
                rows = {t.name: batch_at(step, np.arange(len(t.data["train"])), settings["batch_size"],
                                         seeds[t.name])[0] for t in group}
                counts = {t.name: t.data["train"].count(rows[t.name]) for t in group}
                micro_rows = {t.name: distributed.micro_batches(rows[t.name], context, settings["accumulation_steps"])
                              for t in group}
                logged = torch.zeros(len(group), device=device)
                for micro in range(settings["accumulation_steps"]):
                    mine = {t.name: micro_rows[t.name][micro] for t in group}
                    with distributed.sync_context(wrapped, micro == settings["accumulation_steps"] - 1):
                        # Each loss is this rank's share of the task's mean over the global batch:
                        # averaged over ranks (by DDP) and summed over micro-steps it is that mean.
                        with precision.autocast():
                            losses = [loss * distributed.share(t.data["train"].count(mine[t.name]), counts[t.name],
                                                               context) for t, loss in zip(group, wrapped(mine))]
                        # how the losses combine
                        weights_used = weighting.current_weights()
                        total = weighting.combine(losses)
                        # GradNorm adapts its weights here, before the network's backward pass
                        weighting.update(losses, loss_scale=precision.loss_scale)
                        precision.backward(total)
                    logged += torch.stack([loss.detach().float() for loss in losses])
                losses = distributed.mean_over_ranks(logged, context)  # each task's mean loss over the global batch
                precision.step(optimizer, [p for g in optimizer.param_groups for p in g["params"]], 1.0)  # clips at 1.0
                optimizer.zero_grad(set_to_none=True)
                model.zero_grad(set_to_none=True)  # also a measured-only tensor (see GradNorm + freeze_shared)
                step += 1
                elapsed += time.perf_counter() - step_started
                if settings["max_minutes"]:  # every rank must agree on when the time is up
                    elapsed = distributed.from_rank0(elapsed, context)
                step_losses = {t.name: loss.item() for t, loss in zip(group, losses)}
                check_losses_finite(step, step_losses, checkpoint_path)  # before this step is scored or saved
                bar.update(step, elapsed, **{f"L_{name}": f"{loss:.3f}" for name, loss in step_losses.items()})

                # evaluate, log, keep the best, checkpoint
                # --stop_at_step is an interruption: it checkpoints, but scores dev (and keeps a best
                # model) only where an uninterrupted run does.
                finished = progress() >= 1.0
                dev = None
                if (step % settings["eval_every"] == 0 or finished) and context.is_main:
                    dev = {t.name: t.evaluate(model, "dev", features and features[t.name]["dev"]) for t in group}
                    main_metrics = {t.name: dev[t.name][t.main_metric] for t in group}
                    score = float(np.mean(list(main_metrics.values())))  # picks the best checkpoint
                if context.is_main:
                    with open(log_path, "a", newline="") as f:
                        csv.writer(f).writerow([step, f"{elapsed:.1f}", f"{lr:.3e}",
                                                *[f"{loss:.4f}" for loss in step_losses.values()], *[f"{w:.4f}" for w in weights_used],
                                                "" if dev is None else f"{score:.4f}",
                                                *["" if dev is None else f"{main_metrics[t.name]:.4f}" for t in group]])
                if dev is not None:
                    improved = score > best
                    if improved:
                        best = score
                        model.save_pretrained(best_dir)
                        tokenizer.save_pretrained(best_dir)
                    tqdm.write(f"{phase} step {step}: dev " + ", ".join(f"{n} {v:.4f}" for n, v in main_metrics.items())
                               + (" (best, saved)" if improved else ""))
                    plot_training_log(log_path, run_dir / f"{phase}_curves.png", title=phase, panels=(
                        [f"loss_{t.name}" for t in group], [f"weight_{t.name}" for t in group],
                        [f"dev_{t.name}" for t in group]))
                # A Ctrl-C during this step: checkpoint it, then stop (every rank as rank 0 says).
                interrupted = bool(distributed.from_rank0(float(ctrl_c.pending), context))
                if step % settings["checkpoint_every"] == 0 or finished or step == settings["stop_at_step"] \
                        or interrupted:
                    write_checkpoint()
                if stop_requested(step, settings, say, interrupted):
                    return None

        # ---- test: the best checkpoint by dev score (rank 0) ----
        if not context.is_main:
            continue
        best_model = TransformerWithHeads.from_pretrained(best_dir).to(device)
        results["phases"][phase] = {
            "trainable_parameters": trainable, "wall_time_s": clock.since(phase),
            "test": {t.name: t.evaluate(best_model, "test", features and features[t.name]["test"]) for t in group},
            "final_task_weights": weighting.current_weights()}
        if best_model.mixture is not None:
            usage = gate_usage(best_model, {t.name: t.data["dev"] for t in group})
            results["phases"][phase]["gate_usage_dev"] = usage
            plot_heatmap([usage[t.name] for t in group], [t.name for t in group],
                         [f"expert {e}" for e in range(settings["experts"])], run_dir / "gates.png",
                         title="mean gate weight on dev (row: task)")
    if not context.is_main:
        return None
    results["wall_time_s"] = clock.total()
    results["trainable_parameters"] = sum(p["trainable_parameters"] for p in results["phases"].values())
    results["test"] = {name: metrics for p in results["phases"].values() for name, metrics in p["test"].items()}
    results["unseen_labels"] = {task.name: task.unseen for task in tasks}  # dev/test labels training never had
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("test: " + "; ".join(task.summary(results["test"][task.name]) for task in tasks)
          + f". Results in {run_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    run_from_command_line(main)
