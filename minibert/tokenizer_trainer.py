"""Learning a WordPiece vocabulary from text: two algorithms behind one interface.

Both start the same way. Count the words of the corpus (after BERT's normalisation and
pre-tokenisation), write each word as characters, the first bare and the others with the
"##" continuation prefix ("low" -> l ##o ##w), and put the special tokens, the alphabet
and the "##" characters into the vocabulary. Then, until the vocabulary is full, pick one
pair of adjacent tokens, merge it everywhere into a new token (l + ##o -> "lo"; ##o + ##w
-> "##ow") and add that token. Only the choice of the pair differs:

- "bpe": the most frequent pair. This is what Hugging Face's `WordPieceTrainer` really
  runs (it is their BPE trainer with the "##" prefix), and so what trained most BERT
  vocabularies you can download since 2019.
- "likelihood": the pair with the highest count(ab) / (count(a) * count(b)), the score
  of the WordPiece paper (Schuster & Nakajima 2012): a merge raises the likelihood of the
  corpus under a unigram model of tokens by about that ratio. It prefers pairs whose
  parts are rare on their own and nearly always seen together, where BPE prefers what is
  simply frequent.

Worked example, words (count): low (5), lower (2), newest (6), widest (3), min_frequency 1.

    l ##o ##w (5)   l ##o ##w ##e ##r (2)   n ##e ##w ##e ##s ##t (6)   w ##i ##d ##e ##s ##t (3)

Pair counts: l ##o 7, ##o ##w 7, ##w ##e 8, ##e ##r 2, n ##e 6, ##e ##w 6, ##e ##s 9,
##s ##t 9, w ##i 3, ##i ##d 3, ##d ##e 3. Token counts: ##e 17, ##s 9, ##t 9, ##w 13,
##o 7, l 7, n 6, w 3, ##i 3, ##d 3, ##r 2.

- bpe: "##e ##s" and "##s ##t" tie at 9. Ties go to the pair of older tokens (smaller
  ids, the Rust rule), and "##e" is older than "##s": "##es" first, then "##es ##t" (9)
  -> "##est". Next "l ##o" and "##o ##w" tie at 7: "lo", then "lo ##w" (7) -> "low".
- likelihood: "w ##i" and "##i ##d" score 3 / (3 * 3) = 1/3, the highest: they only
  ever occur together. Same score, same count, so older tokens first: "wi", then
  "wi ##d" (3 / (3 * 3)) -> "wid". Then "l ##o" scores 7 / (7 * 7) = 1/7: "lo"; then
  "##s ##t" 9 / (9 * 9) = 1/9: "##st". The most frequent pair, "##e ##s", scores only
  9 / (17 * 9) = 1/17 and waits.

tests/test_tokenizer_trainer.py checks these by hand and checks "bpe" against the Rust
trainer token for token on a corpus without ties.

Determinism: every tie is broken explicitly (bpe: larger count, then older tokens, i.e.
smaller ids, which is the Rust rule; the alphabet: by frequency, then code point). The
Rust trainer is not deterministic: it numbers the "##c" tokens in hash-map order, which
changes from run to run, and that order then decides its count ties.

Two trainers, the same vocabulary (tests/test_tokenizer_trainer.py checks they agree):
`learn_vocab_simple` is the algorithm as the paragraphs above tell it, recounting every
pair before every merge (minbpe's basic.py, for WordPiece) - read it first; it is fine
for a few thousand words. `learn_vocab` keeps the pair counts up to date incrementally:
an index from each pair to the words that contain it means a merge only touches those
words, and a heap with lazy deletion finds the best pair. The full 75 MB arXiv corpus
trains a 30k vocabulary in minutes. With `verbose=True` both print each merge.

    python -m minibert.tokenizer_trainer --files corpus.txt --vocab_size 30522 --out_dir my-vocab

trains a `WordPieceTokenizer` and saves it (vocab.txt, tokenizer_config.json).
"""

import argparse
import hashlib
import heapq
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from minibert.normalization import pre_tokenize_piece, split_pieces
from minibert.overrides import run_from_command_line
from minibert.tokenizer import (CONFIG_FILE, CONTINUATION_PREFIX, SPECIAL_TOKENS, VOCAB_FILE, WordPieceTokenizer,
                                write_atomically)

ALGORITHMS = ("bpe", "likelihood")
TRAINING_RECORD = "trained_with.json"  # how a run's vocabulary was trained: reused only for the same


# ---------------------------------------------------------------------------------------
# Reading and counting


