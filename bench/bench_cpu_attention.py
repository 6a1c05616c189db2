"""scaled_dot_product_attention on a CPU: its fused kernel against its math backend, by row length.

SentenceEmbedder.encode takes the math backend for batches of up to SHORT_ROWS tokens on a
CPU (minibert/embedder.py); this is the measurement behind that number. Both backends run on
the same q, k, v, alternating, with and without a padding mask; above 1 the math backend is
the faster.

    python bench/bench_cpu_attention.py                     # 128 rows, 12 heads of 32 (all-MiniLM-L6-v2), 2 threads
    python bench/bench_cpu_attention.py --lengths=8,16,32 --repeats=50
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from minibert.embedder import SHORT_ROWS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="6,8,10,12,14,16,20,24,32,64,128", help="comma-separated row lengths")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per backend, alternating")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"scaled_dot_product_attention on the CPU: {args.batch_size} rows, {args.heads} heads of {args.head_size}, "
          f"threads={torch.get_num_threads()}, torch {torch.__version__}, median of {args.repeats} calls; "
          f"minibert's SHORT_ROWS = {SHORT_ROWS}")
    for T in [int(length) for length in args.lengths.split(",")]:
        qkv = torch.randn(args.batch_size, T, 3, args.heads, args.head_size)
        q, k, v = (x.transpose(1, 2) for x in qkv.unbind(2))  # 3 x (B, nh, T, hs), strided as in the model
        padding = torch.zeros(args.batch_size, 1, 1, T)
        padding[::2, ..., T // 2:] = torch.finfo(torch.float32).min  # every other row half padding
        for mask in (None, padding):
            def fused():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

            def math():
                with sdpa_kernel(SDPBackend.MATH):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

            times = {fused: [], math: []}
            with torch.inference_mode():
                assert torch.allclose(fused(), math(), atol=1e-5)  # the same numbers, and both warmed up
                for _ in range(args.repeats):
                    for backend in times:
                        start = time.perf_counter()
                        backend()
                        times[backend].append(time.perf_counter() - start)
            fused_ms, math_ms = (statistics.median(times[backend]) * 1e3 for backend in (fused, math))
            print(f"  T={T:4d} {'padding mask' if mask is not None else 'no mask     '}  fused {fused_ms:7.2f} ms  "
                  f"math {math_ms:7.2f} ms  math is {fused_ms / math_ms:.2f}x as fast")


if __name__ == "__main__":
    main()
