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


# ---- labels: checked before the loss, in the encoder's one read-back


def model_with_heads():
    model = TransformerWithHeads(odd_config())
    model.add_head("cls", SentenceClassificationHead(model.config, 3))
    model.add_head("tagger", TokenClassificationHead(model.config, 3))
    model.add_head("mlm", MaskedLanguageModelingHead(model.config))
    return model


SHAPE = (2, 5)  # (B, T) of the inputs below
EXPECTED = {"cls": r"labels of shape \(2,\)", "tagger": r"labels of shape \(2, 5\)", "mlm": r"labels of shape \(2, 5\)"}
LABEL_CASES = [
    ("cls", torch.tensor([0, 7]), r"in \[0, 3\) or -100 \(ignored\); got 7"),
    ("cls", torch.tensor([-1, 2]), r"in \[0, 3\) or -100 \(ignored\); got -1"),
    ("cls", torch.tensor([0, 1, 2]), r"got shape \(3,\)"),
    ("cls", torch.tensor([[0], [1]]), r"got shape \(2, 1\)"),
    ("cls", torch.tensor([0.0, 1.0]), r"class indices \(torch\.long\).*got torch\.float32; .*labels\.long\(\)"),
    ("cls", [0, 1], r"got a list; make it a tensor: torch\.tensor\(labels\)"),
    ("tagger", torch.full(SHAPE, 3), r"in \[0, 3\) or -100 \(ignored\); got 3"),
    ("tagger", torch.zeros(2, 4, dtype=torch.long), r"got shape \(2, 4\)"),
    ("tagger", torch.zeros(10, dtype=torch.long), r"got shape \(10,\)"),
    ("mlm", torch.full(SHAPE, 99), r"in \[0, 99\) or -100 \(ignored\); got 99"),
    ("mlm", torch.zeros(2, 4, dtype=torch.long), r"got shape \(2, 4\)"),
    ("mlm", torch.zeros(SHAPE, dtype=torch.int32), r"got torch\.int32"),
]


WITHOUT_SLOTS = len(LABEL_CASES)
LABEL_CASES += [(head, labels, expected) for head, labels, expected in LABEL_CASES if head == "mlm"]  # with slots


@pytest.mark.parametrize("case", range(len(LABEL_CASES)), ids=[
    f"{head}-{i}" + ("-slots" if i >= WITHOUT_SLOTS else "") for i, (head, _, _) in enumerate(LABEL_CASES)])
def test_wrong_labels_are_one_clear_error_naming_the_head(case):
    head, labels, expected = LABEL_CASES[case]
    options = {"max_predictions": 5} if case >= WITHOUT_SLOTS else {}  # the MLM head's prediction slots
    model = model_with_heads()
    input_ids = torch.randint(5, 99, SHAPE)
    with pytest.raises(ValueError, match=f"head '{head}' .*{EXPECTED[head]}.*{expected}"):
        model(input_ids, head=head, labels=labels, **options)


def test_labels_on_another_device_than_the_inputs_are_named():
    model = model_with_heads()
    labels = torch.zeros(2, dtype=torch.long, device="meta")
    expected = r"head 'cls' .*the labels are on meta, the inputs on cpu; move them: labels\.to\('cpu'\)"
    with pytest.raises(ValueError, match=expected):
        model(torch.randint(5, 99, SHAPE), head="cls", labels=labels)


def test_a_head_called_on_its_own_checks_its_labels_shape_and_type():
    model = model_with_heads()
    hidden_states = torch.randn(2, 5, 32)
    with pytest.raises(ValueError, match=r"SentenceClassificationHead .*labels of shape \(2,\).*got shape \(2, 5\)"):
        model.heads["cls"](hidden_states, labels=torch.zeros(SHAPE, dtype=torch.long))
    with pytest.raises(ValueError, match=r"TokenClassificationHead .*got torch\.float32"):
        model.heads["tagger"](hidden_states, labels=torch.zeros(SHAPE))


