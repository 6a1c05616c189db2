"""BERT's WordPiece tokenizer: text to ids and back, single texts and padded batches.

After normalisation and pre-tokenisation (minibert/normalization.py) every word is cut
into vocabulary pieces greedily, longest match first (Schuster & Nakajima 2012; Wu et al.
2016, the "WordPiece" of Google's NMT system, as BERT uses it): take the longest prefix of
the word that is in the vocabulary, then the longest continuation of the rest, written
with the "##" prefix, and so on. A word with a part that no piece covers, or longer than
100 characters, becomes a single [UNK].

The ids equal those of `transformers.BertTokenizer` (the Rust `tokenizers` pipeline) on
every input we know of, except for about 560 code points of rare scripts whose Unicode
properties differ between Python's tables and the older ones of the Rust crates (see
normalization.py). tests/test_tokenizer.py checks this on all of the project's text, on
hand-picked hard cases and on random Unicode strings.

    tokenizer = WordPieceTokenizer.from_pretrained("path/with/vocab.txt")
    tokenizer.tokenize("Unaffable BERT")  # ['una', '##ffa', '##ble', 'bert']
    batch = tokenizer(["first text", "second"], ["a pair", "b"], max_length=128)
    # batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]: (2, T) tensors

Speed comes from caching: encoding a whitespace-separated piece of raw text ("BERT,")
always gives the same ids, so each distinct piece is normalised and cut once.

The vocabulary itself is learned from text in minibert/tokenizer_trainer.py
(`python -m minibert.tokenizer_trainer --files corpus.txt --vocab_size 30522 --out_dir out/`).
"""

import json
import os
import re
from pathlib import Path

from minibert.normalization import pre_tokenize_piece, split_pieces

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION_PREFIX = "##"
MAX_INPUT_CHARS_PER_WORD = 100
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
# __call__'s truncation: True/False or transformers' names for the two strategies it has.
TRUNCATION = {True: True, "longest_first": True, False: False, "do_not_truncate": False, None: False}

