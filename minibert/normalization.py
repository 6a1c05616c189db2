"""BERT's normalisation and pre-tokenisation: raw text in, a list of words out.

Before WordPiece sees a word, BERT (google-research/bert `tokenization.py`, and the
`BertNormalizer` + `BertPreTokenizer` of Hugging Face `tokenizers`) cleans the text and
cuts it into words:

1. clean: drop NUL, U+FFFD and control, format, private-use and surrogate characters
   (Cc Cf Co Cs, but not tab/newline/carriage return), turn whitespace into spaces;
2. put spaces around CJK ideographs, so that each one becomes a word of its own;
3. if lowercasing: decompose (NFD), drop the combining marks (category Mn) and lowercase;
4. split on whitespace, then split every punctuation character off as a word of its own
   (all ASCII non-alphanumerics count, plus Unicode categories P*).

    >>> pre_tokenize("Héllo, WORLD!\\tÇa va?")
    ['hello', ',', 'world', '!', 'ca', 'va', '?']
    >>> pre_tokenize("BERT不是中文")
    ['bert', '不', '是', '中', '文']

Where the two references differ, we follow the Rust `tokenizers` implementation (the one
`transformers.BertTokenizer` runs today); each place is marked "Rust and Python differ".
All character properties come from Python's own `unicodedata`. The Rust crates use their
own, older Unicode tables (Unicode 8 for the categories), so on characters added or
re-categorised since, all in rare scripts, the two disagree; tests/test_tokenizer.py
measures that set (559 code points with Python 3.11) and checks it stays out of the
blocks that ordinary text uses.

Speed matters because the tokenizer and the trainer run this over the whole corpus: text
that is pure ASCII (all of the arXiv corpus) takes a shortcut through `str` methods and one
regex, and everything is written so that it can be cached per whitespace-separated piece.
"""

import re
import unicodedata
from functools import lru_cache

# ---------------------------------------------------------------------------------------
# Character classes


def is_whitespace(char: str) -> bool:
    """Whitespace becomes a plain space. Python's `str.isspace` is Unicode White_Space
    plus U+001C..U+001F, and those four are control characters, removed before this is
    asked, so on what is left it agrees with Rust's `char::is_whitespace`.

    >>> [is_whitespace(c) for c in " \\t\\u00a0\\u3000\\u2028x"]
    [True, True, True, True, True, False]
    """
    return char.isspace()


def is_control(char: str) -> bool:
    """Control, format, private-use and surrogate characters (Cc Cf Co Cs) are dropped.
    Tab, newline and carriage return are technically controls, but BERT counts them as
    whitespace.

    Rust and Python differ: the Python reference drops every C* category, unassigned
    code points (Cn) included; the Rust normalizer's `is_other` leaves Cn out, so an
    unassigned code point stays in its word (and usually makes it [UNK]). We follow Rust.

    >>> [is_control(c) for c in "\\x01\\u200b\\ue000\\t\\n a\\u0378"]
    [True, True, True, False, False, False, False, False]
    """
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs")


@lru_cache(maxsize=None)
def is_punctuation(char: str) -> bool:
    """Every ASCII character that is not a letter, digit or space counts, even `$ ^ ``
    which Unicode files under symbols; beyond ASCII, the categories P* (Pc Pd Ps Pe Pi Pf Po).

    >>> [is_punctuation(c) for c in "$^-a9«§€"]
    [True, True, True, False, False, True, True, False]
    """
    code_point = ord(char)
    if 33 <= code_point <= 47 or 58 <= code_point <= 64 or 91 <= code_point <= 96 or 123 <= code_point <= 126:
        return True
    return unicodedata.category(char).startswith("P")


# The CJK Unified Ideograph blocks (and their compatibility blocks). Hangul, Hiragana and
# Katakana are not here: those scripts put spaces between words themselves.
# Rust and Python differ: google-research and transformers' Python code start the
# extension-E block at U+2B820, the Rust normalizer at U+2B920 (a typo there that became
# behaviour). We follow Rust, so U+2B820..U+2B91F stay inside words.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk_ideograph(code_point: int) -> bool:
    """Whether a code point lies in one of the CJK_RANGES.

    >>> is_cjk_ideograph(ord("中")), is_cjk_ideograph(ord("か"))
    (True, False)
    """
    return any(low <= code_point <= high for low, high in CJK_RANGES)


# ---------------------------------------------------------------------------------------
# Step 1 and 2: cleaning, one character at a time


class _CleaningTable(dict):
    """A `str.translate` table that fills itself: the first time a code point is seen,
    decide what cleaning makes of it (None = drop it, " " = whitespace, " 中 " = a CJK
    ideograph set apart) and remember it. Ordinary characters map to themselves."""

    def __missing__(self, code_point: int):
        char = chr(code_point)
        if code_point == 0 or code_point == 0xFFFD or is_control(char):
            replacement = None
        elif is_whitespace(char):
            replacement = " "
        elif is_cjk_ideograph(code_point):
            replacement = f" {char} "
        else:
            replacement = code_point
        self[code_point] = replacement
        return replacement