def read_lines(files, errors: str = "strict") -> Iterator[str]:
    """The lines of UTF-8 text files, one at a time. Bytes that are not UTF-8 stop the reading
    with an error naming the file, line and byte offset, unless `errors` is "replace"
    (they become U+FFFD, which BERT's cleaning then drops) or "ignore". A missing file is
    refused here, at the call, not when its turn to be read comes (after a progress bar has
    started, or after the files before it)."""
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if errors not in ("strict", "replace", "ignore"):
        raise ValueError(f"errors={errors!r}: use 'strict', 'replace' or 'ignore'")
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file to read")
    return utf8_lines(files, errors)


def utf8_lines(files, errors):
    for path in files:
        offset = 0
        with open(path, "rb") as file:
            for line_number, raw_line in enumerate(file, start=1):
                try:
                    yield raw_line.decode("utf-8", errors)
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"{path}: not valid UTF-8 at byte offset {offset + error.start} (line {line_number}): "
                        f"{error.reason}. Convert the file to UTF-8, or pass --errors=replace (errors='replace' in "
                        f"Python) to replace bad bytes, --errors=ignore to drop them.") from None
                offset += len(raw_line)


def count_words(texts: Iterable[str], do_lower_case: bool = True, show_progress: bool = False) -> Counter:
    """Count the words of a corpus as BERT's pre-tokeniser cuts them.

    >>> sorted(count_words(["Low, lower.", "LOW"]).items())
    [(',', 1), ('.', 1), ('low', 2), ('lower', 1)]
    """
    # Count raw whitespace-separated pieces first (str.split + Counter run in C), then
    # normalise each distinct piece once: most of the corpus is repeats.
    piece_counts = Counter()
    for text in tqdm(texts, desc="count words", unit=" lines", disable=not show_progress):
        piece_counts.update(split_pieces(text))
    word_counts = Counter()
    for piece, count in piece_counts.items():
        for word in pre_tokenize_piece(piece, do_lower_case):
            word_counts[word] += count
    return word_counts


# ---------------------------------------------------------------------------------------
# The initial vocabulary


def build_alphabet(word_counts: dict[str, int], limit_alphabet: int | None = None) -> list[str]:
    """The characters of the corpus, weighted by word counts; with `limit_alphabet`, only
    that many of the most frequent (ties: the smaller code point stays). Returned in
    code-point order, the order they get their ids in.

    >>> build_alphabet({"aab": 2, "ca": 1}, limit_alphabet=2)
    ['a', 'b']
    """
    char_counts = Counter()
    for word, count in word_counts.items():
        for char in word:
            char_counts[char] += count
    chars = sorted(char_counts, key=lambda char: (-char_counts[char], char))
    if limit_alphabet is not None:
        chars = chars[:limit_alphabet]
    return sorted(chars)


def initial_vocab_and_words(word_counts: dict[str, int], special_tokens, limit_alphabet):
    """Special tokens, then the alphabet, then the "##" characters; and every word as a
    list of token ids. Characters left out of the alphabet are left out of the words too
    (so their neighbours become adjacent), and a word's first character keeps its bare
    form even when the character before it was dropped, as the Rust trainer does.

    >>> vocab, words, counts = initial_vocab_and_words({"low": 5, "ow": 1}, ["[UNK]"], None)
    >>> vocab, [[vocab[i] for i in word] for word in words], counts
    (['[UNK]', 'l', 'o', 'w', '##o', '##w'], [['l', '##o', '##w'], ['o', '##w']], [5, 1])
    """
    vocab = list(dict.fromkeys(special_tokens))
    alphabet = set(build_alphabet(word_counts, limit_alphabet))
    vocab += [char for char in sorted(alphabet) if char not in vocab]
    continuation_chars = {char for word in word_counts for char in word[1:] if char in alphabet}
    vocab += [CONTINUATION_PREFIX + char for char in sorted(continuation_chars)
              if CONTINUATION_PREFIX + char not in vocab]
    token_ids = {token: token_id for token_id, token in enumerate(vocab)}
    words, counts = [], []
    # Sorted, so that everything after this (heap order, set order) is reproducible.
    for word in sorted(word_counts):
        symbols = [token_ids[char if position == 0 else CONTINUATION_PREFIX + char]
                   for position, char in enumerate(word) if char in alphabet]
        words.append(symbols)
        counts.append(word_counts[word])
    return vocab, words, counts


# ---------------------------------------------------------------------------------------
# One merge, and which pair to merge


