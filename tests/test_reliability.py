"""What a careful user can get wrong, and what the code must then do: refuse clearly,
before any work, and never destroy a run or run code from a file (issue 14).

Each test builds its own tiny inputs in tmp_path; the scripts run at toy sizes."""

import csv
import json
import os
import random
import re
import runpy
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import odd_config
from minibert.config import BertConfig
from minibert.embedder import SentenceEmbedder
from minibert.tokenizer import WordPieceTokenizer
from minibert.training import SETTING_RULES, load_checkpoint, rng_states, save_checkpoint, set_rng_states
from minibert.transformer_with_heads import TransformerWithHeads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402
import train_mlm  # noqa: E402
import train_mtl  # noqa: E402
from test_mtl import write_fixture  # noqa: E402

SCRIPTS = {"train_mlm": train_mlm, "train_embedder": train_embedder, "train_mtl": train_mtl}
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def missing_inputs(script, tmp_path, *extra):
    """Arguments that point every input at nothing: a run that gets past the run_dir gate
    stops at its first read, so these tests cost no training."""
    missing = tmp_path / "missing"
    inputs = {"run_dir": tmp_path / "run", "out_dir": tmp_path / "run" / "model", "init": missing,
              "data_dir": missing, "corpus": missing / "corpus.txt"}
    return [f"--{key}={value}" for key, value in inputs.items() if key in SCRIPTS[script].DEFAULTS] + list(extra)


# ------------------------------------------------------------------------ checkpoints

class RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls os.mkdir(marker), as a hostile file would call os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "step": 1, "elapsed": 0.0, "settings": {}, "rng": {},
                "payload": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ValueError, match="checkpoint.pt is not a checkpoint that loads as plain tensors"):
        load_checkpoint(path, {})
    assert not marker.exists()


