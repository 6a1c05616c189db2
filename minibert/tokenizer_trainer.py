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

Speed: pair counts are kept up to date incrementally. An index from each pair to the
words that contain it means a merge only touches those words; a heap with lazy deletion
finds the best pair. The full 75 MB arXiv corpus trains a 30k vocabulary in minutes.
"""

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tqdm import tqdm

from minibert.normalization import pre_tokenize_piece, split_pieces

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION_PREFIX = "##"
ALGORITHMS = ("bpe", "likelihood")


# ---------------------------------------------------------------------------------------
# Reading and counting


def read_lines(files, errors: str = "strict") -> Iterator[str]:
    """Yield the lines of UTF-8 text files. Bytes that are not UTF-8 stop the reading
    with an error naming the file, line and byte offset, unless `errors` is "replace"
    (they become U+FFFD, which BERT's cleaning then drops) or "ignore"."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    if errors not in ("strict", "replace", "ignore"):
        raise ValueError(f"errors={errors!r}: use 'strict', 'replace' or 'ignore'")
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file to read")
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
# Merging


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


def learn_vocab(word_counts: dict[str, int], vocab_size: int = 30522, min_frequency: int = 2,
                limit_alphabet: int | None = 1000, special_tokens=SPECIAL_TOKENS, algorithm: str = "bpe",
                show_progress: bool = False) -> list[str]:
    """The vocabulary (tokens in id order) learned from word counts; see the module
    docstring for the two algorithms. Stops at `vocab_size` tokens, or earlier when no
    pair is seen at least `min_frequency` times. The specials and the whole alphabet are
    always kept, even if they alone exceed `vocab_size`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r}: choose one of {ALGORITHMS}")
    if not word_counts:
        raise ValueError("no words to learn from: the training text is empty (or only whitespace and control "
                         "characters). Check the file names and their contents.")
    vocab, words, counts = initial_vocab_and_words(word_counts, special_tokens, limit_alphabet)
    token_ids = {token: token_id for token_id, token in enumerate(vocab)}
    stats = PairStatistics(words, counts, len(vocab))

    if algorithm == "bpe":
        def priority(pair):  # heapq pops the smallest: most frequent first, then older tokens
            return (-stats.pair_counts[pair], pair)
    else:
        def priority(pair):  # highest score first, then the more frequent pair, then older tokens
            count = stats.pair_counts[pair]
            return (-count / (stats.token_counts[pair[0]] * stats.token_counts[pair[1]]), -count, pair)

    min_frequency = max(min_frequency, 1)
    heap = [(priority(pair), pair) for pair, count in stats.pair_counts.items() if count >= min_frequency]
    heapq.heapify(heap)
    progress = tqdm(total=max(vocab_size - len(vocab), 0), desc=f"merges ({algorithm})", disable=not show_progress)
    while len(vocab) < vocab_size and heap:
        key, pair = heapq.heappop(heap)
        count = stats.pair_counts.get(pair, 0)
        if count < min_frequency:
            continue  # gone, or too rare (if it comes back above, it gets a fresh entry)
        current = priority(pair)
        if current != key:  # stale entry: file it under its current priority
            heapq.heappush(heap, (current, pair))
            continue
        left, right = (vocab[token_id] for token_id in pair)
        new_token = left + right.removeprefix(CONTINUATION_PREFIX)
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
    """Settings of a training run, and the two ways to feed it text.

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

    def train_from_iterator(self, texts: Iterable[str]) -> list[str]:
        if isinstance(texts, str):
            texts = [texts]
        word_counts = count_words(texts, self.do_lower_case, self.show_progress)
        return learn_vocab(word_counts, self.vocab_size, self.min_frequency, self.limit_alphabet,
                           self.special_tokens, self.algorithm, self.show_progress)

    def train(self, files, errors: str = "strict") -> list[str]:
        return self.train_from_iterator(read_lines(files, errors))
