"""Fine-tuning data, from files to model inputs and back.

Readers: labelled texts from JSON Lines, CSV or TSV (read_classification), tagged words from
CoNLL columns (read_conll; IOB1 converted to BIO). A bad line is one error that names the
file, the line and what was expected: not UTF-8, not JSON, a missing field or column, a list
where a label belongs, a line with one column, a tag that is not O, B-type or I-type.
The built-in tasks: arXiv10 (title + abstract -> one of 10 arXiv categories) and SciERC
(each word -> a BIO entity tag: Task, Method, Metric, Material, OtherScientificTerm, Generic).

The subtle part is the word <-> sub-word alignment. WordPiece cuts "segmentation" into
"segment", "##ation"; the label belongs to the word, so the first piece carries it and
the others get -100, which the loss ignores. Predictions go the other way: a word's tag
is the tag predicted at its first piece. A sentence longer than the model's window is cut
into word windows that fit, never mid-word, so no gold word goes unscored.

    python -m minibert.finetuning_data --vocab=DIR   # print a sample of each task, aligned (DIR: a folder with vocab.txt)
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .overrides import run_from_command_line
from .paths import data_file

# ---------------------------------------------------------------------------- reading


def iob1_to_bio(tags):
    """IOB1 (an entity starts with I-, B- only where two of one type touch) -> BIO (IOB2:
    every entity starts with B-). The spans are the same; BIO is what the head learns.

    >>> iob1_to_bio(["I-Task", "I-Task", "O", "I-Method", "B-Method", "I-Method"])
    ['B-Task', 'I-Task', 'O', 'B-Method', 'B-Method', 'I-Method']
    """
    bio, previous_type = [], None
    for tag in tags:
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and kind != previous_type:
            tag = f"B-{kind}"
        bio.append(tag)
        previous_type = kind if prefix in ("B", "I") else None
    return bio


def text_lines(path):
    """(line number, text) for each line of a UTF-8 file. Bytes are decoded one line at a time
    so that a file in another encoding is reported at its first bad line, not as a bare
    UnicodeDecodeError from somewhere in a buffer."""
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, 1):
            try:
                yield line_number, raw.decode("utf-8-sig" if line_number == 1 else "utf-8")  # -sig: a leading BOM
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not UTF-8 text (byte {raw[error.start]:#04x} at column "
                                 f"{error.start + 1}); save the file as UTF-8") from None


def read_conll(path, token_column=0, tag_column=-1, scheme="iob1"):
    """A CoNLL file -> list of (words, tags) sentences. Blank lines end sentences;
    -DOCSTART- lines are skipped. Columns are picked by index (negative counts from the end).
    scheme="iob1" converts to BIO, "bio" keeps the tags; either way a tag is O, B-type or I-type."""
    if scheme not in ("iob1", "bio"):
        raise ValueError(f"scheme must be 'iob1' or 'bio', got {scheme!r}")
    sentences, words, tags = [], [], []
    for line_number, line in text_lines(path):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if words:
                sentences.append((words, iob1_to_bio(tags) if scheme == "iob1" else tags))
            words, tags = [], []
            continue
        where = f"{path}:{line_number}:"
        if len(columns) == 1:  # else the word itself would be read as its tag (column -1)
            raise ValueError(f"{where} one column ({line.strip()!r}); a CoNLL line needs a token and a tag column")
        for setting, index in (("token_column", token_column), ("tag_column", tag_column)):
            if not -len(columns) <= index < len(columns):
                raise ValueError(f"{where} {setting} {index} does not exist: the line has {len(columns)} columns "
                                 f"({line.strip()!r})")
        tag = columns[tag_column]
        if tag != "O" and (tag[:2] not in ("B-", "I-") or len(tag) == 2):
            raise ValueError(f"{where} tag {tag!r} (column {tag_column}) is not O, B-type or I-type")
        words.append(columns[token_column])
        tags.append(tag)
    if words:
        sentences.append((words, iob1_to_bio(tags) if scheme == "iob1" else tags))
    return sentences


def labelled_text(record, text_fields, label_field, separator, where, missing="record has no field"):
    """One record (a dict) -> (text, label): the text fields joined, the label as a string;
    both stripped of surrounding spaces.
    An empty or null text field is left out (a paper without a title still has its abstract),
    but a record with no text at all, or with no label, is an error: an empty label would
    become a class of its own."""
    absent = [k for k in (*text_fields, label_field) if k not in record]
    if absent:
        raise ValueError(f"{where} the {missing} {absent[0]!r}" + (f" (nor {absent[1:]})" if len(absent) > 1 else ""))
    label = record[label_field]
    # Not a float or a bool: 2 and 2.0 would be two classes, and true would become 'True'.
    if label is not None and (not isinstance(label, (str, int)) or isinstance(label, bool)):
        kind = type(label).__name__
        shown = f"a {kind}" if isinstance(label, (list, dict)) else f"{label!r} (a {kind})"
        raise ValueError(f"{where} field {label_field!r} is {shown}; a label is a string or an integer")
    if label is None or not str(label).strip():
        raise ValueError(f"{where} field {label_field!r} is {'null' if label is None else 'empty'}; "
                         f"every text needs a label")
    texts = [str(record[k]).strip() for k in text_fields if record[k] is not None]
    if not any(texts):
        raise ValueError(f"{where} no text: {', '.join(map(repr, text_fields))} "
                         f"{'are' if len(text_fields) > 1 else 'is'} empty or null")
    return separator.join(text for text in texts if text), str(label).strip()  # "pos " is "pos"


def read_jsonl(path, text_fields=("title", "abstract"), label_field="label", separator=". "):
    """A JSON Lines file -> (texts, labels); several text fields are joined by `separator`."""
    texts, labels = [], []
    for line_number, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_number}:"
        try:
            record = json.loads(line.rstrip("\r\n"))  # the error's column then counts within the line
        except json.JSONDecodeError as error:
            json_file = Path(path).suffix.lower() == ".json"  # a pretty-printed array fails at its line 1
            hint = "; a .json file is read as JSON Lines, one object a line" if json_file else ""
            raise ValueError(f"{where} not valid JSON ({error.msg} at column {error.colno}){hint}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where} expected a JSON object with fields {[*text_fields, label_field]}, "
                             f"got {type(record).__name__} {line.strip()[:40]!r}")
        text, label = labelled_text(record, text_fields, label_field, separator, where)
        texts.append(text)
        labels.append(label)
    return texts, labels


def delimited_records(reader, path):
    """The records of a csv reader; a malformed one is reported at the line where it starts (a
    quoted field may hold line breaks, so the reader's line number is where it gave up)."""
    while True:
        start = reader.line_num + 1
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            reason = "a quote opened here is never closed" if str(error) == "unexpected end of data" else error
            raise ValueError(f"{path}:{start}: {reason} (a CSV field that holds a comma, a quote or a line break "
                             f"is quoted, and its quotes are doubled)") from None


def read_delimited(path, text_fields, label_field, delimiter=",", separator=". "):
    """A CSV or TSV file with a header row -> (texts, labels); columns are found by name.
    CSV quotes a field that holds a comma; TSV has no quoting (a text cannot hold a tab), so its
    quotes are text: read with CSV's rules, a text that starts with `"` would swallow the lines after it."""
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    # csv refuses a field over 131,072 characters by default; a long document reads as it does
    # from JSON Lines. 2**31 - 1: the largest limit every platform's C long takes (sys.maxsize may not).
    csv.field_size_limit(2**31 - 1)
    # strict: a malformed quote is an error, not text glued together (csv's default)
    reader = csv.DictReader((line for _, line in text_lines(path)), delimiter=delimiter, quoting=quoting, strict=True)
    if not reader.fieldnames:
        raise ValueError(f"{path}: the file is empty or its first line is blank; it needs a header row naming "
                         f"its columns ({', '.join((*text_fields, label_field))})")
    missing = [k for k in (*text_fields, label_field) if k not in reader.fieldnames]
    if missing:
        raise ValueError(f"{path}:1: no column {missing[0]!r}; the header has {', '.join(reader.fieldnames)}")
    texts, labels = [], []
    for record in delimited_records(reader, path):
        where = f"{path}:{reader.line_num}:"
        if None in record:  # csv's key for the fields past the header's: the row's columns have shifted
            hint = "quote a text that holds a comma" if delimiter == "," else "a text cannot hold a tab"
            raise ValueError(f"{where} {len(reader.fieldnames) + len(record[None])} fields, the header has "
                             f"{len(reader.fieldnames)}; {hint}")
        record = {k: v for k, v in record.items() if v is not None}  # None: a short row has no such cell
        text, label = labelled_text(record, text_fields, label_field, separator, where, missing="row has no value for")
        texts.append(text)
        labels.append(label)
    return texts, labels


def read_classification(path, text_fields, label_field):
    """Labelled texts from JSON Lines, CSV or TSV, told apart by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, text_fields, label_field)
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, text_fields, label_field, delimiter="," if suffix == ".csv" else "\t")
    raise ValueError(f"{path}: a classification file is .jsonl (or .json), .csv or .tsv, "
                     f"got {suffix or 'no extension'!r}")


def arxiv10(split, data_dir=None):
    return read_jsonl(data_file(f"classification/arxiv10/{split}.jsonl", data_dir))


def scierc(split, data_dir=None):
    return read_conll(data_file(f"ner/scierc/conll/{split}.txt", data_dir), scheme="iob1")


class LabelMap:
    """Label names <-> ids, built from the training labels in sorted order (so the same
    data always gives the same ids) and saved with the model."""

    def __init__(self, names):
        self.names = list(names)
        self.ids = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_labels(cls, labels):
        return cls(sorted(set(labels)))

    @classmethod
    def from_bio_tags(cls, tags):
        """"O" plus B- and I- of every entity type seen: a type whose entities are all one
        word long in the training data still needs its I- tag for longer ones elsewhere."""
        types = {tag.partition("-")[2] for tag in tags if tag != "O"}
        return cls(["O"] + sorted(f"{prefix}-{kind}" for kind in types for prefix in "BI"))

    def encode(self, label, unseen=None):
        """The id of `label`; a label the training data never had is an error, or `unseen` if given."""
        if label not in self.ids:
            if unseen is not None:
                return unseen
            raise ValueError(f"label {label!r} was not in the training data; known: {self.names}")
        return self.ids[label]

    def decode(self, index):
        return self.names[index]

    def __len__(self):
        return len(self.names)


# ----------------------------------------------------------------------- aligning


@dataclass
class TaggedWindow:
    """Part of a sentence that fits the model: words[start:end] of sentence `sentence`."""
    sentence: int
    start: int
    end: int
    input_ids: list
    labels: list       # per position: the word's tag id at its first piece, else -100
    word_ids: list     # per position: index of the word within the sentence, or None


def word_windows(piece_counts, room):
    """Cut a sentence into consecutive word ranges whose pieces fit in `room`.

    >>> word_windows([2, 3, 1, 4], room=5)
    [(0, 2), (2, 4)]

    A single word longer than the room gets a window of its own and is truncated to it
    (its first piece, the one that carries the label, is always kept).
    """
    windows, start, used = [], 0, 0
    for index, count in enumerate(piece_counts):
        if used + count > room and index > start:
            windows.append((start, index))
            start, used = index, 0
        used += count
    if start < len(piece_counts):
        windows.append((start, len(piece_counts)))
    return windows


def encode_tagged(sentences, tokenizer, label_map, max_length, unseen=None):
    """(words, tags) sentences -> TaggedWindows of at most max_length positions. A tag not in
    label_map is an error, or gets the id `unseen` if given (-100: left out of the loss)."""
    room = max_length - 2  # [CLS] and [SEP]
    windows = []
    for sentence_index, (words, tags) in enumerate(sentences):
        piece_ids = [tokenizer.encode(word, add_special_tokens=False) for word in words]
        for start, end in word_windows([len(p) for p in piece_ids], room):
            input_ids, labels, word_ids = [tokenizer.cls_token_id], [-100], [None]
            for word in range(start, end):
                for k, piece in enumerate(piece_ids[word][:room]):
                    input_ids.append(piece)
                    labels.append(label_map.encode(tags[word], unseen) if k == 0 else -100)
                    word_ids.append(word)
            input_ids, labels, word_ids = input_ids[:room + 1], labels[:room + 1], word_ids[:room + 1]
            input_ids.append(tokenizer.sep_token_id)
            labels.append(-100)
            word_ids.append(None)
            windows.append(TaggedWindow(sentence_index, start, end, input_ids, labels, word_ids))
    return windows


def words_from_predictions(sentences, windows, window_predictions, label_map, fallback="O"):
    """Per-position predicted ids of each window -> per-word tag lists for every sentence.

    A word gets the tag predicted at its first piece. A word with no piece at all (text
    that normalises to nothing, such as a lone control character) gets `fallback`; the
    count of such words is returned so it can be reported rather than hidden.
    """
    predicted = [[None] * len(words) for words, _ in sentences]
    for window, predictions in zip(windows, window_predictions):
        seen = set()
        for position, word in enumerate(window.word_ids):
            if word is not None and word not in seen:
                predicted[window.sentence][word] = label_map.decode(int(predictions[position]))
                seen.add(word)
    unaligned = sum(tag is None for tags in predicted for tag in tags)
    return [[tag if tag is not None else fallback for tag in tags] for tags in predicted], unaligned


# ------------------------------------------------------------------------ sample


def main(argv=None):
    import argparse
    from .tokenizer import WordPieceTokenizer
    parser = argparse.ArgumentParser(description="Print a sample of each fine-tuning task, tokenized and aligned.")
    parser.add_argument("--vocab", required=True, help="a directory with vocab.txt")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--max_length", type=int, default=128)
    args = parser.parse_args(argv)
    tokenizer = WordPieceTokenizer.from_pretrained(args.vocab)

    texts, labels = arxiv10("train", args.data_dir)
    print(f"arXiv10 train: {len(texts):,} papers, {len(set(labels))} labels")
    for text, label in list(zip(texts, labels))[:2]:
        pieces = tokenizer.tokenize(text)
        print(f"  label {label!r}; {len(pieces)} pieces (first {args.max_length - 2} kept): {' '.join(pieces[:30])} ...")

    sentences = scierc("train", args.data_dir)
    label_map = LabelMap.from_bio_tags(tag for _, tags in sentences for tag in tags)
    print(f"\nSciERC train: {len(sentences):,} sentences, tags {label_map.names}")
    windows = encode_tagged(sentences[:3], tokenizer, label_map, args.max_length)
    for window in windows[:2]:
        print(f"  sentence {window.sentence}, words {window.start}..{window.end}")
        for token_id, label, word in zip(window.input_ids, window.labels, window.word_ids):
            shown = label_map.decode(label) if label != -100 else "-100"
            print(f"    {tokenizer.ids_to_tokens[token_id]:>18s}  word {str(word):>4s}  {shown}")


if __name__ == "__main__":
    run_from_command_line(main)