def merge_pair_in_word(symbols: list[int], left: int, right: int, merged: int):
    """Replace every (left, right) in `symbols` by `merged`, left to right, and list how
    the counts of the *other* pairs of the word change.

    >>> merge_pair_in_word([1, 2, 1, 2, 3], 1, 2, 9)
    ([9, 9, 3], [((2, 1), -1), ((9, 1), 1), ((9, 1), -1), ((9, 9), 1), ((2, 3), -1), ((9, 3), 1)])
    """
    result, changes = [], []
    i, n = 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == left and symbols[i + 1] == right:
            if result:  # the pair before the merge site now ends in `merged`
                changes.append(((result[-1], left), -1))
                changes.append(((result[-1], merged), 1))
            if i + 2 < n:  # and the pair after it starts with `merged`
                changes.append(((right, symbols[i + 2]), -1))
                changes.append(((merged, symbols[i + 2]), 1))
            result.append(merged)
            i += 2
        else:
            result.append(symbols[i])
            i += 1
    return result, changes


def merge_priority(pair: tuple[int, int], pair_counts, token_counts, algorithm: str):
    """The sort key of a candidate pair: the pair to merge has the smallest. "bpe": most
    frequent first; "likelihood": highest count(ab) / (count(a) * count(b)) first, then the
    more frequent. Ties go to the pair of older tokens (smaller ids), the Rust rule.

    >>> pair_counts, token_counts = {(5, 6): 9, (6, 7): 9}, {5: 17, 6: 9, 7: 9}
    >>> merge_priority((5, 6), pair_counts, token_counts, "bpe") < merge_priority((6, 7), pair_counts, token_counts, "bpe")
    True
    >>> merge_priority((5, 6), pair_counts, token_counts, "likelihood")  # 9 / (17 * 9) = 1/17
    (-0.058823529411764705, -9, (5, 6))
    """
    count = pair_counts[pair]
    if algorithm == "bpe":
        return (-count, pair)
    return (-count / (token_counts[pair[0]] * token_counts[pair[1]]), -count, pair)


def merged_token(vocab: list[str], pair: tuple[int, int]) -> str:
    """The string of a merged pair: l + ##o -> lo, ##o + ##w -> ##ow."""
    return vocab[pair[0]] + vocab[pair[1]].removeprefix(CONTINUATION_PREFIX)


def say_merge(number: int, total: int, vocab: list[str], pair: tuple[int, int], count: int, note: str = "") -> None:
    """One line of verbose training, as minbpe prints it: merge 1/4: ##e + ##s -> ##es (9 times)."""
    print(f"merge {number}/{total}: {vocab[pair[0]]} + {vocab[pair[1]]} -> {merged_token(vocab, pair)} "
          f"({count} times{note})")


# ---------------------------------------------------------------------------------------
# The simple trainer: recount every pair before every merge


