"""From a text corpus to batches of token ids for masked-language-model pretraining.

1. `TokenizedCorpus.build`: tokenize every line (one document a line) once, and keep the
   ids in a flat numpy memmap on disk, with the offset where each document starts. A
   second run with the same corpus and vocabulary re-uses the cache; changing either
   changes the cache key, so a stale cache is never read.
2. `sequences`: cut each document into pieces of at most max_seq_len - 2 tokens, never
   crossing a document boundary, so that [CLS] piece [SEP] fits. A document is cut into
   equal pieces (300 tokens with room for 126 -> 100 + 100 + 100, not 126 + 126 + 48),
   which keeps padding low when a batch is padded to its longest row.
3. `batch_at`: the pieces of a given step, from a seeded random order per epoch that
   depends only on (seed, epoch), so a resumed run sees the same batches (optionally
   grouped by length, to pad less); `collate`
   puts [CLS] and [SEP] around them and pads them into tensors.
"""

import functools
import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .batching import padded
from .tokenizer_trainer import read_lines

CACHE_VERSION = 1


def file_digest(paths, extra=b""):
    """sha256 of the files' bytes (and `extra`): the identity of a corpus and a vocabulary."""
    digest = hashlib.sha256(extra)
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def read_documents(paths, errors="strict"):
    """Yield the non-empty lines of the corpus files, one document each. Bytes that are not
    UTF-8 stop the reading with an error naming the file and line (see read_lines), unless
    errors is "replace" or "ignore"."""
    for line in read_lines(paths, errors):
        line = line.strip()
        if line:
            yield line


