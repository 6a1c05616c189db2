"""Tasks as data. What train_mtl.py fine-tunes on is a list of tasks, written in a JSON file
(--tasks) or built in (arXiv10 + SciERC from the data directory):

    [{"name": "topic", "kind": "classification", "train": "a/train.csv", "dev": "a/dev.csv",
      "test": "a/test.csv", "text_fields": ["title", "text"], "label_field": "label"},
     {"name": "entities", "kind": "tagging", "train": "b/train.txt", "dev": "b/dev.txt",
      "test": "b/test.txt", "token_column": 0, "tag_column": -1, "scheme": "bio"}]

A kind knows how to read its files, turn examples into batches, build its head, compute its
loss through that head, predict and score; the training loop only asks a task for its loss
on some training examples and for its scores on a split.

    classification  JSON Lines, CSV or TSV (by extension), text fields joined, one label per
                    text; a mean-pooling head; accuracy and macro-F1
    tagging         CoNLL, token and tag columns by index, BIO tags (IOB1 converted on
                    reading); a per-token head; exact-span precision, recall, F1 (conlleval)

Paths in a task file are relative to the file. Label ids come from the whole training split.
A dev or test label that training never had cannot be predicted: it is counted in
`task.unseen` (train_mtl.py reports it in results.json) and scored as an error.
"""

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .batching import padded
from .finetuning_data import LabelMap, encode_tagged, read_classification, read_conll, words_from_predictions
from .heads import SentenceClassificationHead, TokenClassificationHead, mean_pool
from .metrics import accuracy, confusion_matrix, macro_f1, span_scores
from .paths import data_file

SPLITS = ("train", "dev", "test")

# ------------------------------------------------------------------- model inputs


class ClassificationData:
    """Texts as token-id lists (truncated to max_length), their labels as names and ids."""

    def __init__(self, examples, tokenizer, label_map, max_length):
        texts = [text for text, _ in examples]
        self.input_ids = tokenizer(texts, padding=False, truncation=True, max_length=max_length,
                                   return_tensors=None)["input_ids"]
        self.gold = [label for _, label in examples]
        self.labels = [label_map.encode(label, unseen=-100) for label in self.gold]  # -100: not in the loss
        self.truncated, self.max_length = sum(len(ids) == max_length for ids in self.input_ids), max_length
        self.pad_id = tokenizer.pad_token_id

    def __len__(self):
        return len(self.labels)

    def count(self, indices):
        """How many items the loss averages over: one per text."""
        return len(indices)

    def batch(self, indices):
        input_ids, attention_mask = padded([self.input_ids[i] for i in indices], self.pad_id)  # (B, T)
        return input_ids, attention_mask, torch.tensor([self.labels[i] for i in indices])  # labels (B,)


class TaggingData:
    """Sentences cut into windows that fit, with first-piece labels."""

    def __init__(self, sentences, tokenizer, label_map, max_length):
        self.sentences = sentences
        self.windows = encode_tagged(sentences, tokenizer, label_map, max_length, unseen=-100)
        self.pad_id = tokenizer.pad_token_id

    def __len__(self):
        return len(self.windows)

    def count(self, indices):
        """How many items the loss averages over: the labelled (first) pieces."""
        return sum(sum(label != -100 for label in self.windows[i].labels) for i in indices)

    def batch(self, indices):
        rows = [self.windows[i] for i in indices]
        input_ids, attention_mask = padded([w.input_ids for w in rows], self.pad_id)  # (B, T)
        labels = torch.full(input_ids.shape, -100, dtype=torch.long)  # (B, T)
        for i, w in enumerate(rows):
            labels[i, :len(w.labels)] = torch.tensor(w.labels)
        return input_ids, attention_mask, labels


class Features:
    """A frozen backbone's output for a dataset, computed once. For classification the
    mean-pooled vector (H,) of each text is kept and handed to the head as a one-token
    sequence (B, 1, H): mean pooling of one token is that token, so the head runs unchanged.
    For tagging, every window's hidden states (T, H)."""

    def __init__(self, model, data, pooled, batch_size=64):
        device = next(model.parameters()).device
        self.pooled, self.rows = pooled, []
        model.eval()
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                input_ids, attention_mask, _ = data.batch(range(start, min(start + batch_size, len(data))))
                attention_mask = attention_mask.to(device)
                hidden = model.get_encoder_output(input_ids.to(device), attention_mask)  # (b, T, H)
                if pooled:
                    self.rows.extend(mean_pool(hidden, attention_mask).cpu())  # b x (H,)
                else:
                    self.rows.extend(h[:int(m.sum())].cpu() for h, m in zip(hidden, attention_mask))  # b x (T_i, H)

    def batch(self, indices):
        """-> (hidden_states, attention_mask) as the head expects them."""
        if self.pooled:
            return torch.stack([self.rows[i] for i in indices])[:, None, :], None  # (B, 1, H)
        rows = [self.rows[i] for i in indices]
        hidden = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T, H), zeros after each row
        lengths = torch.tensor([len(r) for r in rows])
        return hidden, (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).long()  # mask (B, T)