# transformers' clean_up_tokenization_spaces: in the joined text, in this order.
_DECODE_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                    (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def wordpiece(word: str, vocab: dict[str, int], unk_token: str = "[UNK]",
              max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD, max_piece_chars: int | None = None) -> list[str]:
    """Cut one normalised word into vocabulary pieces, greedy longest match first.

    With the vocabulary {"un", "##aff", "##able", "##a", "##ff"}, "unaffable" starts with
    "un" (the longest known prefix: "unaffable", "unaffabl", ... are not known), the rest
    "affable" continues with "##aff" (not "##a", a shorter match), then "##able":

    >>> vocab = {"un": 0, "##aff": 1, "##able": 2, "##a": 3, "##ff": 4, "[UNK]": 5}
    >>> wordpiece("unaffable", vocab)
    ['un', '##aff', '##able']
    >>> wordpiece("unable", vocab), wordpiece("able", vocab)  # "able" has no first piece
    (['un', '##able'], ['[UNK]'])

    Greedy is not a search: with {"abc", "a", "##bcd"}, "abcd" takes "abc" first, finds
    nothing for "d" and becomes [UNK], although "a ##bcd" would have covered it. That is
    what BERT does, so it is what we do. `max_piece_chars`, the length of the longest
    vocabulary entry, only saves time: no longer match can exist.

    >>> wordpiece("abcd", {"abc": 0, "a": 1, "##bcd": 2})
    ['[UNK]']
    """
    if len(word) > max_input_chars_per_word:
        return [unk_token]
    longest = max_piece_chars or len(word)
    pieces = []
    start = 0
    while start < len(word):
        prefix = CONTINUATION_PREFIX if start > 0 else ""
        for end in range(min(len(word), start + longest), start, -1):
            piece = prefix + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:  # no piece matches here: the whole word is unknown
            return [unk_token]
    return pieces


def check_vocab(tokens: list[str], source: str = "the vocabulary") -> None:
    """The one check of a vocabulary, from a file or a list: not empty, no empty token (it
    could never match), no token twice (two ids for one string), every special token
    there. A ValueError names the line of vocab.txt (the id + 1) and says what to fix."""
    if not tokens:
        raise ValueError(f"{source}: the vocabulary is empty. Train one (python -m minibert.tokenizer_trainer ...) "
                         f"or point to a BERT {VOCAB_FILE}.")
    first_line = {}
    for line_number, token in enumerate(tokens, start=1):
        if token == "":
            raise ValueError(f"{source}: line {line_number} is empty; every line must hold one token.")
        if token in first_line:
            raise ValueError(f"{source}: token {token!r} is on line {first_line[token]} and again on line "
                             f"{line_number}; each token must appear once (its line number is its id + 1).")
        first_line[token] = line_number
    missing = [token for token in SPECIAL_TOKENS if token not in first_line]
    if missing:
        raise ValueError(f"{source}: the special tokens {missing} are missing; a BERT vocabulary needs all of "
                         f"{list(SPECIAL_TOKENS)}.")


def load_vocab(path: str | os.PathLike) -> list[str]:
    """Read BERT's vocab.txt: one token a line, the line number is the id (+ 1), checked
    by `check_vocab` with the file's name in any error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no vocabulary file here. A WordPiece vocab is a text file, "
                                f"one token a line (BERT's {VOCAB_FILE}).")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 at byte offset {error.start}; a {VOCAB_FILE} must be UTF-8.") from None
    # Universal newlines, as the Python reference reads it; the last line may lack "\n".
    tokens = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    check_vocab(tokens, str(path))
    return tokens


class WordPieceTokenizer:
    """Text to ids with BERT's WordPiece, and batches of them ready for the model.

    `vocab` is the list of tokens in id order (what vocab.txt holds); the special tokens
    [PAD] [UNK] [CLS] [SEP] [MASK] must be in it. `do_lower_case` selects an uncased
    model (lowercase and strip accents) or a cased one.
    """

    def __init__(self, vocab: list[str], do_lower_case: bool = True, model_max_length: int = 512,
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD):
        self.ids_to_tokens = list(vocab)
        check_vocab(self.ids_to_tokens)
        self.vocab = {token: token_id for token_id, token in enumerate(self.ids_to_tokens)}
        self.do_lower_case = do_lower_case
        self.model_max_length = model_max_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id = (
            self.vocab[token] for token in SPECIAL_TOKENS)
        self.all_special_ids = [self.vocab[token] for token in SPECIAL_TOKENS]
        # A special token written in the text stays whole and maps to its id (like the
        # references, on the raw text, before any normalisation: "[CLS]" is special, "[cls]" is not).
        self._special_tokens_pattern = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
        self._max_piece_chars = max(len(token.removeprefix(CONTINUATION_PREFIX)) for token in self.ids_to_tokens)
        self._piece_cache: dict[str, list[int]] = {}

    # ----------------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        return len(self.ids_to_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"WordPieceTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"model_max_length={self.model_max_length})")

    # ------------------------------------------------------------------- saving, loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "WordPieceTokenizer":
        """Load a directory holding vocab.txt (and, if present, tokenizer_config.json) -
        what `save_pretrained` writes and what BERT checkpoints ship. A path to a vocab.txt
        file works too (then do_lower_case defaults to True)."""
        path = Path(path)
        if path.is_file():
            return cls(load_vocab(path))
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such directory. from_pretrained expects a directory with "
                                    f"{VOCAB_FILE} (written by save_pretrained or shipped with a BERT checkpoint).")
        vocab = load_vocab(path / VOCAB_FILE)
        settings = {}
        config_path = path / CONFIG_FILE
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{config_path}: not valid JSON ({error}); fix or delete it "
                                 f"(do_lower_case then defaults to true).") from None
            if not isinstance(config, dict):
                raise ValueError(f"{config_path}: holds a JSON {type(config).__name__}, not an object of settings; "
                                 f"fix or delete it (do_lower_case then defaults to true).")
            if config.get("tokenize_chinese_chars", True) is not True:
                raise ValueError(f"{config_path}: tokenize_chinese_chars=false is not supported")
            if config.get("strip_accents") not in (None, config.get("do_lower_case", True)):
                raise ValueError(f"{config_path}: strip_accents must follow do_lower_case (null), as in BERT")
            settings["do_lower_case"] = config.get("do_lower_case", True)
            if not isinstance(settings["do_lower_case"], bool):
                raise ValueError(f"{config_path}: do_lower_case must be true or false, got "
                                 f"{settings['do_lower_case']!r}")
            if isinstance(config.get("model_max_length"), int) and config["model_max_length"] < 10**9:
                settings["model_max_length"] = config["model_max_length"]
        return cls(vocab, **settings)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write vocab.txt (one token a line, in id order: BERT's own format, and readable)
        and a tokenizer_config.json that `transformers.AutoTokenizer` also understands."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / VOCAB_FILE, "".join(token + "\n" for token in self.ids_to_tokens))
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
                  "strip_accents": None, "tokenize_chinese_chars": True, "model_max_length": self.model_max_length,
                  "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}
        write_atomically(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")

    # -------------------------------------------------------------------------- encoding

    def _piece_ids(self, piece: str) -> list[int]:
        """Ids of one whitespace-free piece of cleaned text, cached (the hot path)."""
        ids = self._piece_cache.get(piece)
        if ids is None:
            ids = [self.vocab[token]
                   for word in pre_tokenize_piece(piece, self.do_lower_case)
                   for token in wordpiece(word, self.vocab, "[UNK]", self.max_input_chars_per_word,
                                          self._max_piece_chars)]
            if len(self._piece_cache) >= 1_000_000:  # bound the memory on endless streams of new words
                self._piece_cache.clear()
            self._piece_cache[piece] = ids
        return ids

    def _ids_without_specials(self, text: str) -> list[int]:
        """Ids of a text, without [CLS]/[SEP] around it."""
        ids = []
        chunks = self._special_tokens_pattern.split(text) if "[" in text else (text,)
        for index, chunk in enumerate(chunks):
            if index % 2 == 1:  # re.split puts the captured special tokens at odd indices
                ids.append(self.vocab[chunk])
                continue
            for piece in split_pieces(chunk):
                ids.extend(self._piece_ids(piece))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Text to vocabulary pieces, without special tokens around it.

        >>> tokenizer.tokenize("Héllo, unaffable world!")  # doctest: +SKIP
        ['hello', ',', 'una', '##ffa', '##ble', 'world', '!']
        """
        return [self.ids_to_tokens[token_id] for token_id in self._ids_without_specials(text)]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Text to ids: [CLS] pieces... [SEP]."""
        ids = self._ids_without_specials(text)
        return [self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab.get(token, self.unk_token_id) for token in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.ids_to_tokens[token_id] for token_id in _as_id_list(ids, self.vocab_size)]

    def decode(self, ids, skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = False) -> str:
        """Ids back to text: pieces joined by spaces, "##" continuations glued to the piece
        before. The result is the normalised text with one space between words (so
        `decode(encode(x)) == " ".join(pre_tokenize(x))` when x has no [UNK]); accents and
        case removed by normalisation do not come back.

        With `clean_up_tokenization_spaces=True` the joined text is tidied as `transformers`
        tidies it with the same flag: no space before . , ? ! and contractions joined again
        ("it ' s" -> "it's", across the pieces that held them).

        >>> tokenizer.decode(tokenizer.encode("Hello, unaffable world!"))  # doctest: +SKIP
        'hello , unaffable world !'
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]  # one id, as transformers decodes it
        special_ids = set(self.all_special_ids) if skip_special_tokens else set()
        parts = []
        for token_id in _as_id_list(ids, self.vocab_size):
            if token_id in special_ids:
                continue
            token = self.ids_to_tokens[token_id]
            # Like Rust's decoder: only a piece that follows another loses its "##".
            if parts and token.startswith(CONTINUATION_PREFIX):
                part = token[len(CONTINUATION_PREFIX):]
            elif parts:
                part = " " + token
            else:
                part = token
            parts.append(part)
        text = "".join(parts)
        if clean_up_tokenization_spaces:
            for old, new in _DECODE_CLEANUPS:
                text = text.replace(old, new)
        return text

    # --------------------------------------------------------------------------- batches

    def __call__(self, texts, text_pairs=None, padding: bool | str = True, truncation: bool = True,
                 max_length: int | None = None, return_tensors: str | None = "pt",
                 is_split_into_words: bool = False) -> dict:
        """Encode a batch for the model, as `transformers` tokenizers do.

        texts: a list of strings (or one string); with `is_split_into_words=True`, a list
        of word lists (or one word list): each word is tokenised on its own and
        `word_ids` tells, for every position, which word it came from (None for [CLS],
        [SEP] and padding), which is how token classification aligns word labels.
        text_pairs: the second texts; a pair is encoded as [CLS] a [SEP] b [SEP] with
        token_type_ids 0 for "[CLS] a [SEP]" and 1 for "b [SEP]".
        truncation: True (or "longest_first") cuts to max_length (default `model_max_length`),
        taking tokens from the longer of the two texts first, as HF's "longest_first" does;
        False (or "do_not_truncate", None) does not cut.
        padding: True or "longest" pads to the longest row, "max_length" to max_length,
        False not at all. Padding is [PAD] with attention_mask 0 and token type 0.
        return_tensors: "pt" gives torch LongTensors (B, T), "np" numpy int64 arrays; None
        gives Python lists.
        """
        if is_split_into_words:
            single = bool(texts) and isinstance(texts[0], str)
        else:
            single = isinstance(texts, str)
        if single:
            texts = [texts]
            text_pairs = [text_pairs] if text_pairs is not None else None
        try:
            texts = list(texts)  # a generator would be used up by the checks below, and encode nothing
        except TypeError:
            raise TypeError(f"texts must be a string or a list of strings, got {texts!r}") from None
        if isinstance(text_pairs, str):
            raise TypeError(f"text_pairs is one string but texts a list of {len(texts)}; pass a list of "
                            f"{len(texts)} second texts")
        if text_pairs is not None:
            text_pairs = list(text_pairs)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(text_pairs)} text_pairs; they must pair up one to one")
        if padding is True:
            padding = "longest"
        if padding not in (False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False")
        if truncation not in TRUNCATION:  # a strategy's name is a true string, whatever it says
            raise ValueError(f"truncation={truncation!r} is not supported: use True ('longest_first') or False "
                             f"('do_not_truncate')")
        truncation = TRUNCATION[truncation]
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise ValueError(f"max_length must be a positive integer or None, got {max_length!r}")
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors={return_tensors!r}: use 'pt', 'np' or None")
        if max_length is None and (truncation or padding == "max_length"):
            max_length = self.model_max_length
        n_special = 2 if text_pairs is None else 3
        if truncation and max_length < n_special:
            # transformers warns and returns the text uncut, longer than max_length.
            raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens; "
                             f"use max_length >= {n_special} or truncation=False")

        for name, batch in (("texts", texts), ("text_pairs", text_pairs or [])):
            for index, text in enumerate(batch):
                if is_split_into_words:
                    if isinstance(text, str) or not all(isinstance(word, str) for word in text):
                        raise TypeError(f"{name}[{index}] is {text!r}; with is_split_into_words=True each must be "
                                        f"a list of words (strings)")
                elif not isinstance(text, str):
                    raise TypeError(f"{name}[{index}] is {text!r}; each text must be a string")

        rows = []
        for index, text in enumerate(texts):
            first = self._encode_sequence(text, is_split_into_words)
            second = self._encode_sequence(text_pairs[index], is_split_into_words) if text_pairs is not None else None
            if truncation:
                first, second = _truncate_longest_first(first, second, max_length - n_special)
            rows.append(self._with_special_tokens(first, second))

        if padding == "longest":
            target = max((len(row["input_ids"]) for row in rows), default=0)
        elif padding == "max_length":
            target = max_length
        else:
            target = 0
        batch = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        if is_split_into_words:
            batch["word_ids"] = []
        for row in rows:
            n_pad = max(0, target - len(row["input_ids"]))
            batch["input_ids"].append(row["input_ids"] + [self.pad_token_id] * n_pad)
            batch["attention_mask"].append([1] * len(row["input_ids"]) + [0] * n_pad)
            batch["token_type_ids"].append(row["token_type_ids"] + [0] * n_pad)
            if is_split_into_words:
                batch["word_ids"].append(row["word_ids"] + [None] * n_pad)

        if return_tensors is not None:
            lengths = {len(ids) for ids in batch["input_ids"]}
            if len(lengths) > 1:
                raise ValueError("rows have different lengths; use padding=True to get tensors")
            # Imported only when asked: the tokenizer itself needs neither torch nor numpy.
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if return_tensors == "pt":
                    import torch
                    batch[key] = torch.tensor(batch[key], dtype=torch.long)
                else:
                    import numpy
                    batch[key] = numpy.array(batch[key], dtype=numpy.int64)
        return batch

    def _encode_sequence(self, text, is_split_into_words: bool) -> tuple[list[int], list[int | None]]:
        """(ids, word index of each id) for one text or one list of words."""
        if not is_split_into_words:
            ids = self._ids_without_specials(text)
            return ids, [None] * len(ids)
        if isinstance(text, str):
            raise TypeError("with is_split_into_words=True each text must be a list of words, not a string")
        ids, word_ids = [], []
        for word_index, word in enumerate(text):
            word_pieces = self._ids_without_specials(word)
            ids.extend(word_pieces)
            word_ids.extend([word_index] * len(word_pieces))
        return ids, word_ids

    def _with_special_tokens(self, first, second) -> dict:
        """[CLS] a [SEP] (b [SEP]), with token types 0 then 1 and word ids None on specials."""
        ids = [self.cls_token_id, *first[0], self.sep_token_id]
        word_ids = [None, *first[1], None]
        token_type_ids = [0] * len(ids)
        if second is not None:
            ids += [*second[0], self.sep_token_id]
            word_ids += [*second[1], None]
            token_type_ids += [1] * (len(second[0]) + 1)
        return {"input_ids": ids, "token_type_ids": token_type_ids, "word_ids": word_ids}


