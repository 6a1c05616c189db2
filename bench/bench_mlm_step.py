"""Training throughput of one MLM step: minibert vs transformers.BertForMaskedLM (sdpa).

Both models get the same config, the same batch (15% of positions labelled) and an AdamW
step. They are timed alternately in this one process, so that whatever else the machine
is doing slows both alike; the ratio is the figure to read.

    python bench/bench_mlm_step.py                      # mini preset, batch 16 x 128
    python bench/bench_mlm_step.py --preset=tiny --steps=3
"""

import argparse
import statistics
import time

import torch

from minibert.config import BertConfig
from minibert.heads import MaskedLanguageModelingHead
from minibert.transformer_with_heads import TransformerWithHeads


def make_batch(config, batch_size, seq_len, mask_rate, seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=g)
    labels = torch.full_like(input_ids, -100)
    chosen = torch.rand(input_ids.shape, generator=g) < mask_rate
    labels[chosen] = input_ids[chosen]
    input_ids[chosen] = 4  # a [MASK]-like id
    return input_ids, torch.ones_like(input_ids), labels


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model, alternating")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import BertConfig as ReferenceConfig, BertForMaskedLM

    config = BertConfig.from_preset(args.preset, vocab_size=30522)
    torch.manual_seed(0)
    ours = TransformerWithHeads(config)
    ours.add_head("mlm", MaskedLanguageModelingHead(config))
    reference_config = ReferenceConfig(**{k: v for k, v in config.to_dict().items() if k != "fused_attention"})
    reference = BertForMaskedLM(reference_config)
    reference.config._attn_implementation = "sdpa"
    ours.train(), reference.train()
    input_ids, attention_mask, labels = make_batch(config, args.batch_size, args.seq_len, 0.15)

    def step_ours(optimizer):
        loss, _ = ours(input_ids, attention_mask, head="mlm", labels=labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def step_reference(optimizer):
        loss = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    runs = {"minibert": (step_ours, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
            "transformers": (step_reference, torch.optim.AdamW(reference.parameters(), lr=1e-4))}
    times = {name: [] for name in runs}
    for i in range(args.warmup + args.steps):
        for name, (step, optimizer) in runs.items():
            start = time.perf_counter()
            step(optimizer)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)

    tokens = args.batch_size * args.seq_len
    print(f"preset={args.preset} vocab={config.vocab_size} batch={args.batch_size}x{args.seq_len} "
          f"threads={torch.get_num_threads()} steps={args.steps} (median step time)")
    rate = {}
    for name, values in times.items():
        rate[name] = tokens / statistics.median(values)
        print(f"  {name:13s} {rate[name]:8.0f} tokens/s   ({statistics.median(values) * 1000:.0f} ms/step)")
    print(f"  ratio minibert / transformers: {rate['minibert'] / rate['transformers']:.2f}x")


if __name__ == "__main__":
    main()
