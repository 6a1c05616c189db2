"""The WordPiece trainer: worked examples by hand, the fast incremental trainer against the
simple one that recounts everything at every merge, the "bpe" algorithm against the
Rust `tokenizers` WordPieceTrainer on corpora without ties, and bad input.

The Rust trainer numbers its "##c" tokens in hash-map order (a new order every run) and
breaks count ties by token ids, so on a corpus with ties its vocabulary changes from run
to run. Parity is therefore checked on corpora where the best pair is unique at every
merge, with the "##c" block compared in code-point order (the order we give it).
"""

import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_paths import require_data
from minibert.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer
from minibert.tokenizer_trainer import (PairStatistics, WordPieceTrainer, build_alphabet, count_words,
                                        initial_vocab_and_words, learn_vocab, learn_vocab_simple, main, read_lines,
                                        train_tokenizer)

WORKED_EXAMPLE = {"low": 5, "lower": 2, "newest": 6, "widest": 3}


# ------------------------------------------------------------------ worked examples


def test_worked_example_initial_state_by_hand():
    vocab, words, counts = initial_vocab_and_words(WORKED_EXAMPLE, SPECIAL_TOKENS, None)
    assert vocab == [*SPECIAL_TOKENS, "d", "e", "i", "l", "n", "o", "r", "s", "t", "w",
                     "##d", "##e", "##i", "##o", "##r", "##s", "##t", "##w"]
    assert [[vocab[i] for i in word] for word in words] == [
        ["l", "##o", "##w"], ["l", "##o", "##w", "##e", "##r"],
        ["n", "##e", "##w", "##e", "##s", "##t"], ["w", "##i", "##d", "##e", "##s", "##t"]]
    stats = PairStatistics(words, counts, len(vocab))
    pair_counts = {(vocab[a], vocab[b]): count for (a, b), count in stats.pair_counts.items()}
    assert pair_counts == {("l", "##o"): 7, ("##o", "##w"): 7, ("##w", "##e"): 8, ("##e", "##r"): 2,
                           ("n", "##e"): 6, ("##e", "##w"): 6, ("##e", "##s"): 9, ("##s", "##t"): 9,
                           ("w", "##i"): 3, ("##i", "##d"): 3, ("##d", "##e"): 3}
    token_counts = {vocab[i]: count for i, count in enumerate(stats.token_counts) if count}
    assert token_counts == {"##e": 17, "##s": 9, "##t": 9, "##w": 13, "##o": 7, "l": 7, "n": 6, "w": 3,
                            "##i": 3, "##d": 3, "##r": 2}


def test_worked_example_bpe_merges_by_hand():
    vocab = learn_vocab(WORKED_EXAMPLE, vocab_size=32, min_frequency=1, limit_alphabet=None, algorithm="bpe")
    # ##e ##s and ##s ##t tie at 9: the older pair (##e before ##s) wins; then l ##o / ##o ##w tie at 7.
    assert vocab[23:27] == ["##es", "##est", "lo", "low"]


def test_worked_example_likelihood_merges_by_hand():
    vocab = learn_vocab(WORKED_EXAMPLE, vocab_size=32, min_frequency=1, limit_alphabet=None, algorithm="likelihood")
    # w ##i and ##i ##d score 3/(3*3) = 1/3; l ##o 7/(7*7) = 1/7; ##s ##t 9/(9*9) = 1/9;
    # the frequent ##e ##s only 9/(17*9) = 1/17.
    assert vocab[23:27] == ["wi", "wid", "lo", "##st"]


def test_alphabet_limit_keeps_the_most_frequent_characters():
    # a: 2*2 + 1 = 5, b: 2, c: 1. Limit 2 drops c; "ca" is then just "##a" (first char dropped).
    assert build_alphabet({"aab": 2, "ca": 1}, limit_alphabet=2) == ["a", "b"]
    vocab, words, _ = initial_vocab_and_words({"aab": 2, "ca": 1}, [], 2)
    assert vocab == ["a", "b", "##a", "##b"]
    assert [[vocab[i] for i in word] for word in words] == [["a", "##a", "##b"], ["##a"]]
    # Ties at the limit keep the smaller code point.
    assert build_alphabet({"xy": 1}, limit_alphabet=1) == ["x"]