def learn_vocab_simple(word_counts: dict[str, int], vocab_size: int, min_frequency: int, limit_alphabet: int | None,
                       special_tokens=SPECIAL_TOKENS, algorithm: str = "bpe", verbose: bool = False,
                       stop_at_tie: bool = False) -> list[str]:
    """The vocabulary (tokens in id order), by the textbook loop: count, pick, merge, repeat.

    Each merge recounts every pair over every word, so this is slow (time grows with
    merges x corpus) and `learn_vocab` below exists; it gives the same vocabulary.
    stop_at_tie: stop before the first merge that a tie decides (two pairs with the same
    priority but for their ids) or that makes a token already there. Up to that point the
    Rust trainer's result is defined too: the parity tests train that far.

    >>> vocab = learn_vocab_simple({"low": 5, "lower": 2, "newest": 6, "widest": 3}, 27, 1, None, verbose=True)
    merge 1/4: ##e + ##s -> ##es (9 times, a tie: older tokens first)
    merge 2/4: ##es + ##t -> ##est (9 times)
    merge 3/4: l + ##o -> lo (7 times, a tie: older tokens first)
    merge 4/4: lo + ##w -> low (7 times)
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r}: choose one of {ALGORITHMS}")
    vocab, words, counts = initial_vocab_and_words(word_counts, special_tokens, limit_alphabet)
    token_ids = {token: token_id for token_id, token in enumerate(vocab)}
    total = max(vocab_size - len(vocab), 0)
    merges = 0
    while len(vocab) < vocab_size:
        # count
        pair_counts, token_counts = Counter(), Counter()
        for symbols, count in zip(words, counts):
            for token in symbols:
                token_counts[token] += count
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] += count
        # pick
        candidates = sorted((pair for pair, count in pair_counts.items() if count >= max(min_frequency, 1)),
                            key=lambda pair: merge_priority(pair, pair_counts, token_counts, algorithm))
        if not candidates:
            break
        best = candidates[0]
        tied = len(candidates) > 1 and (merge_priority(candidates[1], pair_counts, token_counts, algorithm)[:-1]
                                        == merge_priority(best, pair_counts, token_counts, algorithm)[:-1])
        new_token = merged_token(vocab, best)
        if stop_at_tie and (tied or new_token in token_ids):
            break
        merges += 1
        if verbose:
            say_merge(merges, total, vocab, best, pair_counts[best], ", a tie: older tokens first" if tied else "")
        # merge (a string made before from another pair keeps its id, as in `learn_vocab`)
        merged = token_ids.get(new_token)
        if merged is None:
            merged = token_ids[new_token] = len(vocab)
            vocab.append(new_token)
        words = [merge_pair_in_word(symbols, *best, merged)[0] for symbols in words]
    return vocab


# ---------------------------------------------------------------------------------------
# The fast trainer: counts kept up to date, a heap to find the best pair


class PairStatistics:
    """The state of training: the words as token ids, how often each adjacent pair
    occurs (weighted by word counts), which words hold each pair, how often each token
    occurs, and which pairs each token is part of (the likelihood score needs the last
    two)."""

    def __init__(self, words: list[list[int]], counts: list[int], vocab_len: int):
        self.words, self.counts = words, counts
        self.pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        self.pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
        self.token_counts = [0] * vocab_len
        self.token_pairs: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for word_index, (symbols, count) in enumerate(zip(words, counts)):
            for token in symbols:
                self.token_counts[token] += count
            for pair in zip(symbols, symbols[1:]):
                self.pair_counts[pair] += count
                self.pair_words[pair].add(word_index)
        for pair in self.pair_counts:
            self.token_pairs[pair[0]].add(pair)
            self.token_pairs[pair[1]].add(pair)

    def merge(self, pair: tuple[int, int], merged: int) -> set[tuple[int, int]]:
        """Merge `pair` into token `merged` in every word that holds it; return the
        pairs whose count went up (they need a fresh heap entry)."""
        left, right = pair
        increased = set()
        if merged == len(self.token_counts):  # a brand-new token
            self.token_counts.append(0)
        for word_index in self.pair_words.pop(pair, ()):
            symbols = self.words[word_index]
            new_symbols, changes = merge_pair_in_word(symbols, left, right, merged)
            n_merges = len(symbols) - len(new_symbols)
            if n_merges == 0:  # the pair has left this word since it was indexed
                continue
            self.words[word_index] = new_symbols
            count = self.counts[word_index]
            self.token_counts[left] -= n_merges * count
            self.token_counts[right] -= n_merges * count
            self.token_counts[merged] += n_merges * count
            for changed_pair, sign in changes:
                self._add(changed_pair, sign * count)
                if sign > 0:
                    self.pair_words[changed_pair].add(word_index)
                    increased.add(changed_pair)
        self._forget(pair)
        return {p for p in increased if self.pair_counts.get(p, 0) > 0}

    def _add(self, pair, amount):
        new_count = self.pair_counts[pair] + amount
        if new_count > 0:
            self.pair_counts[pair] = new_count
            self.token_pairs[pair[0]].add(pair)
            self.token_pairs[pair[1]].add(pair)
        else:
            self._forget(pair)

    def _forget(self, pair):
        self.pair_counts.pop(pair, None)
        self.token_pairs[pair[0]].discard(pair)
        self.token_pairs[pair[1]].discard(pair)


class NoWords(ValueError):
    """The text to learn from holds no word at all."""


def learn_vocab(word_counts: dict[str, int], vocab_size: int, min_frequency: int, limit_alphabet: int | None,
                special_tokens=SPECIAL_TOKENS, algorithm: str = "bpe", show_progress: bool = False,
                verbose: bool = False) -> list[str]:
    """The vocabulary (tokens in id order) learned from word counts, the same as
    `learn_vocab_simple`'s, fast. Stops at `vocab_size` tokens, or earlier when no pair is
    seen at least `min_frequency` times. The specials and the whole alphabet are always
    kept, even if they alone exceed `vocab_size`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r}: choose one of {ALGORITHMS}")
    if not word_counts:
        raise NoWords("no words to learn from: the training text is empty (or only whitespace and control "
                      "characters). Check the file names and their contents.")
    vocab, words, counts = initial_vocab_and_words(word_counts, special_tokens, limit_alphabet)
    token_ids = {token: token_id for token_id, token in enumerate(vocab)}
    stats = PairStatistics(words, counts, len(vocab))

    def priority(pair):  # heapq pops the smallest, as merge_priority wants
        return merge_priority(pair, stats.pair_counts, stats.token_counts, algorithm)

    min_frequency = max(min_frequency, 1)
    heap = [(priority(pair), pair) for pair, count in stats.pair_counts.items() if count >= min_frequency]
    heapq.heapify(heap)
    total = max(vocab_size - len(vocab), 0)
    progress = tqdm(total=total, desc=f"merges ({algorithm})", disable=not show_progress)
    merges = 0
    while len(vocab) < vocab_size and heap:
        key, pair = heapq.heappop(heap)
        count = stats.pair_counts.get(pair, 0)
        if count < min_frequency:
            continue  # gone, or too rare (if it comes back above, it gets a fresh entry)
        current = priority(pair)
        if current != key:  # stale entry: file it under its current priority
            heapq.heappush(heap, (current, pair))
            continue
        merges += 1
        if verbose:
            say_merge(merges, total, vocab, pair, count)
        new_token = merged_token(vocab, pair)
        # The same string can come from two different pairs (##a + ##bc, ##ab + ##c);
        # like the Rust trainer we then reuse its id and the vocabulary does not grow.
        merged = token_ids.get(new_token)
        if merged is None:
            merged = token_ids[new_token] = len(vocab)
            vocab.append(new_token)
            progress.update(1)
        touched = stats.merge(pair, merged)
        if algorithm == "likelihood":
            # Merging spent some of `left` and `right`: every pair they are part of now
            # scores higher, so it needs a fresh entry (lazy deletion only handles drops).
            touched |= stats.token_pairs[pair[0]] | stats.token_pairs[pair[1]] | stats.token_pairs[merged]
        for changed in touched:
            if stats.pair_counts.get(changed, 0) >= min_frequency:
                heapq.heappush(heap, (priority(changed), changed))
    progress.close()
    return vocab


