"""MLM pretraining end to end on a corpus the test writes itself: the token cache, the
document-respecting pieces, an overfit run, exact resume, and a train_mlm.py run whose
output the reference library loads."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minibert.config import BertConfig
from minibert.heads import MaskedLanguageModelingHead
from minibert.masking import Masker
from minibert.pretraining_data import TokenizedCorpus, batch_at, collate
from minibert.safetensors import load_file
from minibert.tokenizer import WordPieceTokenizer
from minibert.transformer_with_heads import TransformerWithHeads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_mlm  # noqa: E402

WORDS = ("the model learns language from masked tokens while attention mixes every position with every other "
         "position and the encoder stacks layers of attention and feed forward blocks to represent text").split()


def write_corpus(path, documents=60, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(5, 90))) + "." for _ in range(documents)]
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return WordPieceTokenizer.from_pretrained(minilm_dir)


def test_corpus_cache_holds_the_tokens_and_is_reused(tmp_path, tokenizer, monkeypatch):
    lines = write_corpus(tmp_path / "corpus.txt")
    corpus = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
    assert len(corpus) == len(lines)
    for index in (0, 7, len(lines) - 1):
        assert corpus.document(index).tolist() == tokenizer.encode(lines[index], add_special_tokens=False)
    # Same corpus and vocab: read from the cache, nothing is tokenized again.
    monkeypatch.setattr(tokenizer, "encode", lambda *a, **k: pytest.fail("re-tokenized despite a valid cache"))
    again = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.ids, corpus.ids)
    monkeypatch.undo()
    # A changed corpus gets a new cache entry.
    write_corpus(tmp_path / "corpus.txt", seed=1)
    changed = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
    assert not np.array_equal(changed.ids[:50], corpus.ids[:50])
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_pieces_respect_documents_and_cover_every_token(tmp_path, tokenizer):
    write_corpus(tmp_path / "corpus.txt")
    corpus = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
    train, held_out = corpus.split(0.1, seed=0)
    assert len(train) + len(held_out) == len(corpus) and len(held_out) == 6
    assert not set(train.document_indices) & set(held_out.document_indices)
    max_seq_len = 16
    pieces = train.sequences(max_seq_len)
    assert pieces[:, 1].max() <= max_seq_len - 2 and pieces[:, 1].min() >= 1
    covered = np.zeros(len(corpus.ids), dtype=int)
    for start, length in pieces:
        covered[start:start + length] += 1
        document = np.searchsorted(corpus.starts, start, side="right") - 1
        assert start + length <= corpus.starts[document + 1], "a piece crosses a document boundary"
    in_train = np.zeros(len(corpus.ids), dtype=bool)
    for d in train.document_indices:
        in_train[corpus.starts[d]:corpus.starts[d + 1]] = True
    assert np.array_equal(covered, in_train.astype(int))  # every train token exactly once


def test_collate_and_batch_order(tokenizer):
    ids = np.arange(100, 130)
    rows = np.array([[0, 3], [10, 5]])
    input_ids, attention_mask = collate(ids, rows, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    assert input_ids.tolist() == [[cls, 100, 101, 102, sep, pad, pad], [cls, 110, 111, 112, 113, 114, sep]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1, 0, 0], [1] * 7]
    sequences = np.arange(40).reshape(20, 2)
    # Steps 0..4 form epoch 0 (20 // 4 batches) and together hold every sequence once.
    epoch0 = np.concatenate([batch_at(step, sequences, 4, seed=5)[0] for step in range(5)])
    assert sorted(epoch0[:, 0].tolist()) == list(range(0, 40, 2))
    assert batch_at(5, sequences, 4, seed=5)[1] == 1
    assert np.array_equal(batch_at(7, sequences, 4, seed=5)[0], batch_at(7, sequences, 4, seed=5)[0])
    assert not np.array_equal(batch_at(0, sequences, 4, seed=5)[0], batch_at(5, sequences, 4, seed=5)[0])


def overfit_losses(tokenizer, steps=40):
    torch.manual_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0)
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    batch = tokenizer([" ".join(WORDS[i:i + 12]) for i in range(0, 24, 3)], return_tensors="pt")
    masked, labels = Masker.for_tokenizer(tokenizer, rate=0.3, strategy="exact")(batch["input_ids"], torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, _ = model(masked, batch["attention_mask"], head="mlm", labels=labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_overfit_one_batch_reproducibly(tokenizer):
    losses = overfit_losses(tokenizer)
    assert losses[0] > 9.0  # about ln(30522) = 10.3 at the start
    assert losses[-1] < 0.5, losses[::5]
    assert overfit_losses(tokenizer) == losses  # the same trajectory, bit for bit


def run_train_mlm(tmp_path, corpus, name, *extra):
    train_mlm.main([f"--corpus={corpus}", "--preset=tiny", "--vocab_size=300", "--max_seq_len=32",
                    "--batch_size=4", "--eval_every=3", "--eval_batches=2", "--checkpoint_every=3",
                    f"--run_dir={tmp_path / name}", f"--out_dir={tmp_path / name / 'out'}", "--threads=1", *extra])
    return tmp_path / name


def test_resume_continues_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the corpus cache goes to ./.cache
    write_corpus(tmp_path / "corpus.txt")
    straight = run_train_mlm(tmp_path, tmp_path / "corpus.txt", "straight", "--max_steps=8")
    interrupted = run_train_mlm(tmp_path, tmp_path / "corpus.txt", "interrupted", "--max_steps=8", "--stop_at_step=4",
                                f"--vocab={straight / 'out'}")
    assert not (interrupted / "out").exists()
    run_train_mlm(tmp_path, tmp_path / "corpus.txt", "interrupted", "--max_steps=8", "--resume=true",
                  f"--vocab={straight / 'out'}")
    a, b = load_file(straight / "out" / "model.safetensors"), load_file(interrupted / "out" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    with pytest.raises(ValueError, match="different settings"):
        run_train_mlm(tmp_path, tmp_path / "corpus.txt", "interrupted", "--max_steps=8", "--resume=true",
                      f"--vocab={straight / 'out'}", "--learning_rate=1e-3")


def test_train_mlm_output_loads_in_transformers(tmp_path, monkeypatch):
    """A tokenizer is trained first (no --vocab), then the model; the reference library
    loads the output directory and gives the same logits."""
    from transformers import BertForMaskedLM
    monkeypatch.chdir(tmp_path)
    lines = write_corpus(tmp_path / "corpus.txt")
    run = run_train_mlm(tmp_path, tmp_path / "corpus.txt", "smoke", "--max_steps=6")
    out = run / "out"
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in out.iterdir()}
    assert (run / "log.csv").read_text().count("\n") >= 3 and (run / "loss.png").is_file()
    tokenizer = WordPieceTokenizer.from_pretrained(out)
    ours = TransformerWithHeads.from_pretrained(out).eval()
    reference = BertForMaskedLM.from_pretrained(out).eval()
    batch = tokenizer(lines[:4], truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        expected = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        _, got = ours(batch["input_ids"], batch["attention_mask"], head="mlm")
    assert (got - expected).abs().max() < 1e-4


def test_unknown_setting_is_rejected():
    with pytest.raises(ValueError, match="unknown setting"):
        train_mlm.main(["--learning_rat=1e-3"])
