"""Real checkpoints in and out, checked against the reference libraries.

The central test of the project: all-MiniLM-L6-v2 loaded into our hand-written encoder
gives the hidden states of `transformers.BertModel`, and random weights give the same MLM
loss and the same gradient for every parameter as `transformers.BertForMaskedLM`.
"""

import json
import shutil

import pytest
import torch

from minibert.checkpoint import hf_name_map, hf_state_dict, load_checkpoint_weights
from minibert.heads import MaskedLanguageModelingHead, SentenceClassificationHead, TokenClassificationHead
from minibert.safetensors import load_file, save_file
from minibert.transformer_with_heads import TransformerWithHeads

from conftest import odd_config, random_batch

SENTENCES = [
    "Cats love knocking things over.",
    "Dogs are friendly animals.",
    "A plane is taking off.",
    "An air plane is taking off.",
    "We prove that every permutation of a Cartesian product of two finite sets can be written "
    "as a composition of three permutations.",
    "The quick brown fox jumps over the lazy dog, doesn't it?",
    "Café naïve résumé — déjà vu!",
    "Transformers use self-attention ($\\alpha_{ij} = \\mathrm{softmax}(q_i k_j / \\sqrt{d})$).",
    "東京は日本の首都です。",
    "x",
]


def reference_config(config):
    from transformers import BertConfig as ReferenceConfig
    return ReferenceConfig(**{k: v for k, v in config.to_dict().items() if k != "fused_attention"})


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir):
    from transformers import BertModel, BertTokenizerFast
    ours = TransformerWithHeads.from_pretrained(minilm_dir).eval()
    reference = BertModel.from_pretrained(minilm_dir).eval()
    batch = BertTokenizerFast.from_pretrained(minilm_dir)(SENTENCES, padding=True, return_tensors="pt")
    return ours, reference, batch


@pytest.mark.parametrize("fused", [True, False])
def test_minilm_hidden_states_match_transformers(minilm_pair, fused):
    ours, reference, batch = minilm_pair
    for layer in ours.encoder.layers:
        layer.attention.fused = fused
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
        got = ours.get_encoder_output(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    assert (got[real] - expected[real]).abs().max() <= 1e-4
    for layer in ours.encoder.layers:
        layer.attention.fused = True


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm_dir):
    from sentence_transformers import SentenceTransformer
    from minibert.embedder import SentenceEmbedder
    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    expected = torch.tensor(reference.encode(SENTENCES, batch_size=4))
    got = torch.tensor(SentenceEmbedder.from_pretrained(minilm_dir).encode(SENTENCES, batch_size=3))
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert cosine.min() >= 0.99999


def test_short_batches_on_a_cpu_take_the_math_attention_and_give_the_same_vectors(minilm_dir, monkeypatch):
    import contextlib
    from minibert import embedder
    with embedder.attention_kernel(torch.device("cpu"), embedder.SHORT_ROWS):
        assert not torch.backends.cuda.flash_sdp_enabled()  # the fused kernel is off: the plain products run
    with embedder.attention_kernel(torch.device("cpu"), embedder.SHORT_ROWS + 1):
        assert torch.backends.cuda.flash_sdp_enabled()
    model = embedder.SentenceEmbedder.from_pretrained(minilm_dir)
    chosen = model.encode(SENTENCES, batch_size=3)  # the first batches are short, the last one long
    monkeypatch.setattr(embedder, "attention_kernel", lambda device, seq_len: contextlib.nullcontext())
    assert abs(chosen - model.encode(SENTENCES, batch_size=3)).max() <= 1e-6


