"""Pretrain a BERT encoder with masked language modelling, from a text corpus to ./base-transformer.

    python train_mlm.py                                    # mini preset, vocabulary of 8,000, on the arXiv corpus
    python train_mlm.py --preset=tiny --max_steps=200 --corpus_lines=2000
    python train_mlm.py --max_minutes=60                   # a time budget instead of a step count
    python train_mlm.py --resume=true                      # continue from run_dir/checkpoint.pt
    torchrun --nproc_per_node=2 train_mlm.py ...           # data-parallel (minibert/distributed.py)

Every setting below can be overridden with --key=value (python train_mlm.py --help lists
them); unknown keys and values of the wrong type are errors. The loop is flat on purpose:
read it top to bottom, set a breakpoint anywhere.
"""

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from minibert import distributed
from minibert.config import BertConfig
from minibert.heads import MaskedLanguageModelingHead
from minibert.masking import Masker
from minibert.overrides import run_from_command_line
from minibert.paths import data_file
from minibert.plots import plot_training_log
from minibert.pretraining_data import TokenizedCorpus, batch_at, collate, corpus_slice, unigram_log_probs
from minibert.run_folder import claim_out_dir
from minibert.tokenizer import WordPieceTokenizer
from minibert.tokenizer_trainer import train_or_reuse_tokenizer
from minibert.training import (RESUMABLE, ProgressBar, already_past_stop, begin_run, check_losses_finite,
                               checkpoint_on_interrupt, cpu_has_bfloat16, dropout_overrides, learning_rate_at,
                               load_checkpoint, optimizer_groups, rng_states, run_progress, save_checkpoint,
                               seed_this_rank, set_learning_rate, set_rng_states, stop_requested, truncate_log)
from minibert.transformer_with_heads import TransformerWithHeads

DEFAULTS = dict(
    # data
    data_dir=None,            # folder holding pretraining/arxiv_abstracts.txt (else $MINIBERT_DATA, ../shared/data)
    corpus=None,              # comma-separated text files, one document a line (default: the arXiv corpus)
    corpus_lines=0,           # use only the first N documents, counted over all files (0 = all)
    errors="strict",          # bytes in the corpus that are not UTF-8: strict (stop, naming the line) | replace | ignore
    held_out_fraction=0.01,   # documents kept aside for evaluation
    max_seq_len=128,
    group_by_length=True,     # batches of pieces of similar length: 99% real tokens instead of 77% (batch_at)
    # tokenizer
    vocab=None,               # a directory with vocab.txt; none = train a WordPiece vocabulary first
    vocab_size=8000,          # 30,522 is BERT's; on 2 CPU cores 8,000 learns more per minute (docs/RESULTS.md 11)
    # model
    preset="mini",
    dropout=None,             # hidden and attention dropout (none = the preset's, 0.1)
    # masking
    mask_rate=0.15,
    masking="exact",          # exact | whole_word | bernoulli
    # optimisation
    batch_size=32,            # the global batch: the same whatever the number of processes (torchrun)
    accumulation_steps=1,     # micro-steps per optimizer step (each rank: batch_size / (processes * this) rows)
    learning_rate=1e-3,       # peak; the tiny preset takes 2e-3 (make demo). The recipe before RESULTS 11:
                              # --vocab_size=30522 --learning_rate=5e-4 --dtype=float32
    weight_decay=0.01,
    beta1=0.9,
    beta2=0.98,
    grad_clip=1.0,
    warmup_fraction=0.05,     # of the run (steps, or time with max_minutes)
    schedule="linear",        # linear | cosine decay after warm-up
    max_steps=20000,
    max_minutes=0.0,          # > 0: stop after this much training time; the schedule follows it
    stop_at_step=0,           # > 0: end this run after that step, as an interruption would
    # bookkeeping
    eval_every=250,
    eval_batches=20,
    checkpoint_every=250,
    run_dir="runs/mlm",
    out_dir="base-transformer",
    resume=False,
    overwrite=False,          # true: start afresh, deleting the earlier run in run_dir (see minibert/run_folder.py)
    seed=1337,
    device="auto",            # auto | cpu | cuda | mps
    dtype="auto",             # auto: bfloat16 on a CUDA card or a CPU that has it (AVX512-BF16, AMX), else float32
    compile=False,
    threads=0,                # torch CPU threads (0 = torch's choice)
)