@dataclass
class WordPieceTrainer:
    """Settings of a training run (their defaults, the one place they are written), and
    the two ways to feed it text.

    >>> trainer = WordPieceTrainer(vocab_size=30, min_frequency=1, show_progress=False)
    >>> vocab = trainer.train_from_iterator(["low lower newest widest"] * 3)
    >>> vocab[:5], len(vocab)
    (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], 30)
    """

    vocab_size: int = 30522
    min_frequency: int = 2
    limit_alphabet: int | None = 1000
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    algorithm: str = "bpe"
    do_lower_case: bool = True
    show_progress: bool = True
    verbose: bool = False

    def __post_init__(self):
        # Checked before any text is read: a negative limit_alphabet would silently drop the
        # rarest characters (a slice from the end), a vocab_size below 1 fail after a long read.
        for name, lowest in (("vocab_size", 1), ("min_frequency", 0), ("limit_alphabet", 1)):
            value = getattr(self, name)
            if value is not None and value < lowest:
                raise ValueError(f"--{name}={value}: must be at least {lowest}"
                                 + (" (0 on the command line, None in Python: keep every character)"
                                    if name == "limit_alphabet" else ""))

    def train_from_iterator(self, texts: Iterable[str]) -> list[str]:
        if isinstance(texts, str):
            texts = [texts]
        word_counts = count_words(texts, self.do_lower_case, self.show_progress)
        return learn_vocab(word_counts, self.vocab_size, self.min_frequency, self.limit_alphabet,
                           self.special_tokens, self.algorithm, self.show_progress, self.verbose)

    def train(self, files, errors: str = "strict") -> list[str]:
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        try:
            return self.train_from_iterator(read_lines(files, errors))
        except NoWords as error:  # said with the files' names: which of a run's inputs was empty
            raise NoWords(f"{', '.join(str(path) for path in files)}: {error}") from None


# ---------------------------------------------------------------------------------------
# A tokenizer from files, and the command line


