"""Training throughput of one MLM step: minibert vs transformers.BertForMaskedLM (sdpa).

Both models get the same config, the same batch (15% of each row masked), the same
autocast dtype and a fused AdamW step (on a GPU). They are timed alternately in this one
process, so that whatever else the machine is doing slows both alike; the ratio is the
figure to read. On a GPU it also prints the model FLOPs utilisation (MFU): the FLOPs the
step needs (6 per parameter per token for the matrix products, plus attention, plus the
MLM decoder at the masked positions) over the card's dense peak for the dtype.

    python bench/bench_mlm_step.py                      # mini preset, batch 16 x 128, CPU
    python bench/bench_mlm_step.py --preset=tiny --steps=3
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --preset=base --batch_size=128
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --compile=true   # minibert compiled
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --compile=true --compile_mode=reduce-overhead
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --compile=true --compile_mode=max-autotune \
        --compile_scope=block   # one encoder block compiled, its code reused by every layer: a faster compile
    python bench/bench_mlm_step.py --device=cuda --profile=true   # where minibert's step spends its time
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --dropout=0   # what dropout costs (both models)
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --compile=true --sdpa_backend=auto,flash
        # one minibert per attention kernel (torch's choice, FlashAttention-2), alternating in one process
    python bench/bench_mlm_step.py --device=cuda --dtype=bfloat16 --compile=true --residual=float32,autocast
        # minibert as it is, and with its residual stream in bfloat16 (RoundedLayerNorm)
"""

import argparse
import contextlib
import functools
import itertools
import statistics
import time

import torch
import torch.nn as nn
from torch._functorch import config as functorch_config
from torch.nn.attention import sdpa_kernel

from bench_gpu_attention import BACKENDS, kernel_refusal

from minibert.config import BertConfig
from minibert.heads import MaskedLanguageModelingHead
from minibert.masking import Masker
from minibert.training import DTYPES, Precision, pick_device
from minibert.transformer_with_heads import TransformerWithHeads

# Dense (no sparsity) peak FLOP/s of the matrix units, from the vendors' data sheets.
PEAK_FLOPS = {("H100", torch.bfloat16): 989e12, ("H100", torch.float16): 989e12, ("H100", torch.float32): 67e12,
              ("H200", torch.bfloat16): 989e12, ("H200", torch.float16): 989e12, ("H200", torch.float32): 67e12,
              ("A100", torch.bfloat16): 312e12, ("A100", torch.float16): 312e12, ("A100", torch.float32): 19.5e12}
COMPILE_MODES = ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
SPECIAL_IDS = [0, 1, 2, 3, 4]  # [PAD] [UNK] [CLS] [SEP] [MASK], as in BERT's vocab.txt


def make_batch(masker, config, batch_size, seq_len, seed=0):
    """Random ids (no padding), masked as train_mlm.py masks: exactly 15% of each row."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(len(SPECIAL_IDS), config.vocab_size, (batch_size, seq_len), generator=g)
    masked_ids, labels = masker(input_ids, g)
    return masked_ids, torch.ones_like(input_ids), labels


def choices(*allowed):
    """An argparse type: 'b' or 'a,b' -> ['b'] or ['a', 'b'], each one of `allowed`, each once."""
    def parse(text):
        chosen = text.split(",")
        if set(chosen) - set(allowed) or len(set(chosen)) != len(chosen):
            raise argparse.ArgumentTypeError(f"{text!r}: give {', '.join(allowed)}, or several of them, "
                                             f"comma-separated, each once")
        return chosen
    return parse


class RoundedLayerNorm(nn.LayerNorm):
    """A LayerNorm whose output, under autocast, is rounded to autocast's dtype.

    Under autocast minibert's LayerNorm returns float32, as transformers' does, and in a post-LN model that output is
    the residual stream: every residual add and LayerNorm then moves float32 values, forward and backward. Rounded,
    the statistics are still computed in float32, and the stream and its gradient take half the bytes (Megatron-LM's
    default). --residual=float32,autocast measures what that would give before minibert's numbers change for it."""

    def forward(self, x):
        y = super().forward(x)
        if torch.is_autocast_enabled(x.device.type):
            y = y.to(torch.get_autocast_dtype(x.device.type))
        return y


def round_residual_stream(model):
    """Every LayerNorm of model becomes a RoundedLayerNorm: the same parameters, its output rounded."""
    for module in model.modules():
        if type(module) is nn.LayerNorm:
            module.__class__ = RoundedLayerNorm
    return model


def attention_kernel(kernel):
    """A context in which F.scaled_dot_product_attention may use this one kernel ('auto': torch's choice)."""
    return contextlib.nullcontext() if kernel == "auto" else sdpa_kernel(BACKENDS[kernel])