def damaged_checkpoints(tmp_path):
    whole = tmp_path / "whole.pt"
    save_checkpoint(whole, {"model": {"w": torch.randn(64, 64)}, "optimizer": {}, "step": 3, "elapsed": 1.0,
                            "settings": {}, "rng": rng_states()})
    data = whole.read_bytes()
    return {"empty": b"", "random": np.random.default_rng(0).bytes(4096), "truncated": data[:len(data) // 2],
            "json": b'{"step": 3}', "a_tensor": None}


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "json", "a_tensor"])
def test_a_damaged_checkpoint_gives_one_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    content = damaged_checkpoints(tmp_path)[kind]
    if content is None:
        torch.save(torch.zeros(3), path)  # loads fine, but is not a training checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{kind}.pt is not a") as error:
        load_checkpoint(path, {})
    assert "\n" not in str(error.value)


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # numpy now holds a cached gaussian too
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_states()})
    expected = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    set_rng_states(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


# ------------------------------------------------------------------ numeric settings


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_setting_has_a_rule(script):
    numeric = [key for key, value in SCRIPTS[script].DEFAULTS.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    assert numeric and [key for key in numeric if key not in SETTING_RULES] == []


BAD_SETTINGS = ["--max_steps=-5", "--max_steps=0", "--batch_size=-4", "--batch_size=0", "--eval_every=0",
                "--checkpoint_every=0", "--learning_rate=nan", "--warmup_fraction=1.5", "--dropout=abc",
                "--dropout=1.5", "--seed=-1", "--max_minutes=-1"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_number_out_of_range_is_refused_before_any_work(tmp_path, script, setting):
    """The inputs do not even exist: the setting must be refused before they are looked for."""
    with pytest.raises(ValueError, match=setting.split("=")[0]) as error:
        SCRIPTS[script].main(missing_inputs(script, tmp_path, setting))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


# A device this machine's torch cannot use: CUDA on a machine without it, else Apple's MPS.
UNAVAILABLE_DEVICE = "cuda" if not torch.cuda.is_available() else "mps"
BAD_CHOICES = ["--preset=huge", "--dtype=float64", "--schedule=cubic", "--masking=random", "--errors=skip",
               "--device=tpu", "--device=cuda:x", f"--device={UNAVAILABLE_DEVICE}", "--objective=triplet",
               "--strategy=magic", "--weighting=equal"]


@pytest.mark.parametrize("script, setting", [(script, setting) for script in SCRIPTS for setting in BAD_CHOICES
                                             if setting[2:].split("=")[0] in SCRIPTS[script].DEFAULTS])
def test_a_setting_outside_its_choices_is_refused_before_any_work(tmp_path, script, setting):
    """--preset=huge was refused only after the tokenizer was trained and the corpus read, and
    --device=cuda on a machine without CUDA failed at model.to() with torch's AssertionError."""
    with pytest.raises(ValueError, match=re.escape(setting.split("=")[0])) as error:
        SCRIPTS[script].main(missing_inputs(script, tmp_path, setting))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_encode_refuses_a_batch_size_below_one(batch_size):
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"])
    embedder = SentenceEmbedder(TransformerWithHeads(odd_config(vocab_size=tokenizer.vocab_size)), tokenizer)
    assert embedder.encode(["a cat", "a"], batch_size=1).shape == (2, 32)
    with pytest.raises(ValueError, match="batch_size"):
        embedder.encode(["a cat", "a"], batch_size=batch_size)


# ---------------------------------------------------------- run_dir: keep it, own it


CHECKPOINT_NAME = {"train_mlm": "checkpoint.pt", "train_embedder": "checkpoint.pt", "train_mtl": "checkpoint_joint.pt"}
LOG_NAME = {"train_mlm": "log.csv", "train_embedder": "log.csv", "train_mtl": "joint_log.csv"}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("held", ["checkpoint", "log"])
def test_rerunning_without_resume_leaves_the_run_alone(tmp_path, script, held):
    (tmp_path / "run").mkdir()
    kept = tmp_path / "run" / (CHECKPOINT_NAME if held == "checkpoint" else LOG_NAME)[script]
    kept.write_bytes(b"a step-400 run")
    with pytest.raises(FileExistsError, match="already holds a run .*--resume=true.*--overwrite=true"):
        SCRIPTS[script].main(missing_inputs(script, tmp_path))
    assert kept.read_bytes() == b"a step-400 run"
    assert not (tmp_path / "run" / "run.lock").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_without_a_checkpoint_is_refused(tmp_path, script):
    with pytest.raises(FileNotFoundError, match="--resume=true but .* holds no checkpoint"):
        SCRIPTS[script].main(missing_inputs(script, tmp_path, "--resume=true"))


@pytest.mark.parametrize("script", ["train_mlm", "train_embedder"])
def test_an_out_dir_holding_a_model_is_refused(tmp_path, script):
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--out_dir=.* already holds a model .*--overwrite=true"):
        SCRIPTS[script].main(missing_inputs(script, tmp_path))
    with pytest.raises(ValueError, match="give one of them"):
        SCRIPTS[script].main(missing_inputs(script, tmp_path, "--resume=true", "--overwrite=true"))


def write_lock(run_dir, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_folder_in_use_is_refused(tmp_path, script):
    other_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path / "run", other_run.pid)
        with pytest.raises(FileExistsError, match=f"is in use by process {other_run.pid} on"):
            SCRIPTS[script].main(missing_inputs(script, tmp_path))
        assert json.loads((tmp_path / "run" / "run.lock").read_text())["pid"] == other_run.pid  # still theirs
    finally:
        other_run.kill()
        other_run.wait()


def test_the_lock_of_a_dead_process_is_taken_over_and_released(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path / "run", dead.pid)
    with pytest.raises(FileNotFoundError, match="corpus"):  # past the gate, stopped by the missing corpus
        train_mlm.main(missing_inputs("train_mlm", tmp_path))
    assert f"taking over the lock of process {dead.pid}" in capsys.readouterr().out
    assert not (tmp_path / "run" / "run.lock").exists()


@pytest.fixture
def tiny_corpus(tmp_path):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 30)))) for _ in range(40)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]).save_pretrained(tmp_path / "vocab")
    return tmp_path


def mlm(root, *extra):
    return train_mlm.main([f"--corpus={root / 'corpus.txt'}", f"--vocab={root / 'vocab'}", "--preset=tiny",
                           "--max_seq_len=32", "--batch_size=4", "--eval_every=1", "--eval_batches=1",
                           "--checkpoint_every=2", f"--run_dir={root / 'run'}", f"--out_dir={root / 'run' / 'out'}",
                           "--threads=1", *extra])