@pytest.mark.parametrize("fused", [True, False])
def test_mlm_loss_and_every_gradient_match_transformers(fused):
    from transformers import BertForMaskedLM
    config = odd_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, fused_attention=fused)
    torch.manual_seed(0)
    reference = BertForMaskedLM(reference_config(config))
    # Initial weights of some tensors are zeros or ones; perturb every tensor so a swapped
    # name (query <-> key, two LayerNorms) cannot go unnoticed.
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = TransformerWithHeads(config)
    ours.add_head("mlm", MaskedLanguageModelingHead(config))
    load_checkpoint_weights(ours, reference.state_dict())

    input_ids, attention_mask, token_type_ids = random_batch(config)
    labels = torch.full_like(input_ids, -100)
    chosen = attention_mask.bool() & (torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(1)) < 0.4)
    labels[chosen] = input_ids[chosen]
    labels[0, 1] = input_ids[0, 1]

    expected_loss = reference(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids, labels=labels).loss
    expected_loss.backward()
    loss, _ = ours(input_ids, attention_mask, token_type_ids, head="mlm", labels=labels)
    loss.backward()
    assert torch.allclose(loss, expected_loss, rtol=1e-5)

    name_map = hf_name_map(config, "mlm")
    ours_params = dict(ours.named_parameters())
    reference_params = dict(reference.named_parameters())
    checked = 0
    for hf_name, our_name in name_map.items():
        reference_name = hf_name if hf_name.startswith("cls.") else "bert." + hf_name
        g_ref, g_ours = reference_params[reference_name].grad, ours_params[our_name].grad
        assert g_ref is not None and g_ours is not None, our_name
        # The key bias's true gradient is zero (adding q.b_k to every score of a row leaves the
        # softmax unchanged): both sides hold rounding noise there, hence the small absolute floor.
        error = (g_ours - g_ref).norm()
        assert error <= 1e-4 * g_ref.norm() + 1e-7, f"{our_name}: gradient error {error:.2e} vs norm {g_ref.norm():.2e}"
        checked += 1
    assert checked == len(list(ours.parameters()))  # every parameter, the tied one included


def test_tagging_fine_tune_on_minilm_matches_transformers(minilm_dir):
    """Three AdamW steps of token classification on the real all-MiniLM-L6-v2 weights give the
    losses and the weights of transformers.BertForTokenClassification: the SciERC anchor in
    the README comes from that class, so a gap to it is the training budget, not the model."""
    from transformers import BertForTokenClassification, BertTokenizerFast
    num_labels, no_dropout = 5, dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    reference = BertForTokenClassification.from_pretrained(minilm_dir, num_labels=num_labels, **no_dropout).train()
    ours = TransformerWithHeads.from_pretrained(minilm_dir, **no_dropout).train()
    ours.add_head("ner", TokenClassificationHead(ours.config, num_labels))
    with torch.no_grad():
        ours.heads["ner"].classifier.weight.copy_(reference.classifier.weight)
        ours.heads["ner"].classifier.bias.copy_(reference.classifier.bias)

    # first piece of every word labelled (a random tag), other pieces, [CLS], [SEP], padding -100
    batch = BertTokenizerFast.from_pretrained(minilm_dir)(SENTENCES[:8], padding=True, return_tensors="pt")
    tags = torch.randint(num_labels, batch["input_ids"].shape, generator=torch.Generator().manual_seed(2))
    labels = torch.full_like(batch["input_ids"], -100)
    for row in range(len(labels)):
        word_ids = batch.word_ids(row)
        for position, word in enumerate(word_ids):
            if word is not None and (position == 0 or word_ids[position - 1] != word):
                labels[row, position] = tags[row, position]

    initial = {name: p.detach().clone() for name, p in reference.named_parameters()}
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-4)
    ours_optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    for step in range(3):
        expected = reference(**batch, labels=labels).loss
        loss, _ = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], head="ner", labels=labels)
        assert torch.allclose(loss, expected, rtol=1e-5), f"step {step}: {loss.item()} vs {expected.item()}"
        for optimizer, value in ((reference_optimizer, expected), (ours_optimizer, loss)):
            optimizer.zero_grad()
            value.backward()
            optimizer.step()

    reference_params = dict(reference.named_parameters())
    ours_params = dict(ours.named_parameters())
    name_map = {"bert." + theirs: mine for theirs, mine in hf_name_map(ours.config).items()}
    name_map.update({f"classifier.{kind}": f"heads.ner.classifier.{kind}" for kind in ("weight", "bias")})
    assert len(name_map) == len(ours_params)
    # Compare the updates, not the weights: Adam moves an element by about lr whatever its
    # gradient's size, so where a gradient is rounding noise (the key bias's true gradient is
    # zero, see the MLM test above) both sides take lr-sized steps of noise.
    noise_only = 0
    for theirs, mine in name_map.items():
        if mine.endswith("attention.key.bias"):
            noise_only += 1
            continue
        update = reference_params[theirs] - initial[theirs]
        error = (ours_params[mine] - reference_params[theirs]).norm()
        assert error <= 5e-3 * update.norm(), f"{mine}: update differs by {error / update.norm():.1e} of its size"
    assert noise_only == ours.config.num_hidden_layers


