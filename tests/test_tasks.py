"""Tasks as data: the readers of the two kinds and the task file, and the one line each bad
input gets. Every message names the file and line (or the setting) and what was expected."""

import json
import re

import pytest

from minibert.finetuning_data import read_classification, read_conll, read_jsonl
from minibert.tasks import Classification, Tagging, parse_per_task, read_task_file
from minibert.tokenizer import WordPieceTokenizer


def raises_naming(where, *words):
    """pytest.raises(ValueError) whose message starts with `where` and contains every word."""
    return pytest.raises(ValueError, match=re.escape(str(where)) + "".join(f"(?s:.*){re.escape(w)}" for w in words))


# ---------------------------------------------------------------------------- CoNLL


def test_conll_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"A NN O I-Task\n\nb NN O O\ncaf\xe9 NN O O\n")
    with raises_naming(f"{path}:4:", "UTF-8"):
        read_conll(path)


def test_conll_line_with_one_column_is_reported_as_such(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("A NN O I-Task\nb\n")
    with raises_naming(f"{path}:2:", "one column"):
        read_conll(path)


def test_conll_tag_column_that_does_not_exist(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("A NN O I-Task\n")
    with raises_naming(f"{path}:1:", "tag_column 5", "4 columns"):
        read_conll(path, tag_column=5)


def test_conll_columns_by_index_negative_allowed(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("1 Paris B-LOC x\n2 is O x\n\n1 Rome B-LOC x\n")
    assert read_conll(path, token_column=1, tag_column=-2, scheme="bio") == \
        [(["Paris", "is"], ["B-LOC", "O"]), (["Rome"], ["B-LOC"])]


def test_conll_tag_that_is_not_bio(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("A NOUN\n")
    with raises_naming(f"{path}:1:", "NOUN", "O, B-type or I-type"):
        read_conll(path, scheme="bio")


# ---------------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize("line, expected", [
    ('{"text": "a b", "label": "x"', "not valid JSON"),             # truncated
    ("17", "a JSON object"),                                         # a bare number
    ('{"text": "a b", "label": ["x", "y"]}', "'label' is a list"),  # a list as label
    ('{"text": "a b"}', "no field 'label'"),                       # (the old code named it too)
])
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, expected):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "c d", "label": "y"}\n' + line + "\n")
    with raises_naming(f"{path}:2:", expected):
        read_jsonl(path, text_fields=("text",), label_field="label")


def test_classification_files_by_extension(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"title": "T", "abstract": "A, b", "label": 3}\n')
    (tmp_path / "a.csv").write_text('title,abstract,label\nT,"A, b",3\n')
    (tmp_path / "a.tsv").write_text("title\tabstract\tlabel\nT\tA, b\t3\n")
    for name in ("a.jsonl", "a.csv", "a.tsv"):
        assert read_classification(tmp_path / name, ("title", "abstract"), "label") == (["T. A, b"], ["3"]), name
    (tmp_path / "b.csv").write_text("text,label\nfine,x\nshort\n")
    with raises_naming(f"{tmp_path / 'b.csv'}:3:", "no value for 'label'"):
        read_classification(tmp_path / "b.csv", ("text",), "label")
    with raises_naming(tmp_path / "b.csv", "no column 'body'", "text, label"):
        read_classification(tmp_path / "b.csv", ("body",), "label")
    (tmp_path / "c.xml").write_text("<a/>")
    with raises_naming(tmp_path / "c.xml", ".jsonl (or .json), .csv or .tsv"):
        read_classification(tmp_path / "c.xml", ("text",), "label")


@pytest.mark.parametrize("name, rows, expected", [
    ("x.csv", "title,body,stars\na,b,pos\nc,d,\n", "field 'stars' is empty"),
    ("x.jsonl", '{"title": "a", "body": "b", "stars": "pos"}\n{"title": "c", "body": "d", "stars": ""}\n',
     "field 'stars' is empty"),
    ("x.jsonl", '{"title": "a", "body": "b", "stars": "pos"}\n{"title": "c", "body": "d", "stars": null}\n',
     "field 'stars' is null"),
    ("x.jsonl", '{"title": "a", "body": "b", "stars": "pos"}\n{"title": " ", "body": null, "stars": "neg"}\n',
     "no text: 'title', 'body' are empty or null"),
    ("x.tsv", "title\tbody\tstars\na\tb\tpos\n\t\tneg\n", "no text"),
])
def test_an_empty_label_or_no_text_at_all_names_the_line(tmp_path, name, rows, expected):
    (tmp_path / name).write_text(rows)
    with raises_naming(f"{tmp_path / name}:3:" if name != "x.jsonl" else f"{tmp_path / name}:2:", expected):
        read_classification(tmp_path / name, ("title", "body"), "stars")