def train_tokenizer(files, errors: str = "strict", **settings) -> WordPieceTokenizer:
    """Learn a vocabulary from text files (one or more; read line by line, UTF-8) and
    return the tokenizer that uses it. `settings` are WordPieceTrainer's (vocab_size,
    min_frequency, limit_alphabet, algorithm, do_lower_case, show_progress, verbose)."""
    trainer = WordPieceTrainer(**settings)
    vocab = trainer.train(files, errors=errors)
    # The trainer keeps every special token and character (as the Rust one does), so a
    # vocab_size below their number would silently give a larger vocabulary than asked.
    if len(vocab) > trainer.vocab_size:
        raise ValueError(f"--vocab_size={trainer.vocab_size} is below the {len(vocab)} tokens this text needs before "
                         f"any merge (the special tokens and the alphabet, bare and ##): ask for at least {len(vocab)}")
    return WordPieceTokenizer(vocab, do_lower_case=trainer.do_lower_case)


def train_or_reuse_tokenizer(directory, files, vocab_size: int, errors: str = "strict",
                             retrain: bool = False) -> WordPieceTokenizer:
    """The tokenizer saved in `directory` if it was trained on the same text with the same
    settings (its trained_with.json says so); else one trained on `files` and saved there.
    A directory holding a tokenizer trained otherwise is an error unless `retrain`: reusing
    it would silently ignore the --vocab_size or --corpus asked for."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    wanted = {"vocab_size": vocab_size, "errors": errors, "corpus_sha256": digest.hexdigest()}
    if (directory / VOCAB_FILE).is_file() and not retrain:
        try:
            recorded = json.loads((directory / TRAINING_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded == wanted:
            return WordPieceTokenizer.from_pretrained(directory)
        if not isinstance(recorded, dict):
            differences = f"no {TRAINING_RECORD} says how it was trained"
        else:
            differences = ", ".join(
                ("on other text" if key == "corpus_sha256" else f"{key}={recorded.get(key)!r} (asked {value!r})")
                for key, value in wanted.items() if recorded.get(key) != value)
        raise FileExistsError(f"{directory} holds a tokenizer trained otherwise ({differences}): use another "
                              f"--run_dir, or --overwrite=true to train a new one")
    print(f"training a WordPiece vocabulary of {vocab_size} on {[str(p) for p in files]}")
    tokenizer = train_tokenizer(files, vocab_size=vocab_size, errors=errors)
    tokenizer.save_pretrained(directory)
    write_atomically(directory / TRAINING_RECORD, json.dumps(wanted, indent=2) + "\n")
    return tokenizer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minibert.tokenizer_trainer",
                                     description="Train a WordPiece vocabulary (writes vocab.txt and tokenizer_config.json).")
    parser.add_argument("--files", nargs="+", required=True, help="UTF-8 text files, read line by line")
    parser.add_argument("--out_dir", required=True, help="where to write vocab.txt and tokenizer_config.json")
    parser.add_argument("--vocab_size", type=int, default=WordPieceTrainer.vocab_size)
    parser.add_argument("--min_frequency", type=int, default=WordPieceTrainer.min_frequency,
                        help="pairs seen fewer times are never merged")
    parser.add_argument("--limit_alphabet", type=int, default=WordPieceTrainer.limit_alphabet,
                        help="keep only this many most frequent characters (0: keep all)")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default=WordPieceTrainer.algorithm)
    parser.add_argument("--cased", action="store_true", help="keep case and accents (default: lowercase, strip accents)")
    parser.add_argument("--errors", choices=("strict", "replace", "ignore"), default="strict",
                        help="what to do with bytes that are not UTF-8 (default: stop with an error)")
    parser.add_argument("--verbose", action="store_true", help="print every merge as it is made")
    parser.add_argument("--overwrite", action="store_true", help="replace the vocabulary already in --out_dir")
    args = parser.parse_args(argv)
    # A vocabulary is half of a model: replaced beside a trained one, it silently breaks it.
    if (Path(args.out_dir) / VOCAB_FILE).is_file() and not args.overwrite:
        raise FileExistsError(f"--out_dir={args.out_dir} already holds a {VOCAB_FILE}: use another --out_dir, "
                              f"or --overwrite to replace it")
    tokenizer = train_tokenizer(args.files, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                                limit_alphabet=args.limit_alphabet or None, algorithm=args.algorithm,
                                do_lower_case=not args.cased, errors=args.errors, verbose=args.verbose)
    tokenizer.save_pretrained(args.out_dir)
    print(f"wrote {Path(args.out_dir) / VOCAB_FILE} ({tokenizer.vocab_size} tokens) and {CONFIG_FILE}", file=sys.stderr)


if __name__ == "__main__":
    run_from_command_line(main)
