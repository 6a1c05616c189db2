"""Heads and TransformerWithHeads: shapes, losses, tying, pooling, gradients."""

import pytest
import torch
import torch.nn.functional as F

from minibert.heads import (MaskedLanguageModelingHead, SentenceClassificationHead, SentenceEmbeddingHead,
                            TokenClassificationHead, build_head, mean_pool)
from minibert.transformer_with_heads import TransformerWithHeads

from conftest import BATCH, SEQ, odd_config, random_batch


def model_with_all_heads(**overrides):
    config = odd_config(**overrides)
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    model.add_head("embedding", SentenceEmbeddingHead(config, normalize=True))
    model.add_head("classification", SentenceClassificationHead(config, 5))
    model.add_head("classification_cls", SentenceClassificationHead(config, 3, pooling="cls"))
    model.add_head("tagging", TokenClassificationHead(config, 6))
    return model


def test_every_head_output_shape():
    model = model_with_all_heads()
    input_ids, attention_mask, token_type_ids = random_batch(model.config)
    outputs = model(input_ids, attention_mask, token_type_ids)
    assert outputs["mlm"].shape == (BATCH, SEQ, 99)
    assert outputs["embedding"].shape == (BATCH, 32)
    assert torch.allclose(outputs["embedding"].norm(dim=-1), torch.ones(BATCH))
    assert outputs["classification"].shape == (BATCH, 5)
    assert outputs["classification_cls"].shape == (BATCH, 3)
    assert outputs["tagging"].shape == (BATCH, SEQ, 6)
    loss, logits = model(input_ids, attention_mask, head="classification")
    assert loss is None and logits.shape == (BATCH, 5)


def test_mlm_sparse_prediction_equals_full_logits_loss():
    model = model_with_all_heads(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).eval()
    input_ids, attention_mask, token_type_ids = random_batch(model.config)
    labels = torch.full_like(input_ids, -100)
    labels[attention_mask.bool() & (torch.rand(input_ids.shape) < 0.3)] = 7
    labels[0, 0] = 3
    loss, masked_logits = model(input_ids, attention_mask, token_type_ids, head="mlm", labels=labels)
    _, full_logits = model(input_ids, attention_mask, token_type_ids, head="mlm")
    num_masked = int((labels != -100).sum())
    assert masked_logits.shape == (num_masked, 99)
    assert torch.allclose(masked_logits, full_logits[labels != -100], atol=1e-6)
    full_loss = F.cross_entropy(full_logits.reshape(-1, 99), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, full_loss, atol=1e-6)


def test_mlm_decoder_is_tied_to_word_embeddings():
    model = model_with_all_heads()
    embedding = model.encoder.embeddings.word_embeddings.weight
    assert model.heads["mlm"].decoder.weight is embedding
    # One parameter, counted once, and it receives the decoder's gradient.
    assert sum(p is embedding for p in model.parameters()) == 1
    input_ids, attention_mask, _ = random_batch(model.config)
    labels = torch.full_like(input_ids, -100)
    labels[:, 1] = 5
    loss, _ = model(input_ids, attention_mask, head="mlm", labels=labels)
    loss.backward()
    assert embedding.grad[5].abs().sum() > 0