# ---------------------------------------------------------- the fast trainer against the simple one


def test_verbose_training_prints_each_merge_as_it_goes(capsys):
    for learn in (learn_vocab, learn_vocab_simple):
        vocab = learn(WORKED_EXAMPLE, 25, 1, None, verbose=True)
        assert vocab[23:] == ["##es", "##est"]
        assert capsys.readouterr().out.splitlines()[0].startswith("merge 1/2: ##e + ##s -> ##es (9 times")


word_count_dicts = st.dictionaries(st.text("abcdeé", min_size=1, max_size=7), st.integers(1, 30),
                                   min_size=1, max_size=25)


@settings(max_examples=120, deadline=None)
@given(word_counts=word_count_dicts, vocab_size=st.integers(5, 70), min_frequency=st.integers(0, 4),
       limit_alphabet=st.sampled_from([None, 2, 3, 5]), algorithm=st.sampled_from(["bpe", "likelihood"]))
def test_fast_trainer_equals_the_simple_one(word_counts, vocab_size, min_frequency, limit_alphabet, algorithm):
    fast_vocab = learn_vocab(word_counts, vocab_size, min_frequency, limit_alphabet, SPECIAL_TOKENS, algorithm)
    simple_vocab = learn_vocab_simple(word_counts, vocab_size, min_frequency, limit_alphabet, SPECIAL_TOKENS, algorithm)
    assert fast_vocab == simple_vocab


def test_fast_trainer_equals_the_simple_one_on_real_text():
    lines = read_lines(require_data("sts/stsbenchmark/sts-dev.csv"))
    word_counts = count_words([line.split("\t")[5] for line in list(lines)[:150]])
    for algorithm in ("bpe", "likelihood"):
        expected = learn_vocab_simple(word_counts, 400, 2, 60, SPECIAL_TOKENS, algorithm)
        assert learn_vocab(word_counts, 400, 2, 60, SPECIAL_TOKENS, algorithm) == expected


# ---------------------------------------------------------------- against the Rust trainer


def rust_vocab(texts, vocab_size, min_frequency, limit_alphabet):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    options = dict(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
                   show_progress=False)
    if limit_alphabet is not None:
        options["limit_alphabet"] = limit_alphabet
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(**options))
    vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    # The "##c" block comes in hash-map order; put it in code-point order, as ours.
    block = [i for i, token in enumerate(vocab) if token.startswith("##") and len(token) == 3]
    assert block == list(range(block[0], block[0] + len(block))) if block else True
    if block:
        vocab[block[0]:block[-1] + 1] = sorted(vocab[block[0]:block[-1] + 1])
    return vocab


def corpus_text(word_counts, seed=0):
    """Lines of text that hold each word `count` times, shuffled, with some case and accents
    that BERT's normaliser removes, so the Rust side runs its whole pipeline too."""
    rng = random.Random(seed)
    tokens = [word for word, count in word_counts.items() for _ in range(count)]
    rng.shuffle(tokens)
    disguise = {"a": "Á", "e": "É", "o": "Ô"}
    tokens = [word.upper() if i % 5 == 0 else "".join(disguise.get(c, c) if i % 7 == 0 else c for c in word)
              for i, word in enumerate(tokens)]
    return [" ".join(tokens[start:start + 50]) + ", ok." for start in range(0, len(tokens), 50)]