def log_steps(path):
    return [int(line.split(",")[0]) for line in path.read_text().splitlines()[1:]]


def test_overwrite_starts_afresh(tiny_corpus, monkeypatch):
    monkeypatch.chdir(tiny_corpus)  # the corpus cache goes to ./.cache
    mlm(tiny_corpus, "--max_steps=4")
    mlm(tiny_corpus, "--max_steps=2", "--overwrite=true")
    assert torch.load(tiny_corpus / "run" / "checkpoint.pt", weights_only=True)["step"] == 2
    assert log_steps(tiny_corpus / "run" / "log.csv") == [1, 2]


def test_a_resumed_run_never_writes_over_another_runs_model(tiny_corpus, monkeypatch):
    """--out_dir may change on resume (it is a RESUMABLE setting), but only to a folder that
    holds no model, or the one this run wrote: --resume=true --out_dir=<another run's model>
    replaced that model without a word."""
    monkeypatch.chdir(tiny_corpus)
    mlm(tiny_corpus, "--max_steps=2", f"--run_dir={tiny_corpus / 'a'}", f"--out_dir={tiny_corpus / 'a_model'}")
    kept = (tiny_corpus / "a_model" / "model.safetensors").read_bytes()
    mlm(tiny_corpus, "--max_steps=4", "--stop_at_step=2", f"--out_dir={tiny_corpus / 'b_model'}")
    with pytest.raises(FileExistsError, match="a_model holds a model this run did not write"):
        mlm(tiny_corpus, "--max_steps=4", "--resume=true", f"--out_dir={tiny_corpus / 'a_model'}")
    assert (tiny_corpus / "a_model" / "model.safetensors").read_bytes() == kept
    mlm(tiny_corpus, "--max_steps=4", "--resume=true", f"--out_dir={tiny_corpus / 'b_model'}")  # its own folder
    mlm(tiny_corpus, "--max_steps=4", "--resume=true", f"--out_dir={tiny_corpus / 'b_model'}")  # and again, written
    assert (tiny_corpus / "b_model" / "model.safetensors").is_file()


# ------------------------------------------------ resuming: the log and the wall time


def test_a_stopped_and_resumed_pretraining_logs_what_an_uninterrupted_one_does(tiny_corpus, monkeypatch):
    """--stop_at_step evaluated and logged at the stop (a row the uninterrupted run has not),
    and the resumed run's first row averaged the train losses since the resumption only."""
    monkeypatch.chdir(tiny_corpus)

    def logged(name, *extra):
        mlm(tiny_corpus, "--max_steps=6", "--eval_every=4", f"--run_dir={tiny_corpus / name}",
            f"--out_dir={tiny_corpus / name / 'out'}", *extra)
        with open(tiny_corpus / name / "log.csv") as f:
            return [(row["step"], row["train_loss"], row["eval_loss"]) for row in csv.DictReader(f)]
    straight = logged("straight")
    logged("resumed", "--stop_at_step=3")
    assert logged("resumed", "--resume=true") == straight and [row[0] for row in straight] == ["4", "6"]


def test_a_resumed_run_logs_each_step_once(tiny_corpus, monkeypatch):
    """A kill after steps 3-4 were logged but before their checkpoint: the run resumes
    from step 2 and logs 3-4 again, replacing the first rows, not adding to them."""
    monkeypatch.chdir(tiny_corpus)
    mlm(tiny_corpus, "--max_steps=4", "--stop_at_step=2")
    shutil.copy(tiny_corpus / "run" / "checkpoint.pt", tiny_corpus / "step2.pt")
    mlm(tiny_corpus, "--max_steps=4", "--resume=true")
    assert log_steps(tiny_corpus / "run" / "log.csv") == [1, 2, 3, 4]
    shutil.copy(tiny_corpus / "step2.pt", tiny_corpus / "run" / "checkpoint.pt")  # as if killed before step 4's
    mlm(tiny_corpus, "--max_steps=4", "--resume=true")
    assert log_steps(tiny_corpus / "run" / "log.csv") == [1, 2, 3, 4]