def test_minus_100_is_ignored_by_every_head_as_in_transformers():
    """transformers' heads use CrossEntropyLoss's ignore_index=-100, the sentence classifier's too."""
    model = model_with_heads().eval()
    input_ids = torch.randint(5, 99, SHAPE)
    loss, logits = model(input_ids, head="cls", labels=torch.tensor([-100, 2]))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[1:], torch.tensor([2])))
    tags = torch.tensor([[-100, 0, 1, 2, -100], [2, 2, -100, -100, -100]])
    loss, logits = model(input_ids, head="tagger", labels=tags)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[tags != -100], tags[tags != -100]))


class ReadBacks(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the times a tensor's value is read back to Python (on a GPU, the host waits for
    the device each time): .item(), bool(tensor), if tensor.any()."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("head, options", [("cls", {}), ("tagger", {}), ("mlm", {"max_predictions": 3})])
def test_checking_the_labels_adds_no_read_back(head, options):
    model = model_with_heads()
    input_ids, attention_mask, token_type_ids = random_batch(model.config, batch=2, seq=5)
    labels = torch.tensor([1, 2]) if head == "cls" else torch.tensor([[-100, 1, 2, -100, -100], [0] + [-100] * 4])
    with ReadBacks() as without_labels:
        model(input_ids, attention_mask, token_type_ids)
    with ReadBacks() as with_labels:
        model(input_ids, attention_mask, token_type_ids, head=head, labels=labels, **options)
    assert without_labels.count == with_labels.count == 1


# ---- the encoder's inputs: attention_mask and token_type_ids


@pytest.mark.parametrize("inputs, expected", [
    (dict(attention_mask=[[1] * 5] * 2), r"attention_mask must be a tensor of shape \(2, 5\), got a list; .*tensor"),
    (dict(token_type_ids=[[0] * 5] * 2), r"token_type_ids must be a tensor of shape \(2, 5\), got a list; .*tensor"),
    (dict(token_type_ids=torch.zeros(2, 5)), r"token_type_ids must be integers \(0 or 1\), got torch\.float32; "
                                             r".*token_type_ids\.long\(\)"),
    (dict(attention_mask=torch.ones(2, 5, device="meta")), r"attention_mask is on meta but input_ids on cpu"),
    (dict(attention_mask=torch.tensor([[1, 1, 2, 0, 0]] * 2)), r"attention_mask must hold 1 \(a token\) and 0 "
                                                              r"\(padding\) only, got 2"),
    (dict(attention_mask=torch.tensor([[1, 1, 0.5, 0, 0]] * 2)), r"attention_mask must hold 1 \(a token\) and 0 "
                                                                r"\(padding\) only, got 0\.5"),
], ids=["mask list", "types list", "types float", "mask device", "mask 2", "mask 0.5"])
def test_wrong_masks_and_token_types_are_named(inputs, expected):
    model = TransformerWithHeads(odd_config())
    with pytest.raises(ValueError, match=expected):
        model(torch.randint(5, 99, SHAPE), **inputs)


def test_input_ids_without_tokens_are_refused():
    # Before: a (B, 0) batch gave NaN sentence vectors (the mean of nothing); transformers raises from a reshape.
    model = TransformerWithHeads(odd_config())
    model.add_head("embedding", SentenceEmbeddingHead())
    with pytest.raises(ValueError, match=r"input_ids has no tokens \(shape \(2, 0\)\); .*\[CLS\] and \[SEP\]"):
        model(torch.zeros(2, 0, dtype=torch.long))


def reference_model(model):
    """transformers' BertModel (eager attention) with our model's weights."""
    from transformers import BertConfig as ReferenceConfig
    from transformers import BertModel as ReferenceModel
    from minibert.checkpoint import hf_state_dict
    config = ReferenceConfig(**{k: v for k, v in model.config.to_dict().items() if k != "fused_attention"})
    config._attn_implementation = "eager"
    reference = ReferenceModel(config, add_pooling_layer=False).eval()
    reference.load_state_dict({k.removeprefix("bert."): v for k, v in hf_state_dict(model).items()}, strict=False)
    return reference