def test_an_empty_or_null_text_field_is_left_out_of_the_text(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"title": "T", "body": null, "stars": "pos"}\n')
    (tmp_path / "x.csv").write_text("title,body,stars\n,B,neg\n")
    assert read_classification(tmp_path / "x.jsonl", ("title", "body"), "stars") == (["T"], ["pos"])
    assert read_classification(tmp_path / "x.csv", ("title", "body"), "stars") == (["B"], ["neg"])


@pytest.mark.parametrize("name, rows, expected", [
    ("x.csv", "title,body,stars\ngreat,loved it,pos\nok,fine, really,neg\n", "quote a text that holds a comma"),
    ("x.tsv", "title\tbody\tstars\ngreat\tloved it\tpos\nok\tfine\treally\tneg\n", "a text cannot hold a tab"),
])
def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path, name, rows, expected):
    """Else csv files the extra fields under None and the row's real label is lost."""
    (tmp_path / name).write_text(rows)
    with raises_naming(f"{tmp_path / name}:3:", "4 fields, the header has 3", expected):
        read_classification(tmp_path / name, ("title", "body"), "stars")


@pytest.mark.parametrize("value, expected", [("2.0", "is 2.0 (a float)"), ("true", "is True (a bool)")])
def test_a_label_is_a_string_or_an_integer(tmp_path, value, expected):
    """2 and 2.0 would be two classes, and true would become 'True'."""
    (tmp_path / "x.jsonl").write_text(f'{{"text": "a", "stars": 2}}\n{{"text": "b", "stars": {value}}}\n')
    with raises_naming(f"{tmp_path / 'x.jsonl'}:2:", f"field 'stars' {expected}", "a string or an integer"):
        read_classification(tmp_path / "x.jsonl", ("text",), "stars")


def test_labels_are_stripped_like_texts(tmp_path):
    (tmp_path / "x.csv").write_text("text,label\na,pos \nb, pos\nc,neg\n")
    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": " pos "}\n')
    assert read_classification(tmp_path / "x.csv", ("text",), "label")[1] == ["pos", "pos", "neg"]
    assert read_classification(tmp_path / "x.jsonl", ("text",), "label")[1] == ["pos"]


@pytest.mark.parametrize("name", ["x.csv", "x.tsv"])
def test_a_long_document_reads_from_csv_and_tsv(tmp_path, name):
    long = "word " * 40_000  # 200,000 characters: more than csv's default limit of 131,072 a field
    (tmp_path / name).write_text(f"text,label\n{long},pos\n".replace(",", "\t" if name == "x.tsv" else ","))
    assert read_classification(tmp_path / name, ("text",), "label") == ([long.strip()], ["pos"])


@pytest.mark.parametrize("name, rows, where, expected", [
    ("x.csv", "", "x.csv", "the file is empty or its first line is blank; it needs a header row"),
    ("x.tsv", "\n", "x.tsv", "the file is empty or its first line is blank; it needs a header row"),
    ("x.csv", 'text,label\nok,pos\n"never closed,neg\nfine,pos\n', "x.csv:3:", "a quote opened here is never closed"),
    ("x.csv", 'text,label\nok,pos\n"abc"def,neg\n', "x.csv:3:", "',' expected after '\"'"),
])
def test_malformed_csv_files_say_what_is_wrong(tmp_path, name, rows, where, expected):
    (tmp_path / name).write_text(rows)
    with raises_naming(tmp_path / where, expected):
        read_classification(tmp_path / name, ("text",), "label")


def test_a_json_file_is_read_as_json_lines_and_says_so(tmp_path):
    (tmp_path / "x.json").write_text('[\n {"text": "a", "label": "pos"}\n]\n')  # a pretty-printed array
    with raises_naming(f"{tmp_path / 'x.json'}:1:", "not valid JSON", "read as JSON Lines, one object a line"):
        read_classification(tmp_path / "x.json", ("text",), "label")