def test_multitask_log_and_wall_time_count_every_segment(tmp_path):
    fixture = write_fixture(tmp_path / "data")

    def run(*extra):
        started = time.perf_counter()
        train_mtl.main([f"--init={fixture / 'init'}", f"--data_dir={fixture}", f"--run_dir={tmp_path / 'run'}",
                        "--batch_size=4", "--max_steps=4", "--eval_every=2", "--checkpoint_every=2", "--threads=1",
                        "--strategy=joint", *extra])
        return time.perf_counter() - started

    first = run("--stop_at_step=2")
    shutil.copy(tmp_path / "run" / "checkpoint_joint.pt", tmp_path / "step2.pt")
    second = run("--resume=true")
    shutil.copy(tmp_path / "step2.pt", tmp_path / "run" / "checkpoint_joint.pt")  # killed before step 4's checkpoint
    third = run("--resume=true")
    assert log_steps(tmp_path / "run" / "joint_log.csv") == [1, 2, 3, 4]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # Segment one (to step 2) and the last segment (steps 3-4, then testing) both count;
    # the lost second segment does not.
    assert third < results["wall_time_s"] <= first + third
    assert third < results["phases"]["joint"]["wall_time_s"] <= results["wall_time_s"]
    assert second > 0


# ------------------------------------------------------------------------ the corpus

def corpus_summary(capsys):
    """(documents, tokens) from the line train_mlm prints about its corpus."""
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("corpus:"))
    documents, tokens = line.split(": ")[1].split(";")[0].split(", ")
    return int(documents.split()[0].replace(",", "")), int(tokens.split()[0].replace(",", ""))


def token_count(root, lines):
    tokenizer = WordPieceTokenizer.from_pretrained(root / "vocab")
    return sum(len(tokenizer.encode(line, add_special_tokens=False)) for line in lines)


def test_a_corpus_slice_follows_the_text_not_the_file_name(tiny_corpus, monkeypatch, capsys):
    """c1/corp.txt then c2/corp.txt: same name, same number of lines, other text."""
    monkeypatch.chdir(tiny_corpus)
    texts = {"c1": ["alpha beta"] * 12, "c2": ["gamma delta epsilon zeta eta theta iota kappa"] * 12}
    for name, lines in texts.items():
        (tiny_corpus / name).mkdir()
        (tiny_corpus / name / "corp.txt").write_text("\n".join(lines) + "\n")
    for run, name in enumerate(["c1", "c2", "c1"]):
        if run == 2:  # the file is edited: the slice must follow
            texts["c1"] = ["lambda mu nu xi omicron"] * 12
            (tiny_corpus / "c1" / "corp.txt").write_text("\n".join(texts["c1"]) + "\n")
        mlm(tiny_corpus, f"--corpus={tiny_corpus / name / 'corp.txt'}", "--corpus_lines=10", "--max_steps=1",
            f"--run_dir={tiny_corpus / f'run{run}'}", f"--out_dir={tiny_corpus / f'run{run}' / 'out'}")
        assert corpus_summary(capsys) == (10, token_count(tiny_corpus, texts[name][:10])), name


def test_corpus_lines_counts_documents_over_all_files(tiny_corpus, monkeypatch, capsys):
    monkeypatch.chdir(tiny_corpus)
    a, b = ["alpha beta gamma"] * 10, ["delta epsilon"] * 10
    (tiny_corpus / "a.txt").write_text("\n".join(a) + "\n")
    (tiny_corpus / "b.txt").write_text("\n\n".join(b) + "\n")  # blank lines between documents are not documents
    mlm(tiny_corpus, f"--corpus={tiny_corpus / 'a.txt'},{tiny_corpus / 'b.txt'}", "--corpus_lines=15",
        "--max_steps=1")
    assert corpus_summary(capsys) == (15, token_count(tiny_corpus, a + b[:5]))