@pytest.mark.parametrize("fused", [True, False])
def test_masks_of_bool_int_or_float_and_an_all_padding_row_match_transformers(fused):
    """A row with no token at all is attended uniformly (the reference's finite mask value, no
    NaN), and mean pooling gives it the zero vector, as sentence-transformers' Pooling does."""
    model = TransformerWithHeads(odd_config(fused_attention=fused)).eval()
    model.add_head("embedding", SentenceEmbeddingHead())
    reference = reference_model(model)
    input_ids = torch.randint(5, 99, (3, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0] * 6, [1] * 6])
    for attention_mask in (mask, mask.bool(), mask.float(), mask.int()):
        with torch.no_grad():
            expected = reference(input_ids, attention_mask=attention_mask).last_hidden_state
            got = model.get_encoder_output(input_ids, attention_mask)
            pooled = model(input_ids, attention_mask, head="embedding")[1]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(pooled[1], torch.zeros(32))


# ---- SentenceEmbedder: what sentence-transformers accepts, with the same result


@pytest.fixture(scope="module")
def embedders(minilm_dir):
    from sentence_transformers import SentenceTransformer
    from minibert.embedder import SentenceEmbedder
    return SentenceEmbedder.from_pretrained(minilm_dir), SentenceTransformer(str(minilm_dir), device="cpu")


def test_encode_of_one_string_is_one_vector_as_in_sentence_transformers(embedders):
    ours, reference = embedders
    vector = ours.encode("A plane is taking off.")
    assert vector.shape == (384,)
    assert abs(vector @ reference.encode("A plane is taking off.") - 1) < 1e-5
    assert (vector == ours.encode(["A plane is taking off."])[0]).all()


def test_similarity_of_two_strings_is_a_1_by_1_matrix_as_in_sentence_transformers(embedders):
    ours, reference = embedders
    got = ours.similarity("A plane is taking off.", "An air plane is taking off.")
    expected = reference.similarity(reference.encode("A plane is taking off."),
                                    reference.encode("An air plane is taking off."))
    assert got.shape == (1, 1)
    assert abs(got[0, 0] - expected[0, 0].item()) < 1e-5
    assert ours.similarity("A plane is taking off.", ["a", "b"]).shape == (1, 2)


def test_empty_lists_give_empty_results(embedders):
    ours, _ = embedders
    assert ours.encode([]).shape == (0, 384)
    assert ours.similarity([], []).shape == (0, 0)
    assert ours.similarity(["a"], []).shape == (1, 0)


@pytest.mark.parametrize("sentences, expected", [
    (None, r"encode takes a sentence or a list of sentences \(strings\), got None"),
    (7, r"encode takes a sentence or a list of sentences \(strings\), got 7"),
    (["a", None], r"texts\[1\] is None; each text must be a string"),  # the tokenizer's check
    ([b"bytes"], r"texts\[0\] is b'bytes'; each text must be a string"),
], ids=["None", "an int", "a None item", "a bytes item"])
def test_encode_names_what_is_not_a_sentence(embedders, sentences, expected):
    ours, _ = embedders
    with pytest.raises(TypeError, match=expected):
        ours.encode(sentences)


# ---- the tokenizer's call and decode, against transformers' BertTokenizerFast


@pytest.fixture(scope="module")
def tokenizers(minilm_dir):
    from transformers import BertTokenizerFast
    from minibert.tokenizer import WordPieceTokenizer
    return WordPieceTokenizer.from_pretrained(minilm_dir), BertTokenizerFast.from_pretrained(minilm_dir)


@pytest.mark.filterwarnings("ignore:`max_length` is ignored")  # transformers, when it does not truncate
@pytest.mark.parametrize("truncation", ["do_not_truncate", "longest_first", False, True, None])
def test_truncation_strategies_by_name_do_what_they_do_in_transformers(tokenizers, truncation):
    # Before: any non-empty string was true, so "do_not_truncate" truncated.
    ours, fast = tokenizers
    texts, pairs = ["hello big wide world", "a"], ["one two three", "b"]
    got = ours(texts, pairs, truncation=truncation, max_length=6, return_tensors=None)
    expected = fast(texts, pairs, truncation=truncation, max_length=6, padding=True)
    assert got["input_ids"] == expected["input_ids"]


