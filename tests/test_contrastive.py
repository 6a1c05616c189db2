"""Contrastive objectives by hand, their gradients, and a tiny model that learns from pairs."""

import math
import sys
from pathlib import Path

import pytest
import torch

from minibert.config import BertConfig
from minibert.contrastive import cosent_loss, cosine_similarity_loss, info_nce
from minibert.heads import SentenceEmbeddingHead
from minibert.tokenizer import WordPieceTokenizer
from minibert.transformer_with_heads import TransformerWithHeads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402


def test_info_nce_on_a_3x3_example_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])  # norms 1, 2, 5
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    tau = 0.5
    unit = lambda v: [x / math.hypot(*v) for x in v]
    cos = [[sum(p * q for p, q in zip(unit(u), unit(w))) for w in b.tolist()] for u in a.tolist()]
    # cos = [[1, .7071, 0], [0, .7071, 1], [.6, .9899, .8]]
    expected = sum(-cos[i][i] / tau + math.log(sum(math.exp(c / tau) for c in cos[i])) for i in range(3)) / 3
    assert info_nce(a, b, temperature=tau).item() == pytest.approx(expected, rel=1e-6)
    # The docstring's example: identical one-hot views, tau = 1 -> log(1 + 1/e).
    assert info_nce(torch.eye(2), torch.eye(2), temperature=1.0).item() == pytest.approx(math.log(1 + 1 / math.e))


def test_info_nce_gradcheck():
    a = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, 0.1), (a, b))


def test_simcse_views_collapse_without_dropout(minilm_dir):
    """With dropout off the two views are identical, so the positive logit is 1/tau and the
    loss is mean_i [logsumexp_j cos_ij / tau] - 1/tau."""
    tokenizer = WordPieceTokenizer.from_pretrained(minilm_dir)
    config = BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)
    model = TransformerWithHeads(config)
    model.add_head("embedding", SentenceEmbeddingHead(config))
    batch = tokenizer(["a cat sat", "dogs bark loudly", "the market fell", "planes fly"], return_tensors="pt")
    model.train()
    with_dropout = [model(batch["input_ids"], batch["attention_mask"], head="embedding")[1] for _ in range(2)]
    assert not torch.allclose(*with_dropout)
    model.eval()
    view_a = model(batch["input_ids"], batch["attention_mask"], head="embedding")[1]
    view_b = model(batch["input_ids"], batch["attention_mask"], head="embedding")[1]
    assert torch.equal(view_a, view_b)
    unit = torch.nn.functional.normalize(view_a, dim=-1)
    expected = (torch.logsumexp(unit @ unit.T / 0.05, dim=1) - 1 / 0.05).mean()
    assert torch.allclose(info_nce(view_a, view_b, 0.05), expected, atol=1e-4)


def test_cosine_similarity_loss_by_hand():
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    v = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    scores = torch.tensor([5.0, 0.0])
    expected = ((math.sqrt(0.5) - 1.0) ** 2 + (-1.0 - 0.0) ** 2) / 2
    assert cosine_similarity_loss(u, v, scores).item() == pytest.approx(expected, rel=1e-6)


def test_cosent_loss_by_hand():
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # cosines 1, 0, -1
    scores = torch.tensor([1.0, 3.0, 2.0])  # gold order: pair 1 > pair 2 > pair 0
    # Ordered (i above j): (1,0), (1,2), (2,0); terms exp(scale * (cos_j - cos_i)).
    scale = 2.0
    expected = math.log(1 + math.exp(scale * (1 - 0)) + math.exp(scale * (-1 - 0)) + math.exp(scale * (1 - (-1))))
    assert cosent_loss(u, v, scores, scale).item() == pytest.approx(expected, rel=1e-6)
    assert torch.autograd.gradcheck(lambda u: cosent_loss(u, v.double(), scores.double(), scale),
                                    (u.double().requires_grad_(),))


PARAPHRASES = [("a cat sits on the mat", "the cat is sitting on a mat"),
               ("stocks fell sharply today", "share prices dropped a lot today"),
               ("the plane takes off", "an airplane is taking off"),
               ("he cooks pasta for dinner", "he is making pasta for supper")]


def small_tokenizer():
    """A vocabulary of just the words used here: a 30k embedding matrix would dominate the time."""
    words = sorted({w for pair in PARAPHRASES for sentence in pair for w in sentence.split()})
    return WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])