@torch.no_grad()
def evaluate(model, corpus_ids, sequences, masker, tokenizer, settings, device, precision, unigram):
    """Held-out MLM loss and accuracy, on the same batches and masks every time, and the
    loss of the context-free model `unigram` (log-probabilities, (V,)) on the same masked tokens."""
    model.eval()
    total_loss, unigram_loss, correct, count = 0.0, 0.0, 0, 0
    generator = torch.Generator().manual_seed(settings["seed"] + 1)
    for index in range(min(settings["eval_batches"], math.ceil(len(sequences) / settings["batch_size"]))):
        rows = sequences[index * settings["batch_size"]:(index + 1) * settings["batch_size"]]
        input_ids, attention_mask = collate(corpus_ids, rows, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                            tokenizer.pad_token_id)
        masked_ids, labels = masker(input_ids, generator)
        slots = masker.max_per_sequence(input_ids.shape[1])  # as in training
        with precision.autocast():
            loss, logits = model(masked_ids.to(device), attention_mask.to(device), head="mlm", labels=labels.to(device),
                                 max_predictions=slots)
        n = int((labels != -100).sum())
        if n:  # a batch with nothing masked (bernoulli, short rows) has a NaN mean loss and adds nothing
            total_loss += loss.item() * n
        unigram_loss -= float(unigram[labels[labels != -100]].sum())
        targets = model.heads["mlm"].prediction_targets(labels, slots)  # the label of each row of logits (-100: none)
        correct += int((logits.argmax(-1).cpu() == targets).sum())
        count += n
    model.train()
    return total_loss / max(count, 1), correct / max(count, 1), unigram_loss / max(count, 1)


def main(argv=None):
    return distributed.run_script(DEFAULTS, train, argv)  # settings checked, run folder claimed, one process or torchrun's


