"""The Python API used the way a careful user of transformers / sentence-transformers uses
it, including the mistakes: each one must be a one-line error that says what was expected,
what was got and what to do, never a wrong result or an error from deep inside torch."""

import pytest
import torch

from conftest import odd_config, random_batch
from minibert.config import BertConfig
from minibert.heads import (MaskedLanguageModelingHead, SentenceClassificationHead, SentenceEmbeddingHead,
                            TokenClassificationHead)
from minibert.transformer_with_heads import TransformerWithHeads


# ---- add_head: a head must fit the model it is added to


@pytest.mark.parametrize("make_head, expected", [
    (lambda: SentenceClassificationHead(odd_config(hidden_size=64, num_attention_heads=4), 3),
     r"head 'y' .*hidden_size 64.* the model's hidden_size is 32"),
    (lambda: TokenClassificationHead(odd_config(hidden_size=48), 3),
     r"head 'y' .*hidden_size 48.* the model's hidden_size is 32"),
    (lambda: MaskedLanguageModelingHead(odd_config(vocab_size=120)),
     r"head 'y' .*vocab_size 120.* the model's vocab_size is 99"),
], ids=["sentence classifier", "token classifier", "mlm"])
def test_add_head_refuses_a_head_built_for_another_size(make_head, expected):
    model = TransformerWithHeads(odd_config())
    with pytest.raises(ValueError, match=expected):
        model.add_head("y", make_head())
    assert "y" not in model.heads


def test_a_head_of_the_right_size_and_one_without_weights_are_accepted():
    model = TransformerWithHeads(odd_config())
    model.add_head("embedding", SentenceEmbeddingHead(odd_config(hidden_size=64)))  # no weights: fits any size
    model.add_head("cls", SentenceClassificationHead(odd_config(hidden_dropout_prob=0.3), 3))
    assert list(model.heads) == ["embedding", "cls"]


@pytest.mark.parametrize("head, expected", [
    (3, r"head 'y' must be an nn\.Module, got int; .*SentenceClassificationHead\(model\.config, num_labels\)"),
    (SentenceClassificationHead, r"head 'y' must be an nn\.Module, got the class SentenceClassificationHead; "
                                 r".*SentenceClassificationHead\(model\.config, \.\.\.\)"),
], ids=["an int", "a class"])
def test_add_head_refuses_what_is_not_a_head(head, expected):
    model = TransformerWithHeads(odd_config())
    with pytest.raises(TypeError, match=expected):
        model.add_head("y", head)


def test_add_head_refuses_a_name_that_is_not_a_string():
    model = TransformerWithHeads(odd_config())
    with pytest.raises(TypeError, match=r"head name must be a string .*got int 0"):
        model.add_head(0, TokenClassificationHead(model.config, 2))