def tie_free_corpus(seed, n_words=200, letters="abcdef", max_count=300):
    """A random corpus, its word counts as the trainer sees them, and the longest vocabulary
    that the simple trainer reaches without a tie (or a repeated token) at any merge."""
    rng = random.Random(seed)
    base = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 8))): rng.randint(1, max_count)
            for _ in range(n_words)}
    text = corpus_text(base, seed)
    word_counts = count_words(text)
    return text, word_counts, len(learn_vocab_simple(word_counts, 600, 0, None, stop_at_tie=True))


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_bpe_equals_rust_trainer_on_tie_free_corpora(seed):
    text, word_counts, vocab_size = tie_free_corpus(seed)
    ours = learn_vocab(word_counts, vocab_size, 0, None, SPECIAL_TOKENS, "bpe")
    n_merges = vocab_size - len(initial_vocab_and_words(word_counts, SPECIAL_TOKENS, None)[0])
    assert n_merges >= 40, "the corpus should allow a real number of merges before the first tie"
    for _ in range(3):  # the Rust side changes its hash-map order every run
        assert rust_vocab(text, vocab_size, 0, None) == ours


def test_bpe_equals_rust_trainer_with_min_frequency_and_limit_alphabet():
    """Training that ends because no pair reaches min_frequency (not at vocab_size), with
    the rarest character cut from the alphabet, so that its neighbours become adjacent."""
    rng = random.Random(9)
    base = {"".join(rng.choice("abcdef") for _ in range(rng.randint(2, 8))): rng.randint(1, 300)
            for _ in range(200)}
    base.update({"agb": 3, "gab": 2, "fgge": 4})  # "g" (13 times) is the rarest character
    text = corpus_text(base)
    word_counts = count_words(text)
    char_counts = Counter()
    for word, count in word_counts.items():
        for char in word:
            char_counts[char] += count
    rarest, second_rarest = sorted(char_counts.values())[:2]
    assert char_counts["g"] == rarest < second_rarest  # no tie at the alphabet limit
    limit_alphabet = len(char_counts) - 1
    for min_frequency in range(300, 3000, 25):  # the smallest (from 300) that stops before any tie
        expected = learn_vocab_simple(word_counts, 10_000, min_frequency, limit_alphabet)
        if learn_vocab_simple(word_counts, 10_000, min_frequency, limit_alphabet, stop_at_tie=True) == expected:
            break
    n_merges = len(expected) - len(initial_vocab_and_words(word_counts, SPECIAL_TOKENS, limit_alphabet)[0])
    assert n_merges >= 40
    ours = learn_vocab(word_counts, 10_000, min_frequency, limit_alphabet, SPECIAL_TOKENS, "bpe")
    assert ours == expected
    assert not any("g" in token for token in ours)
    assert rust_vocab(text, 10_000, min_frequency, limit_alphabet) == ours


def test_bpe_is_close_to_rust_on_real_text():
    """With ties, the Rust trainer is not deterministic, so exact parity is not defined;
    the vocabularies must still be nearly the same set of tokens."""
    with open(require_data("pretraining/arxiv_abstracts.txt"), encoding="utf-8") as file:
        lines = [next(file) for _ in range(1500)]
    ours = learn_vocab(count_words(lines), 4000, 2, 1000)
    theirs = rust_vocab(lines, 4000, 2, 1000)
    assert len(ours) == len(theirs) == 4000
    assert len(set(ours) & set(theirs)) >= 0.98 * 4000
    assert ours[:len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)


# ------------------------------------------------------------- determinism, interface


def test_training_is_deterministic_and_ignores_line_order():
    with open(require_data("sts/stsbenchmark/sts-dev.csv"), encoding="utf-8") as file:
        lines = [line.split("\t")[5] for line in file]
    shuffled = lines[:]
    random.Random(0).shuffle(shuffled)
    for algorithm in ("bpe", "likelihood"):
        trainer = WordPieceTrainer(vocab_size=1500, algorithm=algorithm, show_progress=False)
        first = trainer.train_from_iterator(lines)
        assert trainer.train_from_iterator(lines) == first
        assert trainer.train_from_iterator(shuffled) == first
        assert len(first) == 1500 and first[:5] == list(SPECIAL_TOKENS)