def train(settings, context, device):
    distributed.check_batch(settings["batch_size"], context, settings["accumulation_steps"])
    if settings["dtype"] == "auto" and device.type == "cpu" and cpu_has_bfloat16():
        settings = {**settings, "dtype": "bfloat16"}  # 1.4-1.6x faster steps on such a CPU (RESULTS 11)
    run_dir, precision, say = begin_run(settings, context, device)  # checks, threads, run_dir, seed
    out_dir, checkpoint_path = Path(settings["out_dir"]), run_dir / "checkpoint.pt"
    checkpoint = load_checkpoint(checkpoint_path, settings, RESUMABLE) if settings["resume"] else None
    if checkpoint and already_past_stop(checkpoint, settings, say):  # stopped there already
        return None

    # ---- corpus and tokenizer ----
    corpus_files = [Path(p.strip()) for p in settings["corpus"].split(",") if p.strip()] if settings["corpus"] else \
        [data_file("pretraining/arxiv_abstracts.txt", settings["data_dir"])]
    for path in corpus_files:  # checked now, not once a tokenizer is trained on the files before it
        if not path.is_file():
            raise FileNotFoundError(f"--corpus={settings['corpus']}: {path} is "
                                    f"{'a folder' if path.is_dir() else 'not found'}, not a text file")
    if not corpus_files:
        raise ValueError(f"--corpus={settings['corpus']} names no file")
    corpus_names = ", ".join(str(p) for p in corpus_files)
    if settings["corpus_lines"]:  # the slice is its own file under .cache, named by its content
        slice_path = (corpus_slice(corpus_files, settings["corpus_lines"], errors=settings["errors"])
                      if context.is_main else None)
        corpus_files = [distributed.broadcast_object(slice_path, context)]
    tokenizer_dir = Path(settings["vocab"]) if settings["vocab"] else run_dir / "tokenizer"
    if settings["vocab"] and not (tokenizer_dir / "vocab.txt").is_file():
        raise FileNotFoundError(f"--vocab={settings['vocab']} has no vocab.txt")
    if not settings["vocab"] and context.is_main:  # the run's own vocabulary, trained once for its corpus and size
        train_or_reuse_tokenizer(tokenizer_dir, corpus_files, settings["vocab_size"], settings["errors"],
                                 retrain=settings["overwrite"])
    distributed.barrier(context)
    tokenizer = WordPieceTokenizer.from_pretrained(tokenizer_dir)
    if context.is_main:  # rank 0 tokenizes and caches the corpus; the others then read the cache
        corpus = TokenizedCorpus.build(corpus_files, tokenizer, errors=settings["errors"])
    distributed.barrier(context)
    if not context.is_main:
        corpus = TokenizedCorpus.build(corpus_files, tokenizer, errors=settings["errors"])
    if checkpoint is not None and checkpoint.get("corpus", corpus.key) != corpus.key:  # same settings, other text
        raise ValueError(f"--resume=true, but the text of {corpus_names} or the vocabulary differs from the one "
                         f"the checkpoint was trained on: restore them, or start afresh with --overwrite=true")
    train_docs, held_out_docs = corpus.split(settings["held_out_fraction"], seed=settings["seed"])
    train_sequences = train_docs.sequences(settings["max_seq_len"])
    held_out_sequences = held_out_docs.sequences(settings["max_seq_len"])
    if len(train_sequences) < settings["batch_size"]:  # said now, before the log makes this folder a run
        raise ValueError(f"--batch_size={settings['batch_size']} needs that many training sequences, but the corpus "
                         f"gives {len(train_sequences)} ({len(train_docs)} of {len(corpus)} documents after "
                         f"--held_out_fraction={settings['held_out_fraction']}, cut at "
                         f"--max_seq_len={settings['max_seq_len']}): use a smaller batch or more text")
    say(f"corpus: {len(corpus):,} documents, {len(corpus.ids):,} tokens; train {len(train_sequences):,} "
          f"sequences, held out {len(held_out_sequences):,} (max_seq_len {settings['max_seq_len']})")
    # What a model that ignores context scores (pretraining_data.unigram_log_probs): the
    # held-out loss's distance below it, the context gain, is the measure that does not
    # depend on the vocabulary's size.
    unigram = unigram_log_probs(train_docs.token_counts(tokenizer.vocab_size), tokenizer.all_special_ids)
    if len(held_out_sequences) == 0:  # a loss over nothing would read 0.000, which looks like a perfect model
        say(f"no held-out documents ({len(corpus)} document(s) in the corpus): no held-out loss is measured")

    # ---- model and optimiser ----
    config = BertConfig.from_preset(settings["preset"], vocab_size=tokenizer.vocab_size,
                                    pad_token_id=tokenizer.pad_token_id,
                                    max_position_embeddings=max(512, settings["max_seq_len"]),
                                    **dropout_overrides(settings["dropout"]))
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    model.to(device)
    say(f"model: preset {settings['preset']}, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"device {device}, {precision.name}")
    optimizer = torch.optim.AdamW(optimizer_groups(model, settings["weight_decay"], verbose=context.is_main),
                                  lr=settings["learning_rate"],
                                  betas=(settings["beta1"], settings["beta2"]), fused=device.type == "cuda")
    masker = Masker.for_tokenizer(tokenizer, rate=settings["mask_rate"], strategy=settings["masking"])
    step, elapsed = 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, elapsed = checkpoint["step"], checkpoint["elapsed"]
        set_rng_states(checkpoint["rng"])
        precision.load_state_dict(checkpoint.get("scaler"))
        say(f"resumed from {checkpoint_path} at step {step} ({context.world_size} process(es) now)")
    seed_this_rank(settings, context, step)
    train_model = distributed.wrap(model, context, device)  # DDP with several processes
    train_model = torch.compile(train_model) if settings["compile"] else train_model

    log_path = run_dir / "log.csv"
    columns = ["step", "tokens", "elapsed_s", "learning_rate", "train_loss", "eval_loss", "eval_accuracy",
               "unigram_loss", "context_gain", "tokens_per_s"]
    if context.is_main and (checkpoint is None or not log_path.is_file()):
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(columns)
    elif context.is_main:
        truncate_log(log_path, step)  # rows logged after the checkpoint come again
    tokens_seen = checkpoint["tokens"] if checkpoint else 0

    def write_checkpoint():
        if not context.is_main:
            return
        save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed,
            "tokens": tokens_seen, "corpus": corpus.key, "settings": settings, "config": config.to_dict(),
            "rng": rng_states(), "scaler": precision.state_dict(), "recent_losses": recent_loss})

    def progress():
        return run_progress(step, settings["max_steps"], elapsed, settings["max_minutes"])

    # ---- the loop ----
    model.train()
    bar = ProgressBar(settings, step, elapsed, "pretraining", **distributed.quiet(context))
    # The train losses since the last logged row (kept in the checkpoint, so that a resumed run
    # logs the mean an uninterrupted one does), and the tokens and seconds for tokens/s.
    recent_loss, recent_tokens, recent_time = (checkpoint or {}).get("recent_losses", []), 0, 0.0
    with checkpoint_on_interrupt(checkpoint_path, say, bar) as ctrl_c:
        while progress() < 1.0:
            started = time.perf_counter()
            lr = learning_rate_at(progress(), settings["learning_rate"], settings["warmup_fraction"],
                                  settings["schedule"])
            set_learning_rate(optimizer, lr)
            rows, epoch = batch_at(step, train_sequences, settings["batch_size"], settings["seed"],
                                   lengths=train_sequences[:, 1] if settings["group_by_length"] else None)
            input_ids, attention_mask = collate(corpus.ids, rows, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                                tokenizer.pad_token_id)
            # The masks of step n depend only on (seed, n), and are drawn for the whole global
            # batch (a few integers per token) before it is shared out: a resumed run, and a run
            # on any number of processes, masks every sequence the same way.
            masked_ids, labels = masker(input_ids, torch.Generator().manual_seed(settings["seed"] * 1_000_003 + step))
            global_count = int((labels != -100).sum())
            # The MLM head predicts at this many slots per row, the most the masker picks in a
            # batch this long: no wait for the GPU to count the masked tokens (heads.py).
            slots = masker.max_per_sequence(input_ids.shape[1])
            micro_steps = distributed.micro_batches(torch.arange(len(rows)), context, settings["accumulation_steps"])
            loss_sum = torch.zeros((), device=device)  # summed on the device: no wait for the GPU per micro-step
            for micro, mine in enumerate(micro_steps):  # mine: this rank's rows of this micro-step
                count = int((labels[mine] != -100).sum())
                # Most pieces fill max_seq_len: with no padding no mask is needed, and a GPU can
                # then run its fastest attention kernel (decided here, on the host, for free).
                mask = None if attention_mask[mine].all() else attention_mask[mine].to(device)
                with distributed.sync_context(train_model, micro == len(micro_steps) - 1):
                    with precision.autocast():
                        loss, _ = train_model(masked_ids[mine].to(device), mask, head="mlm",
                                              labels=labels[mine].to(device), max_predictions=slots)
                    precision.backward(loss * distributed.share(count, global_count, context))
                if count:  # nothing masked in these rows (bernoulli, short rows): a NaN mean, no gradient
                    loss_sum += loss.detach().float() * count
            loss = distributed.mean_over_ranks(loss_sum, context) * context.world_size / global_count
            precision.step(optimizer, model.parameters(), settings["grad_clip"])
            optimizer.zero_grad(set_to_none=True)
            step += 1
            batch_tokens = int(attention_mask.sum())
            tokens_seen += batch_tokens
            duration = time.perf_counter() - started
            elapsed += duration
            if settings["max_minutes"]:  # every rank must agree on when the time is up
                elapsed = distributed.from_rank0(elapsed, context)
            step_loss = loss.item()  # NaN when nothing in the whole batch was masked: not averaged in
            if global_count:
                check_losses_finite(step, {"MLM": step_loss}, checkpoint_path)  # before this step is saved
                recent_loss.append(step_loss)
            recent_tokens += batch_tokens
            recent_time += duration
            bar.update(step, elapsed, loss=f"{step_loss:.3f}", tok_s=f"{recent_tokens / recent_time:.0f}",
                       epoch=epoch)

            # --stop_at_step is an interruption: it checkpoints, but evaluates and logs only where
            # an uninterrupted run does.
            finished = progress() >= 1.0
            if (step % settings["eval_every"] == 0 or finished) and context.is_main:
                held_out = evaluate(model, corpus.ids, held_out_sequences, masker, tokenizer, settings, device,
                                    precision, unigram) \
                    if len(held_out_sequences) else None
                train_loss = f"{np.mean(recent_loss):.4f}" if recent_loss else ""  # empty: nothing was masked
                row = [step, tokens_seen, f"{elapsed:.1f}", f"{lr:.3e}", train_loss,
                       *([f"{held_out[0]:.4f}", f"{held_out[1]:.4f}", f"{held_out[2]:.4f}",
                          f"{held_out[2] - held_out[0]:.4f}"] if held_out else ["", "", "", ""]),
                       f"{recent_tokens / recent_time:.0f}"]
                with open(log_path, "a", newline="") as f:
                    csv.writer(f).writerow(row)
                tqdm.write(f"step {step}: train loss {train_loss or '-'}, "
                           + (f"held-out loss {held_out[0]:.3f}, accuracy {held_out[1]:.3f}, "
                              f"context gain {held_out[2] - held_out[0]:.2f} nats, " if held_out else "")
                           + f"{recent_tokens / recent_time:.0f} tokens/s")
                plot_training_log(log_path, run_dir / "loss.png", title=f"MLM pretraining ({settings['preset']})",
                                  panels=(("train_loss", "eval_loss", "unigram_loss"), ("context_gain",),
                                          ("eval_accuracy",)))
                recent_loss, recent_tokens, recent_time = [], 0, 0.0
            # A Ctrl-C during this step: checkpoint it, then stop (every rank as rank 0 says).
            interrupted = bool(distributed.from_rank0(float(ctrl_c.pending), context))
            if step % settings["checkpoint_every"] == 0 or finished or step == settings["stop_at_step"] or interrupted:
                write_checkpoint()
            if stop_requested(step, settings, say, interrupted):
                return None

    if not context.is_main:
        return out_dir
    claim_out_dir(run_dir, out_dir)  # this run's model folder, which a resumed run may write again
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    print(f"done: {step} steps, {tokens_seen:,} tokens in {elapsed / 60:.1f} min "
          f"({tokens_seen / max(elapsed, 1e-9):.0f} tokens/s). Model written to {out_dir}/, "
          f"log {log_path}, curve {run_dir / 'loss.png'}")
    return out_dir


if __name__ == "__main__":
    run_from_command_line(main)