def step_flops(config, batch_size, seq_len, masked):
    """FLOPs of one training step (forward + backward = 3 x forward), counting matrix
    products only: 2 per multiply-add."""
    H, I, L, T, V = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, seq_len,
                     config.vocab_size)
    tokens = batch_size * seq_len
    per_token_layer = 2 * (4 * H * H + 2 * H * I) + 2 * 2 * T * H  # projections, feed-forward, QK^T and AV
    head = masked * 2 * (H * H + H * V)  # transform and decoder, at the masked positions only
    return 3 * (tokens * L * per_token_layer + head)


def peak_flops(device, dtype):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for (card, kind), value in PEAK_FLOPS.items() if card in name and kind == dtype), None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model, alternating")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="autocast dtype of both models")
    parser.add_argument("--compile", default="false", choices=["true", "false"], help="torch.compile minibert's model")
    parser.add_argument("--compile_mode", default="default", choices=COMPILE_MODES,
                        help="torch.compile's mode: reduce-overhead replays the step as CUDA graphs (a GPU's kernel "
                             "launches cost no host time), max-autotune also searches matrix-product kernels")
    parser.add_argument("--compile_scope", default="step", choices=["step", "block"],
                        help="step: minibert's whole forward as one graph (what the training scripts compile); "
                             "block: each encoder block compiled alone, all twelve of base's layers reusing one "
                             "block's compiled code (compiles about 3x faster on the CPU; embeddings, MLM head and "
                             "loss stay eager): for max-autotune, whose search is slow")
    parser.add_argument("--dropout", type=float, default=None,
                        help="hidden and attention dropout of both models (default: the preset's, 0.1)")
    parser.add_argument("--sdpa_backend", default=["auto"], type=choices("auto", *BACKENDS),
                        help="the scaled_dot_product_attention kernel minibert may use: auto (torch's choice), cudnn, "
                             "flash, efficient or math; several, comma-separated (auto,flash), time one minibert per "
                             "kernel, alternating with each other and transformers (which keeps torch's choice)")
    parser.add_argument("--residual", default=["float32"], type=choices("float32", "autocast"),
                        help="float32: LayerNorm returns float32 under autocast, as minibert's does; autocast: its "
                             "output rounded to the autocast dtype (RoundedLayerNorm). Both, comma-separated, time "
                             "one minibert each (and one per attention kernel: every pair)")
    parser.add_argument("--profile", default="false", choices=["true", "false"],
                        help="print the 30 operations (on a GPU: kernels) that take most of 3 steps of each model")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # A compiled graph calls the attention kernel that was allowed when it was traced, at the model's first call.
    # AOTAutograd's cache on disk does not look at that setting, so it could load a graph traced with another
    # kernel (in work session 16 it did: every "flash" run on the GPU ran the graph that torch's choice, cuDNN, had
    # cached; pytorch/pytorch pull request 186458). With a kernel chosen here, the cache stays off.
    no_cache = functorch_config.patch(enable_autograd_cache=False)
    with no_cache if args.sdpa_backend != ["auto"] else contextlib.nullcontext():
        measure(args, parser)