def test_train_tokenizer_and_cli_write_a_loadable_tokenizer(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Low lower newest widest.\n" * 20 + "Café naïve résumé!\n" * 5, encoding="utf-8")
    tokenizer = train_tokenizer([corpus], vocab_size=60, min_frequency=1, show_progress=False)
    assert isinstance(tokenizer, WordPieceTokenizer)
    assert tokenizer.tokenize("newest Café") == ["newest", "cafe"]

    main(["--files", str(corpus), "--vocab_size", "60", "--min_frequency", "1",
          "--out_dir", str(tmp_path / "out")])
    loaded = WordPieceTokenizer.from_pretrained(tmp_path / "out")
    assert loaded.ids_to_tokens == tokenizer.ids_to_tokens
    from transformers import BertTokenizer

    reference = BertTokenizer.from_pretrained(tmp_path / "out")
    text = "The newest, lowest résumé [MASK] widest"
    assert reference(text)["input_ids"] == loaded.encode(text)


def test_unknown_algorithm_is_an_error():
    with pytest.raises(ValueError, match="choose one of"):
        learn_vocab(WORKED_EXAMPLE, 32, 1, None, algorithm="unigram")
    with pytest.raises(ValueError, match="choose one of"):
        learn_vocab_simple(WORKED_EXAMPLE, 32, 1, None, algorithm="unigram")


# ------------------------------------------------------------------------- bad input


def test_non_utf8_file_names_file_line_and_byte_offset(tmp_path):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes(b"good line\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"latin1.txt: not valid UTF-8 at byte offset 14 \(line 2\).*errors='replace'"):
        WordPieceTrainer(vocab_size=40, show_progress=False).train([corpus])
    for errors in ("replace", "ignore"):
        vocab = WordPieceTrainer(vocab_size=40, min_frequency=1, show_progress=False).train([corpus], errors=errors)
        assert "good" in vocab or "go" in vocab


def test_missing_and_empty_input_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        train_tokenizer([tmp_path / "nowhere.txt"], show_progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\t\n\x00\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{re.escape(str(empty))}: no words to learn from"):  # the file named
        train_tokenizer([empty], show_progress=False)
    with pytest.raises(ValueError, match="no words to learn from"):
        WordPieceTrainer(show_progress=False).train_from_iterator([])
    with pytest.raises(ValueError, match="errors="):
        list(read_lines([empty], errors="surrogateescape"))
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):  # at the call, before any line (or progress bar)
        read_lines([empty, tmp_path / "nowhere.txt"])


@pytest.mark.parametrize("flag, value", [("--limit_alphabet", "-1"), ("--vocab_size", "0"),
                                         ("--min_frequency", "-2")])
def test_cli_refuses_a_setting_out_of_range_before_reading(tmp_path, flag, value):
    # --limit_alphabet=-1 silently dropped the rarest character (chars[:-1]); the others
    # were found only after the whole corpus was read, or not at all. The file named here
    # does not exist: the setting is refused before any file is opened.
    with pytest.raises(ValueError, match=f"{flag}={value}"):
        main(["--files", str(tmp_path / "not_read.txt"), "--out_dir", str(tmp_path / "out"), flag, value])
    with pytest.raises(ValueError, match="limit_alphabet=0"):  # from Python, 0 would be an empty alphabet
        WordPieceTrainer(limit_alphabet=0)


def test_cli_does_not_replace_a_vocabulary_already_in_out_dir(tmp_path):
    # --out_dir=base-transformer would silently give a trained model another vocabulary.
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Low lower newest widest.\n" * 20, encoding="utf-8")
    out = tmp_path / "model"
    out.mkdir()
    (out / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    with pytest.raises(FileExistsError, match="--out_dir.*--overwrite"):
        main(["--files", str(corpus), "--vocab_size", "40", "--out_dir", str(out)])
    assert (out / "vocab.txt").read_text().endswith("the\n")
    main(["--files", str(corpus), "--vocab_size", "40", "--out_dir", str(out), "--overwrite"])
    assert "newest" in WordPieceTokenizer.from_pretrained(out).vocab