def test_tsv_quotes_are_text(tmp_path):
    """A tab-separated file has no quoting: a text that starts with a quote must not swallow
    the lines after it (CSV's rules read these five rows as two)."""
    path = tmp_path / "x.tsv"
    path.write_text('text\tlabel\n"Great" movie\tpos\n"Hmm, not sure\tneg\nok film\tpos\nanother 2" screen\tneg\n')
    assert read_classification(path, ("text",), "label") == (
        ['"Great" movie', '"Hmm, not sure', "ok film", 'another 2" screen'], ["pos", "neg", "pos", "neg"])


# ------------------------------------------------------------------------ task file


def write_tasks(tmp_path, tasks):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks, indent=1))
    return path


def good_tasks(tmp_path):
    (tmp_path / "cls").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / "cls" / f"{split}.csv").write_text("text,label\nan apple,fruit\na car,vehicle\n")
        (tmp_path / f"{split}.conll").write_text("Paris B-LOC\nis O\n")
    return [{"name": "topic", "kind": "classification", "train": "cls/train.csv", "dev": "cls/dev.csv",
             "test": "cls/test.csv", "text_fields": ["text"], "label_field": "label"},
            {"name": "places", "kind": "tagging", "train": "train.conll", "dev": "dev.conll", "test": "test.conll",
             "token_column": 0, "tag_column": -1, "scheme": "bio"}]


def test_task_file_paths_are_relative_to_it(tmp_path):
    tasks = read_task_file(write_tasks(tmp_path, good_tasks(tmp_path)))
    assert [type(t) for t in tasks] == [Classification, Tagging]
    assert tasks[0].files["train"] == tmp_path / "cls" / "train.csv"
    assert tasks[1].read("dev") == [(["Paris", "is"], ["B-LOC", "O"])]


@pytest.mark.parametrize("change, expected", [
    (lambda t: t[0].update(kind="regression"), "task 1 ('topic'): unknown kind 'regression'"),
    (lambda t: t[1].pop("scheme"), "task 2 ('places'): missing field 'scheme'"),
    (lambda t: t[0].update(label_feild="label"), "task 1 ('topic'): unknown field 'label_feild'"),
    (lambda t: t[1].update(name="topic"), "task 2 ('topic'): the name is already taken"),
    (lambda t: t[1].update(name="my places"), "task 2 ('my places'): the name must be a Python identifier"),
    *[(lambda t, name=name: t[0].update(name=name), f"task 1 ({name!r}): the name {name!r} is taken by torch")
      for name in ("type", "train", "forward", "training", "keys", "_modules")],  # ModuleDict's: it holds the heads
    (lambda t: t[0].update(dev="cls/none.csv"), "task 1 ('topic'): field 'dev': no file"),
    (lambda t: t[1].update(tag_column="last"), "task 2 ('places'): field 'tag_column' must be an integer"),
    (lambda t: t.clear(), "expected a list of tasks"),
    (lambda t: t[0].update(text_fields=[]), "task 1 ('topic'): field 'text_fields' names no field"),
    (lambda t: t[0].update(text_fields=["text", "label"]),
     "task 1 ('topic'): field 'text_fields' holds 'label', which is the label_field"),
    (lambda t: t[1].update(tag_column=0), "task 2 ('places'): token_column and tag_column are both 0"),
])
def test_bad_task_file_gets_one_line(tmp_path, change, expected):
    tasks = good_tasks(tmp_path)
    change(tasks)
    path = write_tasks(tmp_path, tasks)
    with raises_naming(path, expected):
        read_task_file(path)


