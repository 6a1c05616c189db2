"""Where the time of one MLM pretraining step goes, piece by piece (CPU or GPU).

train_mlm.py's step is: pick the batch's rows and pad them (data), choose the masked
positions (masking), forward and backward through the embeddings, the encoder and the
sparse MLM head, clip the gradient norm, and take an AdamW step over every parameter
(the word-embedding table included: AdamW updates all of its rows every step, whether
they were used or not). This script times each piece on its own, with the same shapes,
then a whole step, and prints milliseconds and shares:

    python bench/profile_mlm_step.py                          # mini, vocab 30522, batch 32 x 128
    python bench/profile_mlm_step.py --vocab_size=8000
    python bench/profile_mlm_step.py --preset=tiny --dtype=bfloat16

The corpus is synthetic (random ids in documents of the arXiv corpus's mean length, 176
tokens): the cost of cutting, padding and masking depends on shapes, not on which words
they are. Medians of --steps repetitions after one warm-up.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from minibert.config import BertConfig
from minibert.heads import MaskedLanguageModelingHead
from minibert.masking import Masker
from minibert.model import additive_attention_mask
from minibert.pretraining_data import DocumentSubset, TokenizedCorpus, batch_at, collate
from minibert.training import DTYPES, Precision, optimizer_groups, pick_device
from minibert.transformer_with_heads import TransformerWithHeads

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def synthetic_corpus(vocab_size, documents=2000, mean_length=176, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.poisson(mean_length, documents).clip(1)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(len(SPECIAL), vocab_size, starts[-1]).astype(np.uint16 if vocab_size <= 65536 else np.uint32)
    return TokenizedCorpus(ids, starts)


def median_ms(function, steps, device):
    """Median wall time of `function()` in milliseconds (one warm-up call first)."""
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--vocab_size", type=int, default=30522)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    precision = Precision(args.dtype, device)

    config = BertConfig.from_preset(args.preset, vocab_size=args.vocab_size, pad_token_id=SPECIAL["pad"])
    torch.manual_seed(0)
    masker = Masker(args.vocab_size, list(SPECIAL.values()), SPECIAL["mask"], rate=0.15, strategy="exact")
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    model.to(device).train()
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.01, verbose=False), lr=1e-4, fused=device.type == "cuda")
    embedding_only = torch.optim.AdamW([model.encoder.embeddings.word_embeddings.weight], lr=1e-4,
                                       fused=device.type == "cuda")
    corpus = synthetic_corpus(args.vocab_size)
    sequences = DocumentSubset(corpus, np.arange(len(corpus))).sequences(args.seq_len)

    def data():
        rows, _ = batch_at(7, sequences, args.batch_size, seed=0)
        return collate(corpus.ids, rows, SPECIAL["cls"], SPECIAL["sep"], SPECIAL["pad"])

    input_ids, attention_mask = data()
    generator = torch.Generator().manual_seed(0)
    masked_ids, labels = masker(input_ids, generator)
    slots = masker.max_per_sequence(input_ids.shape[1])  # prediction slots per row, as train_mlm.py
    mask = None if attention_mask.all() else attention_mask.to(device)
    masked_ids, labels = masked_ids.to(device), labels.to(device)
    token_types = torch.zeros_like(masked_ids)
    embeddings, layers, head = model.encoder.embeddings, model.encoder.layers, model.heads["mlm"]
    with precision.autocast():
        hidden_in = embeddings(masked_ids, token_types).detach()
        hidden_out = hidden_in
        for block in layers:
            hidden_out = block(hidden_out, None)
        hidden_out = hidden_out.detach()

    def forward_backward(function, grad_like=None):
        with precision.autocast():
            output = function()
        if grad_like is None:  # a loss
            output.backward()
        else:
            output.backward(torch.ones_like(output))

    def encoder_pass():
        x = hidden_in.requires_grad_(True)
        additive = None if mask is None else additive_attention_mask(mask, x.dtype)
        for block in layers:
            x = block(x, additive)
        return x

    def whole_step():
        ids, attention = data()
        masked, targets = masker(ids, generator)
        step_mask = None if attention.all() else attention.to(device)
        with precision.autocast():
            loss, _ = model(masked.to(device), step_mask, head="mlm", labels=targets.to(device),
                            max_predictions=masker.max_per_sequence(ids.shape[1]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def fill_gradients():  # AdamW and clipping are timed with every gradient present, as in training
        forward_backward(lambda: model(masked_ids, mask, head="mlm", labels=labels, max_predictions=slots)[0])

    fill_gradients()
    pieces = {
        "data: batch_at + collate (pad to tensors)": lambda: data(),
        "masking (exact 15%, 80/10/10)": lambda: masker(input_ids, generator),
        "embeddings forward + backward (lookup, its gradient)": lambda: forward_backward(
            lambda: embeddings(masked_ids, token_types), grad_like=True),
        f"encoder forward + backward ({config.num_hidden_layers} blocks)": lambda: forward_backward(
            encoder_pass, grad_like=True),
        f"MLM head forward + backward (sparse decoder, {config.hidden_size} x {args.vocab_size})": lambda: (
            forward_backward(lambda: head(hidden_out.requires_grad_(True), labels=labels, max_predictions=slots)[0])),
        "clip gradient norm": lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0),
        "AdamW step, all parameters": lambda: optimizer.step(),
        f"  of which the word embeddings ({args.vocab_size} x {config.hidden_size}, dense)": lambda: (
            embedding_only.step()),
    }
    results = {name: median_ms(function, args.steps, device) for name, function in pieces.items()}
    optimizer.zero_grad(set_to_none=True)
    whole = median_ms(whole_step, args.steps, device)

    tokens = int(attention_mask.sum())
    parameters = sum(p.numel() for p in model.parameters())
    print(f"preset={args.preset} vocab={args.vocab_size} parameters={parameters:,} batch={args.batch_size}x{args.seq_len} "
          f"({tokens} real tokens, {int((labels != -100).sum())} masked) device={device} dtype={args.dtype} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    summed = sum(value for name, value in results.items() if not name.startswith("  "))
    for name, value in results.items():
        print(f"  {name:78s} {value:8.1f} ms  {value / summed:6.1%}")
    print(f"  {'sum of the pieces':78s} {summed:8.1f} ms")
    print(f"  {'whole step, measured':78s} {whole:8.1f} ms  ({tokens / whole * 1000:,.0f} tokens/s)")


if __name__ == "__main__":
    main()