def corpus_slice(paths, documents, cache_dir=".cache/corpus_slices", errors="strict"):
    """The first `documents` documents of the corpus files, taken in order across them, as
    one file in `cache_dir` named by the hash of its text: another corpus, an edited file or
    another count gives another file, so a slice is never read stale."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = cache_dir / f"slice.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for document in itertools.islice(read_documents(paths, errors), documents):
                out.write(document + "\n")
                digest.update(document.encode("utf-8") + b"\n")
        path = cache_dir / f"{digest.hexdigest()[:16]}.txt"
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a reading error leaves nothing half-written behind
    return path


class TokenizedCorpus:
    """ids: flat array of every document's token ids (no specials); starts: (D + 1,) offsets;
    key: the name of its cache, which changes with the text and the vocabulary (what a
    resumed run checks it still trains on)."""

    def __init__(self, ids, starts, key=None):
        self.ids, self.starts, self.key = ids, starts, key

    def __len__(self):
        return len(self.starts) - 1

    def document(self, index):
        return self.ids[self.starts[index]:self.starts[index + 1]]

    @classmethod
    def build(cls, paths, tokenizer, cache_dir=".cache/corpus", vocab_path=None, errors="strict"):
        """Tokenize `paths` with `tokenizer`, or load the cached result. The cache is keyed by
        the files' bytes, the vocabulary and how non-UTF-8 bytes are read (`errors`)."""
        paths = [Path(p) for p in paths]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"corpus file {path} not found (set --data_dir or MINIBERT_DATA to the "
                                        "folder holding pretraining/arxiv_abstracts.txt, or pass --corpus)")
        vocab_bytes = "\n".join(tokenizer.ids_to_tokens[i] for i in range(tokenizer.vocab_size)).encode()
        key = file_digest(paths, extra=vocab_bytes + json.dumps(
            [CACHE_VERSION, tokenizer.do_lower_case, [p.name for p in paths], errors]).encode())
        cache = Path(cache_dir) / key
        if (cache / "done").is_file():
            return cls.load(cache)

        dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
        total_bytes = sum(p.stat().st_size for p in paths)
        ids, starts, written = [], [0], 0
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenizing corpus") as bar:
            for document in read_documents(paths, errors):
                token_ids = tokenizer.encode(document, add_special_tokens=False)
                ids.append(np.asarray(token_ids, dtype=dtype))
                written += len(token_ids)
                starts.append(written)
                bar.update(len(document.encode("utf-8")) + 1)
        if written == 0:
            raise ValueError(f"the corpus {[str(p) for p in paths]} holds no text")
        # Written in a folder of its own, then renamed into place whole: another run that
        # tokenized the same text at the same time may already be reading the cache.
        tmp = cache.with_name(f"{key}.{os.getpid()}.tmp")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            memmap = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=dtype, shape=(written,))
            memmap[:] = np.concatenate(ids)
            memmap.flush()
            np.save(tmp / "starts.npy", np.asarray(starts, dtype=np.int64))
            (tmp / "info.json").write_text(json.dumps({"files": [str(p) for p in paths], "tokens": written,
                                                       "documents": len(starts) - 1}, indent=2))
            (tmp / "done").touch()
            if cache.is_dir() and not (cache / "done").is_file():  # left by a build that crashed
                shutil.rmtree(cache, ignore_errors=True)
            try:
                os.rename(tmp, cache)
            except OSError:  # another run put the same cache there first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a crash mid-way leaves no half cache behind
        return cls.load(cache)

    @classmethod
    def load(cls, cache):
        return cls(np.load(cache / "ids.npy", mmap_mode="r"), np.load(cache / "starts.npy"), key=Path(cache).name)

    def split(self, held_out_fraction, seed):
        """Two corpora, train and held out, by whole documents chosen at random (the
        fraction and the seed come from train_mlm.py's DEFAULTS). Each side keeps at least one
        document when there are two: a fraction near 1 must not leave nothing to train on."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_held_out = min(max(1, int(round(len(self) * held_out_fraction))), len(self) - 1) if len(self) > 1 else 0
        return DocumentSubset(self, np.sort(order[n_held_out:])), DocumentSubset(self, np.sort(order[:n_held_out]))


class DocumentSubset:
    """Some documents of a TokenizedCorpus (train or held out)."""

    def __init__(self, corpus, document_indices):
        self.corpus, self.document_indices = corpus, document_indices

    def __len__(self):
        return len(self.document_indices)

    def num_tokens(self):
        starts = self.corpus.starts
        return int((starts[self.document_indices + 1] - starts[self.document_indices]).sum())

    def token_counts(self, vocab_size):
        """(vocab_size,) int64: how often each id occurs in these documents."""
        member = np.zeros(len(self.corpus), dtype=bool)
        member[self.document_indices] = True
        in_subset = np.repeat(member, np.diff(self.corpus.starts))  # (num_tokens,) per token of the corpus
        return np.bincount(self.corpus.ids[in_subset], minlength=vocab_size).astype(np.int64)

    def sequences(self, max_seq_len):
        """(N, 2) array of (start, length) into corpus.ids: pieces of <= max_seq_len - 2 tokens."""
        room = max_seq_len - 2  # [CLS] and [SEP]
        if room < 1:
            raise ValueError(f"max_seq_len must be at least 3, got {max_seq_len}")
        starts = self.corpus.starts[self.document_indices]
        lengths = self.corpus.starts[self.document_indices + 1] - starts
        keep = lengths > 0
        starts, lengths = starts[keep], lengths[keep]
        pieces = -(-lengths // room)  # ceil: how many pieces each document needs
        doc_of_piece = np.repeat(np.arange(len(starts)), pieces)
        piece_in_doc = np.arange(len(doc_of_piece)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        # Equal cuts: piece k of a document spans [k * L / p, (k + 1) * L / p).
        L, p = lengths[doc_of_piece], pieces[doc_of_piece]
        begin = (piece_in_doc * L) // p
        end = ((piece_in_doc + 1) * L) // p
        return np.stack([starts[doc_of_piece] + begin, end - begin], axis=1)


def collate(corpus_ids, sequences, cls_id, sep_id, pad_id):
    """Rows of (start, length) -> input_ids and attention_mask, [CLS] piece [SEP], padded."""
    return padded([[cls_id, *corpus_ids[start:start + length].tolist(), sep_id] for start, length in sequences], pad_id)


@functools.lru_cache(maxsize=2)  # every step of an epoch asks for the same shuffle
def epoch_order(num_sequences, seed, epoch):
    return np.random.default_rng([seed, epoch]).permutation(num_sequences)


def batch_at(step, sequences, batch_size, seed, lengths=None, window=50):
    """The sequences of global step `step`: epochs of seeded shuffles laid end to end, so a
    step number alone says which data comes next (what makes resume exact).

    With `lengths` (one per sequence), batches are grouped by length: the shuffled epoch is
    read in windows of `window` batches, each window sorted by length, cut into batches and
    served in a seeded random order. A batch is padded to its longest row, so random rows
    of the arXiv pieces (95 tokens on average, at most 126) fill only 77% of a 32 x 128
    batch; grouped rows fill about 98%, and every step costs only for real tokens. Every
    sequence is still seen once per epoch, and which rows meet still changes every epoch.
    """
    per_epoch = len(sequences) // batch_size
    if per_epoch == 0:
        raise ValueError(f"only {len(sequences)} sequences, fewer than one batch of {batch_size}")
    epoch, index = divmod(step, per_epoch)
    order = epoch_order(len(sequences), seed, epoch)
    if lengths is None:
        return sequences[order[index * batch_size:(index + 1) * batch_size]], epoch
    group, position = divmod(index, window)
    rows = order[:per_epoch * batch_size][group * window * batch_size:(group + 1) * window * batch_size]
    rows = rows[np.argsort(lengths[rows], kind="stable")]  # this window's rows, shortest first
    batch = np.random.default_rng([seed, epoch, group]).permutation(len(rows) // batch_size)[position]
    return sequences[rows[batch * batch_size:(batch + 1) * batch_size]], epoch


def unigram_log_probs(counts, never_predicted=()):
    """log p(token) of the best model that ignores context: each token's frequency in the
    training documents, add-one smoothed (an id the training text never shows keeps a finite
    loss), with no mass on ids that are never a target ([CLS], [PAD], [UNK], ...).

    Its cross-entropy on the masked tokens is where a masked language model starts to be
    useful: the unigram entropy of the corpus under this vocabulary (about 6.8 nats for
    arXiv abstracts at 8,000 or 30,522 tokens). train_mlm.py logs the held-out loss's
    distance below it, the *context gain*: nats a model gains by reading the sentence. Unlike
    accuracy, it does not rise just because the vocabulary is smaller.
    """
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64) + 1.0
    counts[list(never_predicted)] = 0.0
    return torch.log(counts / counts.sum()).float()  # (V,), -inf where never predicted
