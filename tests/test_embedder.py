"""What a model folder may say about its sentence vectors, and what SentenceEmbedder does
with it: a sentence-transformers folder is followed where it asks for what we compute (mean
pooling, with or without unit length) and refused where it asks for anything else; it was
read for max_seq_length only, so a CLS-pooled model gave mean-pooled vectors, silently."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import odd_config
from minibert import embedder
from minibert.embedder import SentenceEmbedder
from minibert.tokenizer import WordPieceTokenizer
from minibert.transformer_with_heads import TransformerWithHeads

SENTENCES = ["A plane is taking off.", "A man is playing a flute.", "", "Three dogs run on the beach."]


@pytest.fixture
def folder(tmp_path, minilm_dir):
    """all-MiniLM-L6-v2's folder, its weights linked, its small files ours to change."""
    copy = tmp_path / "minilm"
    shutil.copytree(minilm_dir, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    (copy / "model.safetensors").symlink_to(Path(minilm_dir) / "model.safetensors")
    return copy


def edit_json(path, change):
    settings = json.loads(path.read_text())
    change(settings)
    path.write_text(json.dumps(settings))


def test_a_pooling_other_than_the_mean_is_refused(folder):
    edit_json(folder / "1_Pooling" / "config.json",
              lambda c: c.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True))
    with pytest.raises(ValueError, match=r"1_Pooling/config.json: pooling cls_token; SentenceEmbedder pools by the mean"):
        SentenceEmbedder.from_pretrained(folder)


def test_a_module_it_does_not_run_is_refused(folder):
    edit_json(folder / "modules.json", lambda m: m.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                                                             "type": "sentence_transformers.models.Dense"}))
    with pytest.raises(ValueError, match=r"modules.json: the modules are Transformer -> Pooling -> Dense -> Normalize"):
        SentenceEmbedder.from_pretrained(folder)


def test_without_a_normalize_module_the_vectors_are_those_sentence_transformers_gives(folder):
    from sentence_transformers import SentenceTransformer
    edit_json(folder / "modules.json", lambda modules: modules.pop())  # Transformer -> Pooling
    reference = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    ours = torch.tensor(SentenceEmbedder.from_pretrained(folder).encode(SENTENCES))
    assert not torch.allclose(reference.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-3)  # not unit length
    assert torch.allclose(ours, reference, atol=2e-5)


@pytest.mark.parametrize("length", ["128", 128.0, 0, 1, 1024, True])
def test_a_max_seq_length_that_is_not_a_length_the_model_has_names_the_file(folder, length):
    edit_json(folder / "sentence_bert_config.json", lambda c: c.update(max_seq_length=length))
    with pytest.raises(ValueError, match=r"sentence_bert_config.json: max_seq_length must be an integer from 2"):
        SentenceEmbedder.from_pretrained(folder)


def test_broken_json_names_the_file(folder):
    (folder / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match=r"modules.json: not valid JSON"):
        SentenceEmbedder.from_pretrained(folder)


def test_a_vocabulary_larger_than_the_model_is_refused():
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(10)])
    with pytest.raises(ValueError, match="the tokenizer has 15 tokens but the model's vocabulary 12"):
        SentenceEmbedder(TransformerWithHeads(odd_config(vocab_size=12)), tokenizer)
    assert SentenceEmbedder(TransformerWithHeads(odd_config(vocab_size=16)), tokenizer).encode(["w1 w2"]).shape == (1, 32)


@pytest.mark.parametrize("arguments, expected", [(["--batch_size", "0"], "--batch_size must be >= 1"),
                                                 (["--plot", "{tmp}/nowhere/map.png"], "nowhere does not exist")])
def test_the_command_line_refuses_a_bad_setting_before_loading_the_model(tmp_path, capsys, arguments, expected):
    arguments = ["--model", str(tmp_path / "no_model")] + [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    with pytest.raises(SystemExit):
        embedder.main(arguments)
    assert expected in capsys.readouterr().err  # not "no_model does not exist": the model was not looked for