def head_output(model, head, data, indices, features=None, with_loss=False):
    """(loss, logits) of head `head` on the examples `indices` of `data` (loss None unless
    with_loss). With `features`, the frozen backbone's stored output, only the head runs."""
    device = next(model.parameters()).device
    input_ids, attention_mask, labels = data.batch(indices)
    labels = labels.to(device) if with_loss else None
    if features is not None:
        hidden_states, attention_mask = features.batch(indices)
        attention_mask = None if attention_mask is None else attention_mask.to(device)
        return model.heads[head](hidden_states.to(device), attention_mask, labels=labels)
    return model(input_ids.to(device), attention_mask.to(device), head=head, labels=labels)


@torch.no_grad()
def predict(model, head, data, features=None, batch_size=64):
    """Argmax ids of head `head` for every example (classification) or window (tagging)."""
    was_training = model.training
    model.eval()
    predictions = []
    for start in range(0, len(data), batch_size):
        _, logits = head_output(model, head, data, range(start, min(start + batch_size, len(data))), features)
        predictions.extend(logits.argmax(-1).cpu().numpy())
    model.train(was_training)
    return predictions


def subsample(items, fraction, limit, seed):
    """A seeded random subset: `fraction` of the items, at most `limit` (0 = no limit)."""
    n = max(1, int(round(len(items) * fraction)))
    if limit:
        n = min(n, limit)
    if n >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:n])
    return [items[i] for i in keep]


# --------------------------------------------------------------------------- kinds


class Task:
    """What both kinds share: a name, a file per split, and once loaded the label map, the
    encoded splits (task.data["train"], ...) and the unseen dev/test labels."""

    def __init__(self, name, train, dev, test):
        self.name = name
        self.files = {"train": Path(train), "dev": Path(dev), "test": Path(test)}
        self.label_map, self.data, self.unseen = None, {}, {}

    def read(self, split):
        examples = self.read_file(self.files[split])
        if not examples:
            raise ValueError(f"{self.files[split]}: no examples (the {split} split of task {self.name!r} is empty)")
        return examples

    def load(self, tokenizer, max_length=128, fraction=1.0, train_limit=0, eval_limit=0, test_limit=0, seed=0):
        """Read and encode the three splits: training subsampled (fraction, train_limit,
        seeded), dev and test cut to their first eval_limit / test_limit examples (0 = all)."""
        train = self.read("train")
        self.label_map = self.make_label_map(train)  # from the whole split: a subsample must not drop a rare label
        if len(self.label_map) < 2:
            raise ValueError(f"{self.files['train']}: the only label is {self.label_map.names[0]!r}; "
                             f"a {self.kind} task needs at least two")
        self.data["train"] = self.encode(subsample(train, fraction, train_limit, seed), tokenizer, max_length)
        for split, limit in (("dev", eval_limit), ("test", test_limit)):
            examples = self.read(split)[:limit or None]
            self.unseen[split] = dict(Counter(label for label in self.labels(examples)
                                              if label not in self.label_map.ids))
            self.data[split] = self.encode(examples, tokenizer, max_length)
        return self

    def describe(self):
        """A line about the loaded task, and one per split holding labels training never had."""
        lines = [f"{self.name} ({self.kind}): train {len(self.data['train']):,}, dev {len(self.data['dev']):,}, "
                 f"test {len(self.data['test']):,} examples; {len(self.label_map)} labels"]
        lines += [f"{self.name}: {sum(unseen.values())} {split} labels never seen in training, scored as errors: "
                  f"{unseen}" for split, unseen in self.unseen.items() if unseen]
        return "\n".join(lines)

    def loss(self, model, indices, features=None):
        """The head's mean loss on the training examples `indices`."""
        return head_output(model, self.name, self.data["train"], indices, features, with_loss=True)[0]

    def evaluate(self, model, split, features=None):
        """{metric: value} of `model` on a loaded split."""
        return self.score(self.data[split], predict(model, self.name, self.data[split], features))