_CLEANING_TABLE = _CleaningTable()
# In ASCII only these need work; \t \n \r and space are left for str.split().
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Steps 1 and 2: drop invalid and control characters, whitespace to spaces, spaces
    around CJK ideographs. Dropping happens before splitting, so a control character
    inside a word joins its two halves, as in both references.

    >>> clean_text("a\\u200bb\\x00c\\td\\ufffd中e")
    'abc d 中 e'
    """
    if text.isascii():
        return _ASCII_CONTROLS.sub("", text) if _ASCII_CONTROLS.search(text) else text
    return text.translate(_CLEANING_TABLE)


def split_pieces(text: str) -> list[str]:
    """Clean the text and split it at whitespace: the pieces every later step works on
    one at a time (and that the tokenizer caches).

    >>> split_pieces(" Hello,\\u00a0world! ")
    ['Hello,', 'world!']
    """
    return clean_text(text).split()


# ---------------------------------------------------------------------------------------
# Step 3: accents and case, one piece at a time


def strip_accents(text: str) -> str:
    """Canonical decomposition, then drop the non-spacing marks it produced.

    >>> strip_accents("Crème brûlée, Ångström")
    'Creme brulee, Angstrom'
    """
    return "".join(char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) != "Mn")


def lowercase(text: str) -> str:
    """Lowercase one character at a time, as Rust's `char::to_lowercase` does.

    Rust and Python differ: Python's `str.lower` writes a capital sigma at the end of a
    word as final sigma "ς" (context-dependent), Rust always writes "σ". We follow Rust by
    turning every capital sigma into "σ" first; Python applies no other rule with context.

    >>> lowercase("ΟΔΟΣ İstanbul")
    'οδοσ i̇stanbul'
    """
    return text.replace("Σ", "σ").lower()


def normalize_piece(piece: str, do_lower_case: bool = True) -> str:
    """Step 3 on one cleaned piece. Rust strips accents and then lowercases, Python
    lowercases first; we follow Rust. With Python's Unicode tables the order changes
    nothing (checked for every code point): lowercasing "İ" gives "i" + U+0307, but
    stripping first decomposes "İ" into "I" + U+0307 and drops the mark all the same.
    Cased models (do_lower_case=False) skip the step entirely, as Rust does; the Python
    reference would still apply NFC.

    >>> normalize_piece("Ünïcödé"), normalize_piece("İ"), normalize_piece("Ünï", do_lower_case=False)
    ('unicode', 'i', 'Ünï')
    """
    if not do_lower_case:
        return piece
    if piece.isascii():
        return piece.lower()
    return lowercase(strip_accents(piece))


# ---------------------------------------------------------------------------------------
# Step 4: punctuation


_ASCII_PUNCTUATION = "!-/:-@\\[-`{-~"
_ASCII_WORDS_AND_PUNCTUATION = re.compile(f"[{_ASCII_PUNCTUATION}]|[^{_ASCII_PUNCTUATION}]+")


def split_on_punctuation(word: str) -> list[str]:
    """Every punctuation character becomes a word of its own; the runs between stay whole.

    >>> split_on_punctuation("e.g.,x^2")
    ['e', '.', 'g', '.', ',', 'x', '^', '2']
    """
    if word.isalnum():  # the common case: no punctuation at all
        return [word]
    if word.isascii():
        return _ASCII_WORDS_AND_PUNCTUATION.findall(word)
    words, current = [], []
    for char in word:
        if is_punctuation(char):
            if current:
                words.append("".join(current))
                current = []
            words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def pre_tokenize_piece(piece: str, do_lower_case: bool = True) -> list[str]:
    """Steps 3 and 4 on one whitespace-free piece that `split_pieces` produced.

    >>> pre_tokenize_piece("(Müller,2019)")
    ['(', 'muller', ',', '2019', ')']
    """
    words = split_on_punctuation(normalize_piece(piece, do_lower_case))
    if not piece.isascii():
        # Decomposition and lowercasing never create whitespace in the Unicode tables we
        # know of, but the reference splits on whitespace after them, so we do too.
        words = [part for word in words for part in word.split()]
    return words


def pre_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """The whole pipeline: raw text to the words WordPiece will cut into pieces.

    >>> pre_tokenize("Don't panic: it's 3.14 (roughly).")
    ['don', "'", 't', 'panic', ':', 'it', "'", 's', '3', '.', '14', '(', 'roughly', ')', '.']
    """
    return [word for piece in split_pieces(text) for word in pre_tokenize_piece(piece, do_lower_case)]