@pytest.mark.parametrize("truncation", ["only_first", "only_second", "longest"])
def test_a_truncation_strategy_we_do_not_have_is_refused(tokenizers, truncation):
    ours, _ = tokenizers
    with pytest.raises(ValueError, match=f"truncation='{truncation}' is not supported: use True "
                                         r"\('longest_first'\) or False \('do_not_truncate'\)"):
        ours(["hello world"], ["a b"], truncation=truncation, max_length=5)


@pytest.mark.parametrize("max_length", [3.0, "3", True, -1])
def test_max_length_that_is_not_a_length_is_named(tokenizers, max_length):
    ours, _ = tokenizers
    with pytest.raises(ValueError, match=rf"max_length must be a positive integer or None, got {max_length!r}"):
        ours(["hello world"], max_length=max_length)


@pytest.mark.parametrize("pair, max_length, special", [(None, 1, 2), (["a b"], 2, 3)])
def test_max_length_below_the_special_tokens_is_refused(tokenizers, pair, max_length, special):
    # transformers warns and returns the text untruncated, longer than max_length; we refuse.
    ours, _ = tokenizers
    with pytest.raises(ValueError, match=rf"max_length={max_length} leaves no room for the {special} special tokens; "
                                         rf"use max_length >= {special} or truncation=False"):
        ours(["hello world"], pair, max_length=max_length)


def test_return_tensors_np_gives_the_arrays_transformers_gives(tokenizers):
    import numpy as np
    ours, fast = tokenizers
    got = ours(["hello world", "a"], return_tensors="np")
    expected = fast(["hello world", "a"], padding=True, truncation=True, return_tensors="np")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert got[key].dtype == np.int64 and (got[key] == expected[key]).all()
    with pytest.raises(ValueError, match=r"return_tensors='tf': use 'pt', 'np' or None"):
        ours(["a"], return_tensors="tf")


@pytest.mark.parametrize("texts, pairs, expected", [
    (None, None, r"texts must be a string or a list of strings, got None"),
    (["hello"], "world", r"text_pairs is one string but texts a list of 1; .*a list of 1 second texts"),
], ids=["None", "a list and one pair"])
def test_texts_of_the_wrong_kind_are_named(tokenizers, texts, pairs, expected):
    # transformers: "You need to specify either `text` or `text_target`." and a TypeError on the pair.
    ours, _ = tokenizers
    with pytest.raises(TypeError, match=expected):
        ours(texts, pairs)


@pytest.mark.parametrize("ids", [7592, torch.tensor(7592)], ids=["an int", "a 0-d tensor"])
def test_decode_of_one_id_is_its_token_as_in_transformers(tokenizers, ids):
    ours, fast = tokenizers
    assert ours.decode(ids) == fast.decode(ids) == "hello"


@pytest.mark.parametrize("ids, expected", [
    (torch.tensor([[101, 7592, 102]]), r"ids must be one sequence of token ids, got a batch of 1 sequences; "
                                       r"decode each row: \[tokenizer\.decode\(row\) for row in ids\]"),
    ([[101, 7592]], r"ids must be one sequence of token ids, got a batch of 1 sequences"),
    (None, r"ids must be a list or 1-D tensor of token ids, got None"),
    ([101, 30522], r"id 30522 is not in the vocabulary \(0\.\.30521\)"),  # transformers: '' without a word
], ids=["2-D tensor", "nested list", "None", "id too large"])
def test_decode_of_what_is_not_a_sequence_of_ids_is_named(tokenizers, ids, expected):
    ours, _ = tokenizers
    with pytest.raises((ValueError, TypeError), match=expected):
        ours.decode(ids)


def test_texts_from_a_generator_are_all_encoded(tokenizers):
    # Before: the type checks used the generator up, and the batch came back empty.
    ours, _ = tokenizers
    got = ours((text for text in ["hello world", "a"]), return_tensors=None)
    assert got["input_ids"] == ours(["hello world", "a"], return_tensors=None)["input_ids"] == [[101, 7592, 2088, 102],
                                                                                              [101, 1037, 102, 0]]