class Classification(Task):
    kind = "classification"
    options = {"text_fields": list, "label_field": str}  # what a task file gives besides name, kind, files
    main_metric = "accuracy"
    pooled = True  # frozen features: one mean-pooled vector per text

    def __init__(self, name, train, dev, test, text_fields=("text",), label_field="label"):
        super().__init__(name, train, dev, test)
        if not text_fields:
            raise ValueError("field 'text_fields' names no field; a text needs at least one")
        if label_field in text_fields:  # the model would read the answer
            raise ValueError(f"field 'text_fields' holds {label_field!r}, which is the label_field")
        self.text_fields, self.label_field = tuple(text_fields), label_field

    def read_file(self, path):
        return list(zip(*read_classification(path, self.text_fields, self.label_field)))  # [(text, label)]

    def describe(self):
        """The task's lines, and how many texts were cut: their ends are never read."""
        cut = [f"{split} {data.truncated} of {len(data)}" for split, data in self.data.items() if data.truncated]
        return super().describe() + (f"\n{self.name}: texts cut at {self.data['train'].max_length} tokens: "
                                     f"{', '.join(cut)}" if cut else "")

    def labels(self, examples):
        return [label for _, label in examples]

    def make_label_map(self, examples):
        return LabelMap.from_labels(self.labels(examples))

    def encode(self, examples, tokenizer, max_length):
        return ClassificationData(examples, tokenizer, self.label_map, max_length)

    def head(self, config):
        return SentenceClassificationHead(config, len(self.label_map))

    def score(self, data, predictions):
        predicted = [self.label_map.decode(int(p)) for p in predictions]
        seen = [i for i, label in enumerate(data.labels) if label != -100]  # the matrix has the training labels
        return {"accuracy": accuracy(data.gold, predicted), "macro_f1": macro_f1(data.gold, predicted),
                "confusion_matrix": confusion_matrix([data.labels[i] for i in seen], [predictions[i] for i in seen],
                                                     len(self.label_map)).tolist()}

    def summary(self, metrics):
        return f"{self.name} accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"


class Tagging(Task):
    kind = "tagging"
    options = {"token_column": int, "tag_column": int, "scheme": str}
    main_metric = "f1"
    pooled = False  # frozen features: every window's hidden states

    def __init__(self, name, train, dev, test, token_column=0, tag_column=-1, scheme="bio"):
        super().__init__(name, train, dev, test)
        if scheme not in ("iob1", "bio"):
            raise ValueError(f"field 'scheme' must be 'iob1' or 'bio', got {scheme!r}")
        if token_column == tag_column:
            raise ValueError(f"token_column and tag_column are both {tag_column}; the tag would be the word itself")
        self.token_column, self.tag_column, self.scheme = token_column, tag_column, scheme

    def read_file(self, path):
        return read_conll(path, self.token_column, self.tag_column, self.scheme)  # [(words, tags)]

    def labels(self, examples):
        return [tag for _, tags in examples for tag in tags]

    def make_label_map(self, examples):
        return LabelMap.from_bio_tags(self.labels(examples))

    def encode(self, examples, tokenizer, max_length):
        return TaggingData(examples, tokenizer, self.label_map, max_length)

    def head(self, config):
        return TokenClassificationHead(config, len(self.label_map))

    def score(self, data, predictions):
        """Whole sentences, every gold word included: a word's tag is its first piece's."""
        predicted, unaligned = words_from_predictions(data.sentences, data.windows, predictions, self.label_map)
        return {**span_scores([tags for _, tags in data.sentences], predicted), "words_without_pieces": unaligned}

    def summary(self, metrics):
        return f"{self.name} span F1 {metrics['f1']:.4f}"


KINDS = {kind.kind: kind for kind in (Classification, Tagging)}

# ----------------------------------------------------------------------- task lists


def builtin_tasks(data_dir=None):
    """arXiv10 (title + abstract -> one of 10 categories) and SciERC (IOB1 entity tags)."""
    arxiv = [data_file(f"classification/arxiv10/{split}.jsonl", data_dir) for split in SPLITS]
    scierc = [data_file(f"ner/scierc/conll/{split}.txt", data_dir) for split in SPLITS]
    return [Classification("arxiv", *arxiv, text_fields=("title", "abstract"), label_field="label"),
            Tagging("scierc", *scierc, token_column=0, tag_column=-1, scheme="iob1")]