def test_mean_pool_is_padding_invariant():
    """A sentence's vector is the same alone and padded in a batch with a longer one."""
    config = odd_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = TransformerWithHeads(config).eval()
    model.add_head("embedding", SentenceEmbeddingHead(config))
    short, long = torch.tensor([[2, 17, 41, 3]]), torch.tensor([[2, 8, 9, 10, 11, 12, 13, 3]])
    alone = model(short, torch.ones_like(short))["embedding"]
    batch = torch.zeros(2, 8, dtype=torch.long)
    batch[0, :4], batch[1] = short[0], long[0]
    mask = (batch != 0).long()
    mask[1] = 1
    together = model(batch, mask)["embedding"]
    assert torch.allclose(alone[0], together[0], atol=1e-6)


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.equal(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_token_classification_ignores_minus_100():
    config = odd_config(hidden_dropout_prob=0.0)
    head = TokenClassificationHead(config, 4)
    hidden = torch.randn(2, 3, 32)
    labels = torch.tensor([[1, -100, 2], [-100, -100, 3]])
    loss, logits = head(hidden, labels=labels)
    keep = labels != -100
    assert torch.allclose(loss, F.cross_entropy(logits[keep], labels[keep]))


def test_classification_pooling_choices():
    config = odd_config(hidden_dropout_prob=0.0)
    hidden = torch.randn(2, 3, 32)
    cls_head = SentenceClassificationHead(config, 3, pooling="cls")
    _, logits = cls_head(hidden)
    assert torch.allclose(logits, cls_head.classifier(hidden[:, 0]))
    labels = torch.tensor([0, 2])
    loss, _ = cls_head(hidden, labels=labels)
    assert torch.allclose(loss, F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="pooling"):
        SentenceClassificationHead(config, 3, pooling="max")


@pytest.mark.parametrize("head_factory", [
    lambda c: MaskedLanguageModelingHead(c),
    lambda c: SentenceEmbeddingHead(c, normalize=True),
    lambda c: SentenceClassificationHead(c, 3),
    lambda c: SentenceClassificationHead(c, 3, pooling="cls"),
    lambda c: TokenClassificationHead(c, 4),
])
def test_gradcheck_heads(head_factory):
    config = odd_config(hidden_dropout_prob=0.0, vocab_size=11)
    head = head_factory(config).double().eval()
    hidden = torch.randn(2, 4, 32, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert torch.autograd.gradcheck(lambda h: head(h, attention_mask=mask)[1], (hidden,))


def test_gradcheck_losses():
    config = odd_config(hidden_dropout_prob=0.0, vocab_size=11)
    hidden = torch.randn(2, 4, 32, dtype=torch.float64, requires_grad=True)
    mlm = MaskedLanguageModelingHead(config).double()
    mlm_labels = torch.tensor([[-100, 3, -100, 7], [1, -100, -100, -100]])
    assert torch.autograd.gradcheck(lambda h: mlm(h, labels=mlm_labels)[0], (hidden,))
    tagger = TokenClassificationHead(config, 4).double()
    tag_labels = torch.tensor([[0, -100, 2, 3], [1, 1, -100, -100]])
    assert torch.autograd.gradcheck(lambda h: tagger(h, labels=tag_labels)[0], (hidden,))


def test_add_head_and_call_errors():
    model = model_with_all_heads()
    input_ids, _, _ = random_batch(model.config)
    with pytest.raises(ValueError, match="already exists"):
        model.add_head("mlm", MaskedLanguageModelingHead(model.config))
    with pytest.raises(ValueError, match="identifier"):
        model.add_head("my head", TokenClassificationHead(model.config, 2))
    with pytest.raises(ValueError, match="no head named"):
        model(input_ids, head="nope")
    with pytest.raises(ValueError, match="labels and head options need a head"):
        model(input_ids, labels=input_ids)
    with pytest.raises(ValueError, match="no loss"):
        model(input_ids, head="embedding", labels=input_ids)
    with pytest.raises(ValueError, match="unknown head type"):
        build_head(model.config, {"type": "Nope"})


def test_heads_rebuild_from_their_description():
    model = model_with_all_heads()
    for head in model.heads.values():
        rebuilt = build_head(model.config, head.describe())
        assert type(rebuilt) is type(head) and rebuilt.describe() == head.describe()


def mlm_batch(config, seed=0):
    """A padded batch whose rows have 0 to 3 labels (row 1 none: every slot of it stays empty)."""
    g = torch.Generator().manual_seed(seed)
    input_ids, attention_mask, token_type_ids = random_batch(config)
    labels = torch.full_like(input_ids, -100)
    for row, count in enumerate([3, 0, 2, 1][:len(labels)]):
        real = attention_mask[row].nonzero().squeeze(1)
        picked = real[torch.randperm(len(real), generator=g)[:count]]
        labels[row, picked] = torch.randint(0, config.vocab_size, (len(picked),), generator=g)
    return input_ids, attention_mask, token_type_ids, labels


@pytest.mark.parametrize("max_predictions", [3, 5])
def test_mlm_prediction_slots_give_the_loss_and_gradients_of_boolean_indexing(max_predictions):
    model = model_with_all_heads(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).double()
    input_ids, attention_mask, token_type_ids, labels = mlm_batch(model.config)
    results = {}
    for slots in (None, max_predictions):
        model.zero_grad()
        loss, logits = model(input_ids, attention_mask, token_type_ids, head="mlm", labels=labels,
                             max_predictions=slots)
        loss.backward()
        results[slots] = (loss, logits, model.heads["mlm"].prediction_targets(labels, slots),
                          [p.grad.clone() for p in model.parameters() if p.grad is not None])
    (loss, logits, targets, grads), (slot_loss, slot_logits, slot_targets, slot_grads) = results.values()
    assert slot_logits.shape == (BATCH, max_predictions, 99) and slot_targets.shape == (BATCH, max_predictions)
    torch.testing.assert_close(slot_loss, loss)
    filled = slot_targets != -100  # the filled slots are the masked positions, in the same order
    assert torch.equal(slot_targets[filled], targets)
    torch.testing.assert_close(slot_logits[filled], logits)
    assert len(slot_grads) == len(grads)
    for slot_grad, grad in zip(slot_grads, grads):
        torch.testing.assert_close(slot_grad, grad)


def test_mlm_prediction_slots_refuse_a_row_with_more_labels_than_slots():
    model = model_with_all_heads()
    input_ids, attention_mask, token_type_ids, labels = mlm_batch(model.config)  # row 0 has 3 labels
    with pytest.raises(RuntimeError, match="more masked positions than max_predictions"):
        model(input_ids, attention_mask, token_type_ids, head="mlm", labels=labels, max_predictions=2)
    with pytest.raises(ValueError, match="max_predictions"):
        model(input_ids, attention_mask, token_type_ids, head="mlm", labels=labels, max_predictions=0)
    with pytest.raises(ValueError, match="need a head"):
        model(input_ids, max_predictions=3)


def test_an_mlm_training_step_with_prediction_slots_compiles_to_one_graph():
    # One graph, no read-back: what lets a GPU replay the whole step (CUDA graphs). Boolean
    # indexing breaks it three times, around its nonzero() (the host must learn M).
    model = model_with_all_heads()
    input_ids, attention_mask, token_type_ids, labels = mlm_batch(model.config)
    explanation = torch._dynamo.explain(model)(input_ids, attention_mask, token_type_ids, head="mlm", labels=labels,
                                               max_predictions=3)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
