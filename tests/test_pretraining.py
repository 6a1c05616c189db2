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
from minibert.pretraining_data import DocumentSubset, TokenizedCorpus, batch_at, collate, unigram_log_probs
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


def test_batches_grouped_by_length_pad_less_and_keep_every_sequence():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 127, size=1003)
    sequences = np.stack([np.arange(1003) * 200, lengths], axis=1)  # (start, length)
    batch_size, per_epoch = 8, 1003 // 8
    for seed in (0, 1):
        epoch = [batch_at(step, sequences, batch_size, seed, lengths=lengths, window=10)[0] for step in range(per_epoch)]
        seen = np.concatenate(epoch)[:, 0]
        assert len(set(seen.tolist())) == per_epoch * batch_size  # no sequence twice in an epoch
        plain = [batch_at(step, sequences, batch_size, seed)[0] for step in range(per_epoch)]
        assert sorted(seen.tolist()) == sorted(np.concatenate(plain)[:, 0].tolist())  # the same rows as unsorted
        fill = lambda batches: np.mean([b[:, 1].sum() / (len(b) * b[:, 1].max()) for b in batches])  # noqa: E731
        assert fill(plain) < 0.7 < 0.85 < fill(epoch)
    # Deterministic in (seed, step); the next epoch groups different rows together.
    step = 5
    assert np.array_equal(batch_at(step, sequences, batch_size, 3, lengths=lengths)[0],
                          batch_at(step, sequences, batch_size, 3, lengths=lengths)[0])
    assert batch_at(step + per_epoch, sequences, batch_size, 3, lengths=lengths)[1] == 1
    first = {tuple(sorted(b[:, 0])) for b in (batch_at(s, sequences, batch_size, 3, lengths=lengths)[0]
                                              for s in range(per_epoch))}
    second = {tuple(sorted(b[:, 0])) for b in (batch_at(s, sequences, batch_size, 3, lengths=lengths)[0]
                                               for s in range(per_epoch, 2 * per_epoch))}
    assert len(first & second) < per_epoch // 4


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
    with pytest.raises(ValueError, match=r"--resume=true with other settings than .*checkpoint.pt was written with: "
                                         r"--learning_rate=0.003 now, 0.001 then; give them as they were"):
        run_train_mlm(tmp_path, tmp_path / "corpus.txt", "interrupted", "--max_steps=8", "--resume=true",
                      f"--vocab={straight / 'out'}", "--learning_rate=3e-3")


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


def test_unigram_baseline_counts_and_entropy(tmp_path, tokenizer):
    """token_counts counts exactly the subset's tokens; the unigram model puts no mass on ids
    that are never targets, and its cross-entropy on its own training text is the entropy."""
    write_corpus(tmp_path / "corpus.txt")
    corpus = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
    train, held_out = corpus.split(0.2, seed=0)
    counts = train.token_counts(tokenizer.vocab_size)
    expected = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for index in train.document_indices:
        for token in corpus.document(index):
            expected[token] += 1
    assert np.array_equal(counts, expected)
    assert counts.sum() + held_out.token_counts(tokenizer.vocab_size).sum() == len(corpus.ids)

    log_p = unigram_log_probs(counts, tokenizer.all_special_ids)
    assert torch.isneginf(log_p[tokenizer.all_special_ids]).all()
    assert torch.exp(log_p.double()).sum().item() == pytest.approx(1.0, abs=1e-6)
    smoothed = counts + 1.0
    smoothed[tokenizer.all_special_ids] = 0
    p = smoothed / smoothed.sum()
    entropy = -(p[p > 0] * np.log(p[p > 0])).sum()
    tokens = torch.as_tensor(np.concatenate([np.repeat(i, c) for i, c in enumerate(smoothed.astype(int))]))
    assert (-log_p[tokens].double().mean()).item() == pytest.approx(entropy, rel=1e-5)


def test_log_reports_the_context_gain(tmp_path, monkeypatch):
    """context_gain = unigram_loss - eval_loss in every evaluated row; an untrained model is
    worse than the unigram model (negative gain), and the unigram loss is the same at every
    evaluation (same held-out masks)."""
    from minibert.plots import read_log
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus.txt")
    run = run_train_mlm(tmp_path, tmp_path / "corpus.txt", "gain", "--max_steps=6")
    log = read_log(run / "log.csv")
    assert np.allclose(log["context_gain"], log["unigram_loss"] - log["eval_loss"], atol=2e-4)
    assert np.allclose(log["unigram_loss"], log["unigram_loss"][0])
    assert 0 < log["unigram_loss"][0] < np.log(300)
    assert log["context_gain"][0] < 0


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_on_a_cpu_that_has_it(tmp_path, monkeypatch, capsys, native):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_mlm, "cpu_has_bfloat16", lambda: native)
    write_corpus(tmp_path / "corpus.txt")
    run_train_mlm(tmp_path, tmp_path / "corpus.txt", "auto", "--max_steps=2", "--device=cpu")
    assert ("bfloat16" if native else "float32") in capsys.readouterr().out