def read_task_file(path):
    """A JSON list of tasks (see the top of this file) -> [Task]; every mistake is one line
    naming the file, the task and the field."""
    path = Path(path)
    if not path.is_file():
        error = IsADirectoryError if path.is_dir() else FileNotFoundError
        raise error(f"--tasks={path}: {'a directory' if path.is_dir() else 'no such file'}; "
                    f"--tasks names a JSON file, a list of tasks")
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a leading BOM, as the data files
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f'{path}: expected a list of tasks, [{{"name": ..., "kind": ...}}, ...]')
    tasks = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: task {number} ({entry.get('name')!r}):"
        if entry.get("kind") not in KINDS:
            raise ValueError(f"{where} unknown kind {entry.get('kind')!r}; the kinds are {', '.join(KINDS)}")
        kind = KINDS[entry["kind"]]
        fields = {"name": str, "kind": str, "train": str, "dev": str, "test": str, **kind.options}
        for field, expected in fields.items():
            if field not in entry:
                raise ValueError(f"{where} missing field {field!r}; a {kind.kind} task has {', '.join(fields)}")
            value = entry[field]
            if not isinstance(value, expected) or isinstance(value, bool) or \
                    (expected is list and not all(isinstance(v, str) for v in value)):
                noun = {str: "a string", int: "an integer", list: "a list of strings"}[expected]
                raise ValueError(f"{where} field {field!r} must be {noun}, got {value!r}")
        unknown = [field for field in entry if field not in fields]
        if unknown:
            raise ValueError(f"{where} unknown field {unknown[0]!r}; a {kind.kind} task has {', '.join(fields)}")
        if not entry["name"].isidentifier():
            raise ValueError(f"{where} the name must be a Python identifier (letters, digits, _): it names a head")
        if hasattr(torch.nn.ModuleDict(), entry["name"]):  # else ModuleDict refuses it, after all the reading
            raise ValueError(f"{where} the name {entry['name']!r} is taken by torch (an attribute of the ModuleDict "
                             f"that holds the heads); choose another")
        if any(task.name == entry["name"] for task in tasks):
            raise ValueError(f"{where} the name is already taken by another task")
        files = {split: path.parent / entry[split] for split in SPLITS}  # relative to the task file
        for split, file in files.items():
            if not file.is_file():
                raise ValueError(f"{where} field {split!r}: no file {file}")
        try:
            tasks.append(kind(entry["name"], *files.values(), **{option: entry[option] for option in kind.options}))
        except ValueError as error:
            raise ValueError(f"{where} {error}") from None
    return tasks


def parse_per_task(setting, text, names, convert, default, valid=lambda value: True, expected="a number"):
    """A per-task setting -> {task name: value}. "arxiv=1,scierc=10" names tasks (those left
    out keep `default`); "1,10" gives one value per task in order; "1" gives every task 1.

    >>> parse_per_task("--weights", "scierc=10", ["arxiv", "scierc"], float, 1.0)
    {'arxiv': 1.0, 'scierc': 10.0}
    """
    values, named = dict.fromkeys(names, default), set()
    items = [item for item in text.split(",") if item]
    bare = [item for item in items if "=" not in item]
    without_value = [item for item in bare if item in names or len(bare) < len(items)]  # a task, but no "=value"
    if without_value:
        raise ValueError(f"{setting}={text}: {without_value[0]!r} has no value; write {without_value[0]}=VALUE")
    if bare:  # by position
        items = items * len(names) if len(items) == 1 else items
        if len(items) != len(names):
            raise ValueError(f"{setting}={text}: {len(items)} values for {len(names)} tasks ({', '.join(names)}); "
                             f"give one for all, one per task, or name them (task=value)")
        items = [f"{name}={item}" for name, item in zip(names, items)]
    for item in items:
        name, _, value = item.partition("=")
        if name not in values:
            raise ValueError(f"{setting}: unknown task {name!r} in {item!r}; the tasks are {', '.join(names)}")
        if name in named:
            raise ValueError(f"{setting}: task {name!r} is named twice in {text!r}")
        named.add(name)
        try:
            values[name] = convert(value)
        except ValueError:
            values[name] = None
        # inf and 1e400 convert, and would turn the loss into NaN (a weight) or nonsense (a fraction)
        if values[name] is None or not math.isfinite(values[name]) or not valid(values[name]):
            raise ValueError(f"{setting}: {name} takes {expected}, got {value!r}")
    return values
