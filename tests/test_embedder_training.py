"""train_embedder.py as a demanding user runs it: settings an objective cannot use are refused
before anything is written, a stopped run resumes to what an uninterrupted one writes, and
out_dir is the model the log scored, in minibert and in sentence-transformers alike."""

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minibert.config import BertConfig
from minibert.transformer_with_heads import TransformerWithHeads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402
from test_contrastive import PARAPHRASES, small_tokenizer, write_sts_fixture  # noqa: E402


@pytest.fixture
def fixture(tmp_path):
    """A small init model over the fixture's words (64 positions), STS-B-shaped files of 8
    pairs, and the 8 sentences as a --sentences file."""
    tokenizer = small_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    TransformerWithHeads(config).save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    write_sts_fixture(tmp_path / "data")
    (tmp_path / "sentences.txt").write_text("".join(p + "\n" for pair in PARAPHRASES for p in pair))
    return tmp_path


def train(root, *extra, run="run", out=None):
    return train_embedder.main([f"--init={root / 'init'}", f"--data_dir={root / 'data'}",
                                f"--sentences={root / 'sentences.txt'}", "--batch_size=4", "--max_steps=2",
                                "--eval_every=2", "--max_seq_len=16", "--learning_rate=1e-3", "--threads=1",
                                f"--run_dir={root / run}", f"--out_dir={root / (out or run + '_model')}", *extra])


@pytest.mark.parametrize("extra, expected", [
    (["--objective=simcse", "--batch_size=1"], "--batch_size=1: simcse"),  # the loss would be 0: no other row
    (["--objective=cosent", "--batch_size=1"], "--batch_size=1: cosent"),
    (["--objective=cosent", "--batch_size=16"], "sts-train.csv holds 8 pairs, fewer than one batch (--batch_size=16)"),
    (["--objective=simcse", "--temperature=1e-40"], "--temperature=1e-40"),  # cos / tau overflows float32: NaN
    (["--objective=cosent", "--cosent_scale=1e39"], "--cosent_scale=1e+39"),
    (["--objective=cosine", "--max_seq_len=65"], "--max_seq_len=65"),
    (["--objective=cosine", "--data_dir={root}/nodev"], "sts-dev.csv"),
])
def test_what_an_objective_cannot_use_is_refused_before_anything_is_written(fixture, extra, expected):
    """Found late, a mistake left a log.csv (and out_dir a model) behind, and the same command
    then stopped at 'run_dir already holds a run': the run folder had to be overwritten."""
    if "nodev" in extra[-1]:
        write_sts_fixture(fixture / "nodev")
        (fixture / "nodev" / "sts" / "stsbenchmark" / "sts-dev.csv").unlink()
    extra = [a.replace("{root}", str(fixture)) for a in extra]
    with pytest.raises((ValueError, FileNotFoundError), match="^[^\n]*" + re.escape(expected)):
        train(fixture, *extra)
    assert [p.name for p in (fixture / "run").iterdir()] == []
    assert not (fixture / "run_model").exists()


def test_repeated_sentences_are_read_once(fixture, capsys):
    """Two copies of a sentence in one SimCSE batch are a positive pair scored as a negative."""
    with open(fixture / "sentences.txt", "a") as f:
        f.write("".join(p + "\n" for pair in PARAPHRASES for p in pair))
    train(fixture, "--objective=simcse", "--max_steps=1")
    out = capsys.readouterr().out
    assert "SimCSE on 8 sentences from" in out and "(8 repeated lines dropped)" in out


def log_rows(path):
    """The log without its elapsed_s column (wall time differs from run to run)."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return [row[:1] + row[2:] for row in rows]


def test_a_stopped_and_resumed_run_writes_what_an_uninterrupted_one_does(fixture):
    """--stop_at_step is an interruption: it used to score the dev set and maybe save that
    step's model as the best (a model the uninterrupted run never picks), log a row the
    uninterrupted run does not have, and the resumed run averaged the train loss of the
    steps after the checkpoint only."""
    settings = ["--objective=cosent", "--max_steps=6", "--eval_every=3", "--checkpoint_every=1"]
    train(fixture, *settings, run="straight")
    train(fixture, *settings, "--stop_at_step=4")
    train(fixture, *settings, "--resume=true")
    assert log_rows(fixture / "run" / "log.csv") == log_rows(fixture / "straight" / "log.csv")
    for name in ("model.safetensors", "config.json", "sentence_bert_config.json"):
        assert (fixture / "run_model" / name).read_bytes() == (fixture / "straight_model" / name).read_bytes(), name


def test_resuming_into_another_out_dir_is_refused(fixture):
    """out_dir holds the best model so far; a resumed run writing elsewhere saves only a later
    improvement, if there is one, and then 'model in out_dir/' names an empty folder."""
    train(fixture, "--objective=cosine", "--max_steps=4", "--stop_at_step=2")
    with pytest.raises(ValueError, match="out_dir"):
        train(fixture, "--objective=cosine", "--max_steps=4", "--resume=true", out="elsewhere")
    assert not (fixture / "elsewhere").exists()


def test_out_dir_is_the_model_the_log_scored_in_minibert_and_sentence_transformers(fixture):
    """Trained and scored with --max_seq_len=6, out_dir used to say nothing of it: minibert and
    sentence-transformers read sentences of up to 64 (the positions) and scored it otherwise
    than the log did (0.65 against 0.76 on a run of the audit)."""
    from sentence_transformers import SentenceTransformer
    from minibert.embedder import SentenceEmbedder
    from minibert.sts import evaluate_sts
    train(fixture, "--objective=cosent", "--max_steps=4", "--max_seq_len=6")
    best = max(float(row[-1]) for row in log_rows(fixture / "run" / "log.csv")[1:])
    embedder = SentenceEmbedder.from_pretrained(fixture / "run_model")
    assert embedder.max_length == 6
    assert round(evaluate_sts(embedder, "dev", fixture / "data")["spearman"], 4) == best
    reference = SentenceTransformer(str(fixture / "run_model"), device="cpu")
    assert reference.max_seq_length == 6
    sentences = [p for pair in PARAPHRASES for p in pair] + ["the cat"]
    np.testing.assert_allclose(reference.encode(sentences), embedder.encode(sentences), atol=1e-6)


def test_a_starting_model_that_scores_nan_is_replaced_by_the_first_that_scores(fixture, monkeypatch):
    """NaN > best and x > NaN are both false: a NaN first score kept every later model out."""
    import minibert.sts
    scores = iter([math.nan, 0.25, 0.5])
    monkeypatch.setattr(minibert.sts, "spearman", lambda x, y: next(scores))
    train(fixture, "--objective=cosine", "--max_steps=2", "--eval_every=1")
    assert torch.load(fixture / "run" / "checkpoint.pt", weights_only=True)["best"] == 0.5


def test_simcse_without_dropout_is_noted_and_attention_dropout_is_dropout(fixture, capsys):
    """Explicit --dropout=0 is taken (tests/test_distributed.py compares runs that way) with a
    note; a config with hidden dropout 0 but attention dropout 0.1 still gives two views."""
    train(fixture, "--objective=simcse", "--max_steps=1", "--dropout=0")
    assert "note: --dropout=0" in capsys.readouterr().out
    config = fixture / "init" / "config.json"
    config.write_text(config.read_text().replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": 0.0'))
    assert '"hidden_dropout_prob": 0.0' in config.read_text()
    train(fixture, "--objective=simcse", "--max_steps=1", run="attention")