@pytest.mark.parametrize("sliced", [False, True])
def test_a_corpus_that_is_not_utf8_names_the_file_and_line(tiny_corpus, monkeypatch, sliced):
    monkeypatch.chdir(tiny_corpus)
    (tiny_corpus / "latin1.txt").write_bytes(b"alpha beta\ngamma delta\nna\xefve caf\xe9\n" + b"alpha\n" * 10)
    extra = ["--corpus_lines=8"] if sliced else []
    with pytest.raises(ValueError, match=r"latin1.txt: not valid UTF-8 .*\(line 3\).*--errors=replace") as error:
        mlm(tiny_corpus, f"--corpus={tiny_corpus / 'latin1.txt'}", "--max_steps=1", *extra)
    assert "\n" not in str(error.value)
    assert not list((tiny_corpus / ".cache").rglob("*.tmp"))
    mlm(tiny_corpus, f"--corpus={tiny_corpus / 'latin1.txt'}", "--max_steps=1", "--errors=replace",
        f"--run_dir={tiny_corpus / 'replaced'}", f"--out_dir={tiny_corpus / 'replaced' / 'out'}", *extra)
    assert (tiny_corpus / "replaced" / "out" / "model.safetensors").is_file()


# ---------------------------------------------------------------------- the tokenizer

def test_a_run_reuses_its_tokenizer_only_when_asked_the_same(tiny_corpus, monkeypatch):
    monkeypatch.chdir(tiny_corpus)
    mlm(tiny_corpus, "--vocab=none", "--vocab_size=80", "--max_steps=1")
    for name in ("checkpoint.pt", "log.csv"):  # as if that run had stopped right after its tokenizer
        (tiny_corpus / "run" / name).unlink()
    shutil.rmtree(tiny_corpus / "run" / "out")
    with pytest.raises(FileExistsError, match=r"holds a tokenizer trained otherwise \(vocab_size=80 \(asked 120\)\)"):
        mlm(tiny_corpus, "--vocab=none", "--vocab_size=120", "--max_steps=1")
    monkeypatch.setattr("minibert.tokenizer_trainer.train_tokenizer", lambda *a, **k: pytest.fail("trained again"))
    mlm(tiny_corpus, "--vocab=none", "--vocab_size=80", "--max_steps=1")  # the same settings: reused
    monkeypatch.undo()
    shutil.rmtree(tiny_corpus / "run" / "out")
    monkeypatch.chdir(tiny_corpus)
    mlm(tiny_corpus, "--vocab=none", "--vocab_size=120", "--max_steps=1", "--overwrite=true")
    assert 80 < WordPieceTokenizer.from_pretrained(tiny_corpus / "run" / "tokenizer").vocab_size <= 120


def test_a_vocab_size_below_the_alphabet_is_an_error(tiny_corpus, monkeypatch):
    monkeypatch.chdir(tiny_corpus)
    with pytest.raises(ValueError, match=r"--vocab_size=10 is below the \d+ tokens"):
        mlm(tiny_corpus, "--vocab=none", "--vocab_size=10", "--max_steps=1")


def test_vocab_txt_is_written_atomically(tmp_path):
    WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat"]).save_pretrained(tmp_path)
    before = (tmp_path / "vocab.txt").read_bytes()
    unwritable = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dog", "\ud800"])  # no UTF-8 form
    with pytest.raises(UnicodeEncodeError):
        unwritable.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.txt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer_config.json", "vocab.txt"]


# ------------------------------------------------------------ errors that name things

def test_a_config_json_that_is_a_list_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('[{"hidden_size": 128}]')
    with pytest.raises(ValueError, match=r"config.json holds a JSON list, not the object of settings"):
        TransformerWithHeads.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"config.json holds a JSON list"):
        BertConfig.from_json(tmp_path / "config.json")
    WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]).save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ValueError, match=r"tokenizer_config.json: holds a JSON list"):
        WordPieceTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("texts, pairs, split, expected", [
    (["a", None], None, False, r"texts\[1\] is None; each text must be a string"),
    (["a", 3], None, False, r"texts\[1\] is 3; each text must be a string"),
    (["a", "b"], ["c", None], False, r"text_pairs\[1\] is None"),
    ([["a"], ["b", None]], None, True, r"texts\[1\] is \['b', None\]; with is_split_into_words=True"),
])
def test_a_text_that_is_not_a_string_is_named(texts, pairs, split, expected):
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"])
    with pytest.raises(TypeError, match=expected):
        tokenizer(texts, pairs, is_split_into_words=split)