def test_save_pretrained_loads_in_transformers(tmp_path):
    from transformers import BertForMaskedLM
    config = odd_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    ours = TransformerWithHeads(config)
    ours.add_head("mlm", MaskedLanguageModelingHead(config))
    ours.add_head("topic", SentenceClassificationHead(config, 3))
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours.save_pretrained(tmp_path)
    reference = BertForMaskedLM.from_pretrained(tmp_path).eval()
    ours.eval()
    input_ids, attention_mask, token_type_ids = random_batch(config)
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        got = ours(input_ids, attention_mask, token_type_ids, head="mlm")[1]
        assert (got - expected).abs().max() <= 1e-5
        # ... and minibert reads its own directory back, heads included.
        back = TransformerWithHeads.from_pretrained(tmp_path).eval()
        assert list(back.heads) == ["mlm", "topic"]
        for name in ("mlm", "topic"):
            assert torch.equal(back(input_ids, attention_mask, head=name)[1], ours(input_ids, attention_mask, head=name)[1])


def test_pytorch_model_bin_and_old_layernorm_names(tmp_path):
    """Older checkpoints: a pickled state dict (read with weights_only) and TF-era names."""
    from transformers import BertForMaskedLM
    config = odd_config()
    torch.manual_seed(0)
    reference = BertForMaskedLM(reference_config(config))
    old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
           for k, v in reference.state_dict().items()}
    torch.save(old, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(reference.config.to_dict()))
    ours = TransformerWithHeads.from_pretrained(tmp_path)
    assert "mlm" in ours.heads
    words = reference.bert.embeddings.word_embeddings.weight
    assert torch.equal(ours.encoder.embeddings.word_embeddings.weight, words)
    assert torch.equal(ours.encoder.layers[1].feed_forward_norm.weight,
                       reference.bert.encoder.layer[1].output.LayerNorm.weight)


def test_a_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))
    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    odd_config().to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match="plain tensors"):
        TransformerWithHeads.from_pretrained(tmp_path)


def test_a_refused_pickle_is_one_line_that_never_suggests_the_unsafe_path(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))
    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    odd_config().to_json(tmp_path / "config.json")
    message = refused(tmp_path)
    assert capsys.readouterr().out == ""  # the payload did not run
    assert str(tmp_path / "pytorch_model.bin") in message
    assert "could run code" in message and "safetensors" in message
    assert "weights_only" not in message and "False" not in message


