"""train_mlm.py on valid but unusual input: corpora, settings and resumptions that must
either run or stop at once with one line naming what is wrong, and never leave a run folder
that a corrected rerun cannot use."""

import sys
from pathlib import Path

import numpy as np
import pytest

from minibert.plots import read_log
from minibert.tokenizer_trainer import train_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_mlm  # noqa: E402

WORDS = "the model learns language from masked tokens while attention mixes every position".split()


def write_corpus(path, documents=40, seed=0, low=5, high=60):
    rng = np.random.default_rng(seed)
    path.write_text("".join(" ".join(rng.choice(WORDS, size=rng.integers(low, high))) + ".\n"
                            for _ in range(documents)))
    return path


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A small vocabulary trained once: the runs below skip training their own."""
    folder = tmp_path_factory.mktemp("vocab")
    train_tokenizer([write_corpus(folder / "text.txt")], vocab_size=120, show_progress=False).save_pretrained(folder)
    return folder


def run(tmp_path, name, *extra):
    train_mlm.main(["--preset=tiny", "--max_steps=3", "--batch_size=4", "--max_seq_len=16", "--eval_batches=2",
                    "--threads=1", f"--run_dir={tmp_path / name}", f"--out_dir={tmp_path / name / 'out'}", *extra])
    return tmp_path / name


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the corpus cache goes to ./.cache
    return tmp_path


@pytest.mark.parametrize("setting", ["--batch_size=64", "--held_out_fraction=0.99"])
def test_too_little_training_text_stops_before_the_run_starts(in_tmp, vocab, setting):
    # 40 documents of a few pieces each: a batch of 64 pieces, or a held-out share that
    # leaves no document to train on, cannot make one step. Said in one line that names
    # the settings, before the run writes anything that would make the corrected rerun
    # ask for --resume or --overwrite.
    corpus = write_corpus(in_tmp / "corpus.txt")
    with pytest.raises(ValueError, match=setting.split("=")[0]) as error:
        run(in_tmp, "small", f"--corpus={corpus}", f"--vocab={vocab}", "--max_seq_len=128", setting)
    assert "\n" not in str(error.value)
    run(in_tmp, "small", f"--corpus={corpus}", f"--vocab={vocab}", "--max_seq_len=128")  # no --overwrite needed


def test_held_out_fraction_near_one_keeps_a_document_to_train_on(in_tmp, vocab):
    corpus = write_corpus(in_tmp / "corpus.txt", documents=3)
    run(in_tmp, "near_one", f"--corpus={corpus}", f"--vocab={vocab}", "--held_out_fraction=0.9", "--batch_size=1")


def test_batches_with_nothing_masked_leave_the_logged_losses_finite(in_tmp, vocab):
    # Bernoulli masking of short documents leaves some rows, micro-batches and held-out
    # batches with no masked token; their mean loss is 0/0, and one NaN made the whole
    # logged train and held-out loss NaN.
    corpus = write_corpus(in_tmp / "corpus.txt", documents=200, low=1, high=3)
    log = read_log(run(in_tmp, "bernoulli", f"--corpus={corpus}", f"--vocab={vocab}", "--masking=bernoulli",
                       "--mask_rate=0.1", "--accumulation_steps=2", "--held_out_fraction=0.5", "--eval_batches=20",
                       "--max_steps=6", "--eval_every=3") / "log.csv")
    assert len(log["train_loss"]) == 2
    assert np.isfinite(log["train_loss"]).all() and np.isfinite(log["eval_loss"]).all(), log


def test_resume_refuses_a_corpus_whose_text_changed(in_tmp, vocab):
    # Same --corpus path, other text: the run would silently go on training on other data.
    corpus = write_corpus(in_tmp / "corpus.txt")
    run(in_tmp, "edited", f"--corpus={corpus}", f"--vocab={vocab}", "--max_steps=4", "--stop_at_step=2")
    write_corpus(corpus, seed=1)
    with pytest.raises(ValueError, match="corpus.txt"):
        run(in_tmp, "edited", f"--corpus={corpus}", f"--vocab={vocab}", "--max_steps=4", "--resume=true")
    write_corpus(corpus)  # the text it began with: it goes on
    run(in_tmp, "edited", f"--corpus={corpus}", f"--vocab={vocab}", "--max_steps=4", "--resume=true")


def test_corpus_list_with_spaces_and_a_trailing_comma(in_tmp, vocab):
    first, second = write_corpus(in_tmp / "a.txt"), write_corpus(in_tmp / "b.txt", seed=1)
    run(in_tmp, "list", f"--corpus={first}, {second},", f"--vocab={vocab}")


@pytest.mark.parametrize("name", ["missing.txt", "folder"])
def test_a_corpus_entry_that_is_not_a_file_is_named_with_the_setting(in_tmp, name):
    (in_tmp / "folder").mkdir()
    with pytest.raises(OSError, match=f"--corpus.*{name}"):
        run(in_tmp, "not_a_file", f"--corpus={write_corpus(in_tmp / 'a.txt')},{in_tmp / name}")
    assert not (in_tmp / "not_a_file" / "tokenizer").exists()  # refused before a tokenizer is trained