def test_unknown_setting_is_rejected():
    with pytest.raises(ValueError, match="unknown setting"):
        train_mlm.main(["--learning_rat=1e-3"])


def test_held_out_loss_and_accuracy_are_the_same_with_prediction_slots(tokenizer):
    # train_mlm's evaluate reads the head's output through prediction_targets, which lines the
    # labels up with the logits in either layout: (M, V) or (B, P, V) with empty slots.
    from minibert.training import Precision
    config = BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    model = TransformerWithHeads(config)
    head = model.add_head("mlm", MaskedLanguageModelingHead(config))
    masker = Masker.for_tokenizer(tokenizer, rate=0.3, strategy="whole_word")
    documents = [tokenizer.encode(" ".join(WORDS[i:i + 3 + i % 11]), add_special_tokens=False)
                 for i in range(0, len(WORDS) - 14, 2)]  # ragged: batches with padding, rows with empty slots
    corpus = TokenizedCorpus(np.concatenate(documents), np.cumsum([0] + [len(d) for d in documents]))
    held_out = DocumentSubset(corpus, np.arange(len(corpus)))
    sequences = held_out.sequences(16)
    settings = {"seed": 1, "eval_batches": 3, "batch_size": 4}
    counts = held_out.token_counts(tokenizer.vocab_size)
    unigram = unigram_log_probs(counts, tokenizer.all_special_ids)
    with torch.no_grad():  # predict the commonest token everywhere: right at some masked tokens, not all
        head.bias[int(counts.argmax())] = 50.0
    results = []
    for layout in ("slots", "boolean indexing"):
        results.append(train_mlm.evaluate(model, corpus.ids, sequences, masker, tokenizer, settings,
                                          torch.device("cpu"), Precision("float32", torch.device("cpu")), unigram))
        masker.max_per_sequence = lambda seq_len: None  # no bound given: the head falls back to boolean indexing
    (slot_loss, slot_accuracy, slot_unigram), (loss, accuracy, unigram_loss) = results
    assert slot_loss == pytest.approx(loss, rel=1e-5) and slot_accuracy == accuracy and slot_unigram == unigram_loss
    assert 0 < accuracy < 0.5  # a fraction of the masked tokens: empty slots are not counted


def test_train_mlm_gives_each_batch_the_slots_its_length_needs(tmp_path, monkeypatch):
    # The slots are asked per batch: a batch of short pieces gets few. Slots fixed at
    # max_seq_len left 33% of them empty on the arXiv corpus at 128 tokens, 164% at 512.
    calls = []
    forward = MaskedLanguageModelingHead.forward

    def recording_forward(self, hidden_states, attention_mask=None, labels=None, max_predictions=None):
        if labels is not None:
            calls.append((labels.shape[1], int((labels != -100).sum(dim=1).max()), max_predictions))
        return forward(self, hidden_states, attention_mask, labels, max_predictions)

    monkeypatch.setattr(MaskedLanguageModelingHead, "forward", recording_forward)
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus.txt")
    run_train_mlm(tmp_path, tmp_path / "corpus.txt", "slots", "--max_steps=6", "--max_seq_len=128")
    lengths = {length for length, _, _ in calls}
    assert len(lengths) > 1 and min(lengths) < 64, lengths  # batches of several lengths, some short
    for length, most_labels, slots in calls:  # training and held-out batches alike
        assert most_labels <= slots <= round(0.15 * length) + 1, (length, most_labels, slots)


def test_a_complete_cache_is_never_rewritten_under_its_readers(tmp_path, tokenizer, monkeypatch):
    # Two runs start on the same corpus and vocabulary: both miss the cache and tokenize.
    # The first to finish reads its ids through a memmap; the second then rewrote that very
    # file in place (truncated, then filled), under the first run's feet.
    write_corpus(tmp_path / "corpus.txt")
    encode, first = tokenizer.encode, {}

    def other_run_finishes_first(*args, **kwargs):
        if not first:
            monkeypatch.setattr(tokenizer, "encode", encode)
            first["corpus"] = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
            first["ids"] = np.array(first["corpus"].ids)
            first["stat"] = (tmp_path / "cache" / first["corpus"].key / "ids.npy").stat().st_mtime_ns
        return encode(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", other_run_finishes_first)
    second = TokenizedCorpus.build([tmp_path / "corpus.txt"], tokenizer, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / second.key / "ids.npy").stat().st_mtime_ns == first["stat"]
    assert np.array_equal(second.ids, first["ids"]) and np.array_equal(first["corpus"].ids, first["ids"])
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [second.key]  # nothing left behind