# --------------------------------------------------------------- numbers that mislead

def test_a_corpus_with_no_held_out_document_logs_no_held_out_loss(tiny_corpus, monkeypatch, capsys):
    monkeypatch.chdir(tiny_corpus)
    (tiny_corpus / "one.txt").write_text(" ".join(WORDS * 3) + "\n")  # one document: nothing to hold out
    mlm(tiny_corpus, f"--corpus={tiny_corpus / 'one.txt'}", "--batch_size=1", "--max_steps=2")
    out = capsys.readouterr().out
    assert "no held-out documents (1 document(s) in the corpus)" in out and "held-out loss 0.000" not in out
    rows = [line.split(",") for line in (tiny_corpus / "run" / "log.csv").read_text().splitlines()]
    eval_loss = rows[0].index("eval_loss")
    assert [row[eval_loss] for row in rows[1:]] == ["", ""]
    assert all(float(row[rows[0].index("train_loss")]) > 0 for row in rows[1:])


# ------------------------------------------------------- the command line: one line per mistake

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [  # (script or module, arguments, what its one line says); {missing} is a path that does not exist
    ("train_mlm.py", ["--preset=huge"], "--preset must be one of"),
    ("train_embedder.py", ["--init={missing}", "--objective=cosent"], "{missing}"),
    ("train_mtl.py", ["--tasks={missing}/tasks.json"], "tasks.json"),
    ("minibert.embedder", ["--model", "{missing}"], "{missing}"),
    ("minibert.tokenizer_trainer", ["--files", "{missing}/corpus.txt", "--out_dir", "{missing}/vocab"], "corpus.txt"),
    ("minibert.finetuning_data", ["--vocab", "{missing}"], "{missing}"),
]


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy: the module ran once before
@pytest.mark.parametrize("command, arguments, expected", COMMANDS)
def test_a_mistake_on_the_command_line_is_one_line_on_stderr(tmp_path, monkeypatch, capsys, command, arguments,
                                                             expected):
    """Each entry point as a shell runs it (as __main__): exit status 2 and one line naming what
    is wrong, not a traceback through the library."""
    missing = str(tmp_path / "missing")
    arguments = [a.replace("{missing}", missing) for a in arguments]
    if command.endswith(".py"):  # a training script: its run and every other input in tmp_path too
        arguments = missing_inputs(command[:-3], tmp_path, *arguments)
    monkeypatch.delenv("MINIBERT_TRACEBACK", raising=False)
    monkeypatch.setattr(sys, "argv", [command, *arguments])
    with pytest.raises(SystemExit) as stopped:
        if command.endswith(".py"):
            runpy.run_path(str(ROOT / command), run_name="__main__")
        else:
            runpy.run_module(command, run_name="__main__", alter_sys=True)
    printed = capsys.readouterr().err
    assert stopped.value.code == 2, printed
    assert printed.count("\n") == 1 and "Traceback" not in printed, printed
    assert re.match(r"\w+\.py: error: ", printed) and expected.replace("{missing}", missing) in printed, printed


def test_the_traceback_is_there_when_asked_and_ctrl_c_ends_quietly(monkeypatch, capsys):
    from minibert.overrides import run_from_command_line

    def bad_setting():
        raise ValueError("--batch_size must be >= 1, got 0")

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setenv("MINIBERT_TRACEBACK", "1")
    with pytest.raises(ValueError, match="--batch_size"):  # to report a bug: where it was raised
        run_from_command_line(bad_setting)
    monkeypatch.delenv("MINIBERT_TRACEBACK")
    with pytest.raises(SystemExit) as stopped:
        run_from_command_line(interrupted)
    assert stopped.value.code == 130 and "Traceback" not in capsys.readouterr().err


def test_a_missing_init_is_found_before_the_sentences_are_read(tmp_path, capsys):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("".join(f"sentence number {i}.\n" for i in range(100)))
    with pytest.raises(FileNotFoundError, match="missing"):
        train_embedder.main(missing_inputs("train_embedder", tmp_path, f"--sentences={sentences}", "--batch_size=4"))
    assert "SimCSE on" not in capsys.readouterr().out