def _truncate_longest_first(first, second, budget: int):
    """Shorten (ids, word_ids) pairs so that together they hold at most `budget` tokens,
    the way Rust `tokenizers` does "longest_first": the shorter text keeps everything if
    the longer can take the cut alone; otherwise each keeps half (the longer the odd one).

    >>> cut = lambda n1, n2, budget: [len(part[0]) for part in _truncate_longest_first(
    ...     ([0] * n1, [None] * n1), ([0] * n2, [None] * n2), budget)]
    >>> cut(2, 8, 7), cut(8, 2, 7), cut(4, 4, 7), cut(8, 5, 5)
    ([2, 5], [5, 2], [3, 4], [3, 2])
    """
    if second is None:
        return (first[0][:budget], first[1][:budget]), None
    n_first, n_second = len(first[0]), len(second[0])
    if n_first + n_second <= budget:
        return first, second
    shorter, longer = min(n_first, n_second), max(n_first, n_second)
    keep_longer = longer if shorter > budget else max(shorter, budget - shorter)
    keep_shorter = shorter
    if keep_shorter + keep_longer > budget:
        keep_shorter = budget // 2
        keep_longer = keep_shorter + budget % 2
    keep_first, keep_second = (keep_shorter, keep_longer) if n_first <= n_second else (keep_longer, keep_shorter)
    return ((first[0][:keep_first], first[1][:keep_first]), (second[0][:keep_second], second[1][:keep_second]))


def _as_id_list(ids, vocab_size: int) -> list[int]:
    """Accept a list, a tuple or a 1-D tensor/array of ids; reject ids outside the vocabulary."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids is None or isinstance(ids, (str, int)):
        raise TypeError(f"ids must be a list or 1-D tensor of token ids, got {ids!r}")
    ids = list(ids)
    if ids and isinstance(ids[0], list):
        raise ValueError(f"ids must be one sequence of token ids, got a batch of {len(ids)} sequences; decode each "
                         f"row: [tokenizer.decode(row) for row in ids]")
    for token_id in ids:
        if not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise ValueError(f"id {token_id!r} is not in the vocabulary (0..{vocab_size - 1})")
    return ids


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file, then rename it: a crash mid-write leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