def measure(args, parser):
    device = pick_device(args.device)
    precision = Precision(args.dtype, device)

    from transformers import BertConfig as ReferenceConfig, BertForMaskedLM

    dropout = {} if args.dropout is None else {"hidden_dropout_prob": args.dropout,
                                               "attention_probs_dropout_prob": args.dropout}
    config = BertConfig.from_preset(args.preset, vocab_size=30522, **dropout)
    masker = Masker(config.vocab_size, SPECIAL_IDS, mask_id=4, rate=0.15, strategy="exact")
    reference_config = ReferenceConfig(**{k: v for k, v in config.to_dict().items() if k != "fused_attention"})
    reference = BertForMaskedLM(reference_config)
    reference.config._attn_implementation = "sdpa"
    reference.to(device).train()
    kernels, residuals = args.sdpa_backend, args.residual
    variants = list(itertools.product(kernels, residuals))  # (kernel, residual): one minibert each

    def variant_name(kernel, residual):  # "minibert", or what tells it from the others: "minibert[flash]"
        parts = ([kernel] if len(kernels) > 1 else []) + ([f"{residual} residual"] if len(residuals) > 1 else [])
        return f"minibert[{', '.join(parts)}]" if parts else "minibert"

    names = {variant: variant_name(*variant) for variant in variants}
    if len(variants) > 1 and args.compile == "true" and args.compile_scope == "block":
        parser.error("--sdpa_backend or --residual with several values needs --compile_scope=step (the models' "
                     "blocks would share one compiled graph)")
    # A kernel that cannot take the model's attention here is refused now, in one line, not in a traceback at the
    # first step (or, compiled, deep inside the compiler).
    probe = torch.randn(1, config.num_attention_heads, args.seq_len, config.head_size, device=device,
                        dtype=precision.dtype, requires_grad=True)  # (1, nh, T, hs): q, k and v at once
    for kernel in kernels:
        refusal = None if kernel == "auto" else kernel_refusal(kernel, probe, probe, probe,
                                                                config.attention_probs_dropout_prob)
        if refusal:
            parser.error(f"--sdpa_backend={kernel}: {device} has no such kernel for {args.dtype} heads of "
                         f"{config.head_size} with dropout {config.attention_probs_dropout_prob} ({refusal})")
    # Dynamo's guards do not look at the kernel either: a second model would run the first one's graph. Each
    # model's MLM head is named after its variant, and the name is something the graph is guarded on.
    heads = {variant: "mlm" if variant == ("auto", "float32") else "mlm_" + "_".join(variant) for variant in variants}
    ours = {}
    for variant in variants:  # one model each, each with the same initial weights
        torch.manual_seed(0)
        model = TransformerWithHeads(config)
        model.add_head(heads[variant], MaskedLanguageModelingHead(config))
        if variant[1] == "autocast":
            round_residual_stream(model)
        ours[variant] = model.to(device).train()
        if args.compile == "true" and args.compile_scope == "block":
            for block in model.encoder.layers:  # the same code in every layer: Dynamo traces and compiles it once
                block.compile(mode=args.compile_mode)
        elif args.compile == "true":
            model.compile(mode=args.compile_mode)
    input_ids, attention_mask, labels = make_batch(masker, config, args.batch_size, args.seq_len)
    slots = masker.max_per_sequence(args.seq_len)  # the MLM head's prediction slots per row, as train_mlm.py
    # As train_mlm.py does: a batch without padding needs no mask (decided on the host).
    our_mask = None if attention_mask.all() else attention_mask.to(device)
    input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
    fused = device.type == "cuda"

    def step_ours(variant, optimizer):
        if args.compile == "true":
            torch.compiler.cudagraph_mark_step_begin()  # a new step: CUDA graphs may reuse the last one's memory
        with attention_kernel(variant[0]), precision.autocast():
            loss, _ = ours[variant](input_ids, our_mask, head=heads[variant], labels=labels, max_predictions=slots)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def step_reference(optimizer):
        with precision.autocast():
            loss = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    runs = {names[variant]: (functools.partial(step_ours, variant),
                             torch.optim.AdamW(ours[variant].parameters(), lr=1e-4, fused=fused))
            for variant in variants}
    runs["transformers"] = (step_reference, torch.optim.AdamW(reference.parameters(), lr=1e-4, fused=fused))
    times, first_step = {name: [] for name in runs}, {}
    for i in range(args.warmup + args.steps):
        for name, (step, optimizer) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step(optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
            first_step.setdefault(name, elapsed)  # compiled: mostly the compile
            if i >= args.warmup:
                times[name].append(elapsed)

    tokens = args.batch_size * args.seq_len
    flops = step_flops(config, args.batch_size, args.seq_len, int((labels != -100).sum()))
    peak = peak_flops(device, precision.dtype)
    card = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"preset={args.preset} vocab={config.vocab_size} batch={args.batch_size}x{args.seq_len} device={device}{card} "
          f"dtype={args.dtype} compile={args.compile}"
          f"{f' ({args.compile_mode}, {args.compile_scope})' if args.compile == 'true' else ''} "
          f"dropout={config.hidden_dropout_prob} attention={','.join(kernels)} residual={','.join(residuals)} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"steps={args.steps} (median step time)")
    rate, width = {}, max(map(len, times))
    for name, values in times.items():
        seconds = statistics.median(values)
        rate[name] = tokens / seconds
        mfu = f", MFU {flops / seconds / peak:.1%}" if peak else ""
        print(f"  {name:{width}s} {rate[name]:9.0f} tokens/s   ({seconds * 1000:.1f} ms/step{mfu})")
    for name in names.values():
        print(f"  ratio {name} / transformers: {rate[name] / rate['transformers']:.2f}x")
    if args.compile == "true":  # one graph a model is what CUDA graphs (reduce-overhead) can replay whole
        from torch._dynamo.utils import counters
        print(f"  minibert compiled to {counters['stats']['unique_graphs']} graph(s), "
              f"{sum(counters['graph_break'].values())} graph break(s); its first step (the compile) took "
              f"{', '.join(f'{first_step[name]:.0f}' for name in names.values())} s")

    if args.profile == "true":
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        for name, (step, optimizer) in runs.items():
            with profile(activities=activities) as profiler:
                for _ in range(3):
                    step(optimizer)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            # By self time: kernel by kernel (a compiled step's totals would only show its two graphs).
            sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(f"profile of 3 {name} steps, by {sort_by}:")
            print(profiler.key_averages().table(sort_by=sort_by, row_limit=30, max_name_column_width=90))


if __name__ == "__main__":
    main()