def test_a_damaged_pytorch_model_bin_is_one_line(tmp_path):
    torch.save({"a": torch.zeros(100)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "pytorch_model.bin").write_bytes((tmp_path / "pytorch_model.bin").read_bytes()[:300])
    odd_config().to_json(tmp_path / "config.json")
    message = refused(tmp_path)
    assert str(tmp_path / "pytorch_model.bin") in message and "truncated or damaged" in message


@pytest.mark.parametrize("content, expected", [
    (torch.zeros(3), "holds a Tensor, not a state dict"),
    ([1, 2], "holds a list, not a state dict"),
    ({"state_dict": {"a": torch.zeros(1)}}, "its entry 'state_dict' is a dict, not a tensor"),
    ({0: torch.zeros(1)}, "its entry 0 has a name that is not a string"),
])
def test_a_pytorch_model_bin_that_is_not_a_state_dict_is_named(tmp_path, content, expected):
    torch.save(content, tmp_path / "pytorch_model.bin")
    odd_config().to_json(tmp_path / "config.json")
    message = refused(tmp_path)
    assert str(tmp_path / "pytorch_model.bin") in message and expected in message, message


@pytest.fixture
def saved_tiny(tmp_path):
    config = odd_config()
    model = TransformerWithHeads(config)
    model.add_head("tagging", TokenClassificationHead(config, 4))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_missing_files_are_named(tmp_path, saved_tiny):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformerWithHeads.from_pretrained(tmp_path / "nowhere")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(saved_tiny / "config.json", no_weights)
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        TransformerWithHeads.from_pretrained(no_weights)
    (saved_tiny / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        TransformerWithHeads.from_pretrained(saved_tiny)


def test_corrupt_safetensors_is_a_clear_error(saved_tiny):
    weights = saved_tiny / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        TransformerWithHeads.from_pretrained(saved_tiny)


def test_wrong_shapes_missing_and_unexpected_keys_are_all_named(saved_tiny):
    config = json.loads((saved_tiny / "config.json").read_text())
    config["intermediate_size"] = 40
    (saved_tiny / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        TransformerWithHeads.from_pretrained(saved_tiny)
    message = str(error.value)
    assert "wrong shape (6)" in message  # up.weight, up.bias, down.weight in 2 layers
    assert "encoder.layers.0.feed_forward.up.weight: checkpoint (37, 32) vs model (40, 32)" in message

    config["intermediate_size"] = 37
    (saved_tiny / "config.json").write_text(json.dumps(config))
    weights = load_file(saved_tiny / "model.safetensors")
    weights.pop("bert.encoder.layer.1.attention.self.key.bias")
    weights["bert.encoder.layer.7.attention.self.key.bias"] = torch.zeros(32)
    save_file(weights, saved_tiny / "model.safetensors")
    with pytest.raises(ValueError) as error:
        TransformerWithHeads.from_pretrained(saved_tiny)
    message = str(error.value)
    assert "missing (1): encoder.layers.1.attention.key.bias" in message
    assert "unexpected (1): bert.encoder.layer.7.attention.self.key.bias" in message


def test_the_pooler_a_checkpoint_brought_is_saved_back(tmp_path, minilm_dir):
    """minibert does not use BERT's [CLS] pooler but keeps a checkpoint's: loaded and saved,
    all-MiniLM-L6-v2 gives transformers its own pooler (it was dropped, and transformers drew a
    random one: pooler_output 0.4 off)."""
    from transformers import BertModel
    TransformerWithHeads.from_pretrained(minilm_dir).save_pretrained(tmp_path)
    ids = torch.tensor([[101, 7592, 1010, 2088, 102]])
    with torch.no_grad():
        expected = BertModel.from_pretrained(minilm_dir).eval()(ids).pooler_output
        got = BertModel.from_pretrained(tmp_path).eval()(ids).pooler_output
    assert (got - expected).abs().max() < 1e-5


def test_ignored_names_and_untied_decoder():
    config = odd_config()
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    weights = hf_state_dict(model)
    weights["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    weights["bert.embeddings.position_ids"] = torch.arange(16)[None]
    assert sorted(load_checkpoint_weights(model, weights)) == ["bert.embeddings.position_ids", "bert.pooler.dense.weight"]
    weights["cls.predictions.decoder.weight"] = torch.randn(99, 32)
    with pytest.raises(ValueError, match="differs from the word embeddings"):
        load_checkpoint_weights(model, weights)


def test_from_pretrained_config_overrides(saved_tiny):
    model = TransformerWithHeads.from_pretrained(saved_tiny, fused_attention=False, hidden_dropout_prob=0.0)
    assert model.encoder.layers[0].attention.fused is False
    with pytest.raises(ValueError, match="unknown config field"):
        TransformerWithHeads.from_pretrained(saved_tiny, hidden_sizes=3)


# ---- a bad model directory is refused with one line that names the file ----

def refused(directory, error=ValueError):
    with pytest.raises(error) as caught:
        TransformerWithHeads.from_pretrained(directory)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("entry, value, expected", [
    ("minibert_heads", [1], "minibert_heads must map each head's name to its description"),
    ("minibert_heads", "x", "minibert_heads must map each head's name to its description"),
    ("minibert_heads", {"tagging": "x"}, "minibert_heads must map each head's name to its description"),
    ("minibert_heads", {"tagging": {"type": "Nope"}}, "minibert_heads['tagging'] cannot be rebuilt: unknown head type"),
    ("minibert_heads", {"tagging": {"type": "TokenClassificationHead"}}, "minibert_heads['tagging'] cannot be rebuilt"),
    ("minibert_heads", {"my head": {"type": "TokenClassificationHead", "num_labels": 3}}, "must be a Python identifier"),
    ("minibert_mixture", {"num_experts": 2}, "minibert_mixture must be an object with"),
    ("minibert_mixture", "x", "minibert_mixture must be an object with"),
    ("minibert_mixture", {"num_experts": 2, "expert_layers": 5, "tasks": ["tagging"], "top_k": 0},
     "expert_layers must be between 1 and 2"),
])
def test_bad_minibert_entries_in_config_json_are_named(saved_tiny, entry, value, expected):
    edit_config(saved_tiny, **{entry: value})
    message = refused(saved_tiny)
    assert str(saved_tiny / "config.json") in message and expected in message, message


def test_a_file_given_as_the_model_directory_is_named(saved_tiny):
    message = refused(saved_tiny / "config.json", NotADirectoryError)
    assert f"{saved_tiny / 'config.json'} is a file, not a model directory" in message


def test_a_weights_file_that_is_a_directory_is_named(saved_tiny):
    (saved_tiny / "model.safetensors").unlink()
    (saved_tiny / "model.safetensors").mkdir()
    message = refused(saved_tiny, IsADirectoryError)
    assert f"{saved_tiny / 'model.safetensors'} is a directory, not a weights file" in message


@pytest.mark.parametrize("index", ["model.safetensors.index.json", "pytorch_model.bin.index.json"])
def test_a_sharded_checkpoint_is_named_as_such(saved_tiny, index):
    shard = "model-00001-of-00001.safetensors"
    (saved_tiny / "model.safetensors").rename(saved_tiny / shard)
    names = load_file(saved_tiny / shard).keys()
    (saved_tiny / index).write_text(json.dumps({"metadata": {}, "weight_map": {name: shard for name in names}}))
    message = refused(saved_tiny, FileNotFoundError)
    assert f"{saved_tiny} holds a sharded checkpoint ({index} and its shards)" in message
    assert "merge the shards into one model.safetensors" in message


def test_an_integer_tensor_where_a_float_weight_belongs_is_refused(saved_tiny):
    weights = load_file(saved_tiny / "model.safetensors")
    weights["bert.encoder.layer.0.output.dense.bias"] = torch.arange(32)
    save_file(weights, saved_tiny / "model.safetensors")
    message = refused(saved_tiny)
    assert str(saved_tiny / "model.safetensors") in message
    assert "bert.encoder.layer.0.output.dense.bias is torch.int64 where the model holds torch.float32" in message


def test_half_precision_weights_are_upcast(saved_tiny):
    weights = load_file(saved_tiny / "model.safetensors")
    save_file({name: tensor.half() for name, tensor in weights.items()}, saved_tiny / "model.safetensors")
    model = TransformerWithHeads.from_pretrained(saved_tiny)
    assert model.encoder.embeddings.word_embeddings.weight.dtype == torch.float32
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight,
                       weights["bert.embeddings.word_embeddings.weight"].half().float())


def test_a_size_missing_from_config_json_leads_the_shape_error(saved_tiny):
    config = json.loads((saved_tiny / "config.json").read_text())
    del config["hidden_size"], config["num_attention_heads"]  # the defaults, 768 and 12, apply
    (saved_tiny / "config.json").write_text(json.dumps(config))
    message = refused(saved_tiny)
    assert message.startswith(f"{saved_tiny / 'model.safetensors'} does not fit")
    assert "the config says hidden_size 768, the weights have 32" in message
    shown = message[message.index("wrong shape"):]
    assert shown.count(" vs model ") == 3 and "and " in shown and "more" in shown
    assert len(message) < 800


def test_a_layer_count_that_differs_is_named(saved_tiny):
    config = json.loads((saved_tiny / "config.json").read_text())
    config["num_hidden_layers"] = 4
    (saved_tiny / "config.json").write_text(json.dumps(config))
    assert "the config says num_hidden_layers 4, the weights have 2" in refused(saved_tiny)


@pytest.mark.parametrize("task_model", ["BertForSequenceClassification", "BertForTokenClassification"])
def test_a_transformers_task_checkpoint_loads_its_encoder_with_a_note(tmp_path, capsys, task_model):
    import transformers
    config = odd_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    settings = reference_config(config)
    settings.num_labels = 3
    reference = getattr(transformers, task_model)(settings).eval()
    reference.save_pretrained(tmp_path)
    capsys.readouterr()  # transformers' own progress bar
    ours = TransformerWithHeads.from_pretrained(tmp_path).eval()
    assert list(ours.heads) == []
    input_ids, attention_mask, token_type_ids = random_batch(config)
    with torch.no_grad():
        expected = reference.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        got = ours.get_encoder_output(input_ids, attention_mask, token_type_ids)
    real = attention_mask.bool()
    assert (got[real] - expected[real]).abs().max() <= 1e-5
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and str(tmp_path / "model.safetensors") in note
    assert f"classifier.bias, classifier.weight (the task head of {task_model})" in note  # after the pooler, if any
