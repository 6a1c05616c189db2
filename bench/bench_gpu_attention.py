"""scaled_dot_product_attention in training on a GPU: forward + backward, backend by backend.

torch picks one of several kernels for F.scaled_dot_product_attention (cuDNN, FlashAttention-2,
memory-efficient, math). At BERT's shapes (128 tokens, heads of 64) with attention dropout the
backward is most of the attention's time in a base MLM step (docs/RESULTS.md, section 10);
this measures each kernel at that shape, on the same q, k, v (strided views of one fused
projection's output, as minibert's SelfAttention passes them), alternating, median of the calls.

What is timed is the GPU's time, not the host's: at this size the GPU runs a call's kernels in
less time than the host takes to issue them, so events around a single call would time the host
(the first version of this script did: 0.63 to 0.76 ms a call, where a base step's profile
shows 0.24 ms of attention kernels per layer). Each measurement therefore queues a sleep on the
GPU first, then --calls_per_timing calls: the host issues them all while the GPU sleeps, and the
events between the calls see only the kernels.

    python bench/bench_gpu_attention.py                      # base: 128 x 128 tokens, 12 heads of 64, bf16
    python bench/bench_gpu_attention.py --dropout=0 --dtype=float16
"""

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def kernel_refusal(kernel, q, k, v, dropout):
    """Why F.scaled_dot_product_attention cannot run forward and backward on q, k, v with this one
    kernel (the first line of torch's reason), or None if it can."""
    try:
        with sdpa_kernel(BACKENDS[kernel]):
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        y.sum().backward()
        return None
    except RuntimeError as error:
        return str(error).splitlines()[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head_size", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=30, help="timings per backend, alternating")
    parser.add_argument("--calls_per_timing", type=int, default=10)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu_attention.py measures CUDA kernels; this machine has no CUDA device")
    device, dtype = torch.device("cuda"), getattr(torch, args.dtype)
    B, T, nh, hs = args.batch_size, args.seq_len, args.heads, args.head_size
    qkv = torch.randn(B, T, 3, nh, hs, device=device, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(B, nh, T, hs, device=device, dtype=dtype)

    def step(backend):
        q, k, v = (x.transpose(1, 2) for x in qkv.unbind(2))  # 3 x (B, nh, T, hs), strided
        with sdpa_kernel(BACKENDS[backend]):
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=args.dropout)
        y.backward(grad_out)
        qkv.grad = None

    usable = []
    for name in BACKENDS:
        refusal = kernel_refusal(name, *(x.transpose(1, 2) for x in qkv.unbind(2)), args.dropout)
        qkv.grad = None
        if refusal:  # this kernel does not take these inputs here
            print(f"  {name:9s} not available: {refusal[:100]}")
        else:
            usable.append(name)
    times = {name: [] for name in usable}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(args.repeats):
        for name in usable:
            torch.cuda._sleep(50_000_000)  # ~25 ms of GPU clock cycles: longer than the host needs to queue the calls
            start.record()
            for _ in range(args.calls_per_timing):
                step(name)
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / args.calls_per_timing)
    print(f"attention forward + backward on {torch.cuda.get_device_name(device)}, torch {torch.__version__}: "
          f"{B} x {T} tokens, {nh} heads of {hs}, {args.dtype}, dropout {args.dropout}, GPU time, median of "
          f"{args.repeats} x {args.calls_per_timing} calls")
    for name in usable:
        print(f"  {name:9s} {statistics.median(times[name]):7.3f} ms per layer")


if __name__ == "__main__":
    main()
