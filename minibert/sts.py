"""Semantic textual similarity: how well do cosine similarities of sentence embeddings
rank sentence pairs the way people scored them?

STS Benchmark (Cer et al. 2017): pairs scored 0-5 by annotators. The usual measure for
embeddings is Spearman's rank correlation between cosine similarity and the gold score
(x 100 in papers); the official one is Pearson's. Both are written here from their
definitions, ties in Spearman getting the average of the ranks they span.

`evaluate_sts` takes anything with an `encode` (a SentenceEmbedder); the command that
scores a model directory is `python -m minibert.embedder --model DIR --sts test`.
"""

import math

import numpy as np

from .paths import data_file


def average_ranks(values):
    """Ranks 1..n, tied values sharing the mean of their ranks; all NaN if any value is NaN
    (NaN has no place in an order), as scipy's rankdata.

    >>> average_ranks(np.array([10, 20, 20, 5]))
    array([2. , 3.5, 3.5, 1. ])
    """
    values = np.asarray(values)
    if np.isnan(values).any():
        return np.full(len(values), np.nan)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Runs of equal values: [first, last) index pairs in sorted order. (!= rather than
    # np.diff: inf - inf is NaN, which would split a run of infinities.)
    boundaries = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    run_starts = np.concatenate([[0], boundaries])
    run_ends = np.concatenate([boundaries, [len(values)]])
    for start, end in zip(run_starts, run_ends):
        ranks[order[start:end]] = (start + 1 + end) / 2  # mean of ranks start+1 .. end
    return ranks


def pearson(x, y):
    """NaN where the correlation is undefined, as scipy's pearsonr: a side that is constant,
    or a value that is NaN or infinite (the cosines of a model whose weights diverged)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("pearson needs two sequences of the same length, at least 2")
    # Tested exactly: the mean of n equal floats need not equal them, and the n equal crumbs
    # left by subtracting it would correlate (about 1e-17) with anything.
    if (x == x[0]).all() or (y == y[0]).all() or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    # Each side divided by its largest deviation: squares of 1e-300 or 1e300 would
    # underflow or overflow, and r does not change with the scale of a side.
    x, y = x / np.abs(x).max(), y / np.abs(y).max()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def spearman(x, y):
    """Pearson correlation of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


def sts_path(split, data_dir=None):
    return data_file(f"sts/stsbenchmark/sts-{split}.csv", data_dir)


def read_sts(split="test", data_dir=None):
    """-> (sentences1, sentences2, scores) of STS-B's sts-{split}.csv.

    The files are tab-separated with stray quotes inside sentences, so each line is split
    on tabs by hand (a CSV reader would swallow quotes). Some lines carry two extra
    licence columns, hence the [:7]. Lines are cut at "\n" only: Python's text mode also
    cuts at a lone "\r", which can sit inside a sentence. Blank lines (a file's last, say)
    are skipped; any other line that is not two sentences and a score in [0, 5] stops the
    reading, named by file and line, as does a file of fewer than two pairs.
    """
    path = sts_path(split, data_dir)
    first, second, scores = [], [], []
    with open(path, "rb") as f:
        for line_number, raw_line in enumerate(f, 1):
            where = f"{path}:{line_number}"
            try:
                line = raw_line.decode("utf-8-sig" if line_number == 1 else "utf-8")  # -sig: drop a BOM
            except UnicodeDecodeError as error:
                raise ValueError(f"{where}: not valid UTF-8 at byte {error.start} of the line ({error.reason}); "
                                 f"convert the file to UTF-8") from None
            if not line.strip():
                continue
            columns = line.rstrip("\r\n").split("\t")[:7]
            if len(columns) < 7:
                raise ValueError(f"{where}: expected 7 tab-separated columns, got {len(columns)}")
            try:
                score = float(columns[4])
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise ValueError(f"{where}: the score {columns[4]!r} is not a number")
            if not 0 <= score <= 5:
                raise ValueError(f"{where}: the score {columns[4]} is outside [0, 5]")
            for number, sentence in enumerate(columns[5:7], 1):
                if not sentence.strip():
                    raise ValueError(f"{where}: sentence {number} is empty")
            scores.append(score)
            first.append(columns[5].strip())
            second.append(columns[6].strip())
    if len(scores) < 2:
        raise ValueError(f"{path}: {len(scores)} pair(s); a correlation needs at least 2")
    return first, second, np.array(scores)


def score_sts(embedder, first, second, gold, batch_size=64):
    """{"spearman": ..., "pearson": ..., "pairs": n} of cosine similarity vs gold score."""
    a = embedder.encode(first, batch_size=batch_size, normalize=True)
    b = embedder.encode(second, batch_size=batch_size, normalize=True)
    cosine = (a * b).sum(axis=1)
    return {"spearman": spearman(cosine, gold), "pearson": pearson(cosine, gold), "pairs": len(gold)}


def evaluate_sts(embedder, split="test", data_dir=None, batch_size=64):
    """score_sts on STS-B's split."""
    return score_sts(embedder, *read_sts(split, data_dir), batch_size=batch_size)