def test_task_file_that_is_not_json(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text('[{"name": "a",\n "kind": }]')
    with raises_naming(f"{path}:2:", "not valid JSON"):
        read_task_file(path)


def test_task_file_with_a_bom_reads_and_a_missing_one_names_the_setting(tmp_path):
    path = write_tasks(tmp_path, good_tasks(tmp_path))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Notepad saves UTF-8
    assert [t.name for t in read_task_file(path)] == ["topic", "places"]
    with pytest.raises(FileNotFoundError, match=f"^--tasks={re.escape(str(tmp_path / 'none.json'))}: no such file"):
        read_task_file(tmp_path / "none.json")
    with pytest.raises(IsADirectoryError, match=f"^--tasks={re.escape(str(tmp_path))}: a directory"):
        read_task_file(tmp_path)


def test_empty_split_or_a_single_label_is_an_error(tmp_path):
    topic, places = read_task_file(write_tasks(tmp_path, good_tasks(tmp_path)))
    (tmp_path / "dev.conll").write_text("\n\n")
    with raises_naming(tmp_path / "dev.conll", "no examples"):
        places.read("dev")
    (tmp_path / "cls" / "train.csv").write_text("text,label\nan apple,fruit\na pear,fruit\n")
    with raises_naming(tmp_path / "cls" / "train.csv", "the only label is 'fruit'", "at least two"):
        topic.load(WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))


def test_a_loaded_task_says_how_many_texts_were_cut(tmp_path):
    topic, _ = read_task_file(write_tasks(tmp_path, good_tasks(tmp_path)))
    topic.load(WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]), max_length=3)  # 4 pieces each
    assert "topic: texts cut at 3 tokens: train 2 of 2, dev 2 of 2, test 2 of 2" in topic.describe()


# --------------------------------------------------------------- per-task settings


def test_per_task_settings_name_tasks():
    names = ["arxiv", "scierc"]
    assert parse_per_task("--weights", "arxiv=1,scierc=10", names, float, 1.0) == {"arxiv": 1.0, "scierc": 10.0}
    assert parse_per_task("--weights", "1,3", names, float, 1.0) == {"arxiv": 1.0, "scierc": 3.0}  # in task order
    assert parse_per_task("--task_fraction", "scierc=0.1", names, float, 1.0) == {"arxiv": 1.0, "scierc": 0.1}
    with pytest.raises(ValueError, match=r"--weights: arxiv takes a number, got 'a'"):
        parse_per_task("--weights", "a,b", names, float, 1.0)
    assert parse_per_task("--train_limit", "32", names, int, 0) == {"arxiv": 32, "scierc": 32}  # one for all
    with pytest.raises(ValueError, match=r"--weights.*3 values for 2 tasks.*arxiv, scierc"):
        parse_per_task("--weights", "1,2,3", names, float, 1.0)
    with pytest.raises(ValueError, match=r"--task_fraction.*'ner'.*arxiv, scierc"):
        parse_per_task("--task_fraction", "ner=0.1", names, float, 1.0)


@pytest.mark.parametrize("text, expected", [
    ("scierc=inf", "--weights: scierc takes a number >= 0, got 'inf'"),  # training went NaN, silently
    ("1e400", "--weights: arxiv takes a number >= 0, got '1e400'"),
    ("arxiv=1,arxiv=2", "--weights: task 'arxiv' is named twice"),
    ("scierc", "--weights=scierc: 'scierc' has no value; write scierc=VALUE"),
    ("arxiv=1,scierc", "--weights=arxiv=1,scierc: 'scierc' has no value; write scierc=VALUE"),
])
def test_bad_per_task_values(text, expected):
    with pytest.raises(ValueError, match="^" + re.escape(expected)):
        parse_per_task("--weights", text, ["arxiv", "scierc"], float, 1.0, lambda w: w >= 0, "a number >= 0")


def test_dev_and_test_labels_unseen_in_training_are_counted_and_scored_as_errors(tmp_path):
    topic, places = read_task_file(write_tasks(tmp_path, good_tasks(tmp_path)))
    (tmp_path / "dev.conll").write_text("Paris B-LOC\nACME B-ORG\n")
    (tmp_path / "cls" / "test.csv").write_text("text,label\na pear,fruit\na boat,boat\n")
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "acme", "a", "pear"])
    topic.load(tokenizer)
    places.load(tokenizer)
    assert topic.unseen == {"dev": {}, "test": {"boat": 1}}
    assert places.unseen == {"dev": {"B-ORG": 1}, "test": {}}
    assert places.data["dev"].windows[0].labels == [-100, places.label_map.ids["B-LOC"], -100, -100]  # not in the loss
    fruit = topic.label_map.ids["fruit"]
    assert topic.score(topic.data["test"], [fruit, fruit])["accuracy"] == 0.5
    assert topic.score(topic.data["test"], [fruit, fruit])["confusion_matrix"] == [[1, 0], [0, 0]]  # seen labels only