def test_training_on_pairs_raises_their_similarity():
    torch.manual_seed(0)
    tokenizer = small_tokenizer()
    config = BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)
    model = TransformerWithHeads(config)
    model.add_head("embedding", SentenceEmbeddingHead(config))
    first = [p[0] for p in PARAPHRASES]
    second = [p[1] for p in PARAPHRASES]

    def gap():
        model.eval()
        with torch.no_grad():
            a = model(**{k: v for k, v in tokenizer(first, return_tensors="pt").items() if k != "token_type_ids"}, head="embedding")[1]
            b = model(**{k: v for k, v in tokenizer(second, return_tensors="pt").items() if k != "token_type_ids"}, head="embedding")[1]
        cos = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
        model.train()
        return (cos.diag().mean() - cos[~torch.eye(4, dtype=torch.bool)].mean()).item()

    before = gap()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(15):
        a = model(**{k: v for k, v in tokenizer(first, return_tensors="pt").items() if k != "token_type_ids"}, head="embedding")[1]
        b = model(**{k: v for k, v in tokenizer(second, return_tensors="pt").items() if k != "token_type_ids"}, head="embedding")[1]
        loss = info_nce(a, b, 0.05)  # supervised pairs as positives, the rest as negatives
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert gap() > before + 0.2


def write_sts_fixture(folder):
    sts = folder / "sts" / "stsbenchmark"
    sts.mkdir(parents=True)
    rows = [(5.0, a, b) for a, b in PARAPHRASES] + [(0.0, PARAPHRASES[i][0], PARAPHRASES[(i + 1) % 4][1]) for i in range(4)]
    text = "".join(f"main-captions\tMSRvid\t2012\t{i:04d}\t{score}\t{a}\t{b}\n" for i, (score, a, b) in enumerate(rows))
    for split in ("train", "dev", "test"):
        (sts / f"sts-{split}.csv").write_text(text)


@pytest.mark.parametrize("objective", ["simcse", "cosine", "cosent"])
def test_train_embedder_runs_and_writes_a_loadable_model(tmp_path, minilm_dir, objective):
    from minibert.embedder import SentenceEmbedder
    write_sts_fixture(tmp_path / "data")
    config = BertConfig.from_preset("tiny", vocab_size=WordPieceTokenizer.from_pretrained(minilm_dir).vocab_size)
    TransformerWithHeads(config).save_pretrained(tmp_path / "init")
    WordPieceTokenizer.from_pretrained(minilm_dir).save_pretrained(tmp_path / "init")
    (tmp_path / "sentences.txt").write_text("\n".join(p for pair in PARAPHRASES for p in pair) + "\n")
    train_embedder.main([f"--init={tmp_path / 'init'}", f"--objective={objective}", f"--data_dir={tmp_path / 'data'}",
                         f"--sentences={tmp_path / 'sentences.txt'}", "--batch_size=4", "--max_steps=4",
                         "--eval_every=2", f"--run_dir={tmp_path / 'run'}", f"--out_dir={tmp_path / 'run' / 'model'}",
                         "--learning_rate=1e-3", "--threads=1"])
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 4  # header, before training, steps 2 and 4
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)  # plain tensors only: runs no code
    assert checkpoint["step"] == 4
    vectors = SentenceEmbedder.from_pretrained(tmp_path / "run" / "model").encode(["a cat", "a dog"])
    assert vectors.shape == (2, 128)


def test_simcse_refuses_a_model_without_dropout(tmp_path, minilm_dir):
    """A model pretrained with --dropout=0 keeps 0 in its config; SimCSE on it would compare two
    identical views. One clear error before any work, and --dropout=0.1 lifts it."""
    write_sts_fixture(tmp_path / "data")
    tokenizer = WordPieceTokenizer.from_pretrained(minilm_dir)
    config = BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0)
    TransformerWithHeads(config).save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    (tmp_path / "sentences.txt").write_text("\n".join(p for pair in PARAPHRASES for p in pair) + "\n")
    common = [f"--init={tmp_path / 'init'}", "--objective=simcse", f"--data_dir={tmp_path / 'data'}",
              f"--sentences={tmp_path / 'sentences.txt'}", "--batch_size=4", "--max_steps=2", "--eval_every=2",
              "--threads=1"]
    with pytest.raises(ValueError, match="needs dropout.*--dropout=0.1"):
        train_embedder.main(common + [f"--run_dir={tmp_path / 'a'}", f"--out_dir={tmp_path / 'a' / 'model'}"])
    train_embedder.main(common + ["--dropout=0.1", f"--run_dir={tmp_path / 'b'}", f"--out_dir={tmp_path / 'b' / 'model'}"])
    assert (tmp_path / "b" / "model" / "config.json").is_file()
