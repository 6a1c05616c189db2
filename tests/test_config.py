import json

import pytest

from minibert.config import PRESETS, BertConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_have_published_sizes(name):
    config = BertConfig.from_preset(name)
    layers, hidden, heads, intermediate = PRESETS[name]
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (layers, hidden, heads)
    expected_intermediate = 1536 if name == "minilm-l6" else 4 * hidden
    assert config.intermediate_size == expected_intermediate


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        BertConfig.from_preset("huge")


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_size=30, num_attention_heads=4), "divisible"),
    (dict(num_hidden_layers=0), "positive"),
    (dict(vocab_size=-5), "positive"),
    (dict(hidden_act="swishy"), "unknown hidden_act"),
    (dict(hidden_dropout_prob=1.5), r"\[0, 1\)"),
    (dict(pad_token_id=40000), "outside the vocabulary"),
])
def test_invalid_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**overrides)


def test_json_round_trip_keeps_unknown_keys(tmp_path):
    config = BertConfig.from_preset("tiny", vocab_size=1234)
    config.extra["id2label"] = {"0": "a", "1": "b"}
    config.to_json(tmp_path / "config.json")
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["model_type"] == "bert" and on_disk["vocab_size"] == 1234
    back = BertConfig.from_json(tmp_path / "config.json")
    assert back == config and back.extra["id2label"] == {"0": "a", "1": "b"}


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertConfig.from_json(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertConfig.from_json(tmp_path / "config.json")


# ---- a bad config.json is refused with one line that names the file ----

def write_config(tmp_path, **changes):
    settings = BertConfig.from_preset("tiny").to_dict()
    settings.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))  # json writes NaN and Infinity as the bare words
    return path


def refusal(path):
    with pytest.raises(ValueError) as error:
        BertConfig.from_json(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("changes, expected", [
    (dict(hidden_size="384"), "hidden_size must be a positive integer, got '384'"),
    (dict(hidden_act="swishy"), "unknown hidden_act 'swishy'"),
    (dict(position_embedding_type="relative_key"), "only absolute position embeddings"),
])
def test_config_json_errors_name_the_file(tmp_path, changes, expected):
    assert expected in refusal(write_config(tmp_path, **changes))


@pytest.mark.parametrize("model_type", ["roberta", "distilbert", None])
def test_a_config_of_another_architecture_is_refused(tmp_path, model_type):
    message = refusal(write_config(tmp_path, model_type=model_type))
    assert f"model_type {model_type!r}" in message


def test_a_config_without_model_type_is_read_as_bert(tmp_path):
    path = write_config(tmp_path)
    settings = json.loads(path.read_text())
    del settings["model_type"]
    path.write_text(json.dumps(settings))
    assert BertConfig.from_json(path) == BertConfig.from_preset("tiny")


@pytest.mark.parametrize("field, value, expected", [
    ("layer_norm_eps", float("nan"), "layer_norm_eps must be a positive finite number, got nan"),
    ("layer_norm_eps", float("inf"), "layer_norm_eps must be a positive finite number, got inf"),
    ("layer_norm_eps", "1e-12", "layer_norm_eps must be a positive finite number, got '1e-12'"),
    ("initializer_range", None, "initializer_range must be a positive finite number, got None"),
    ("hidden_dropout_prob", float("nan"), r"hidden_dropout_prob must be a number in [0, 1), got nan"),
    ("hidden_dropout_prob", "0.1", r"hidden_dropout_prob must be a number in [0, 1), got '0.1'"),
    ("attention_probs_dropout_prob", None, r"attention_probs_dropout_prob must be a number in [0, 1), got None"),
    ("hidden_dropout_prob", False, r"hidden_dropout_prob must be a number in [0, 1), got False"),
    ("pad_token_id", "0", "pad_token_id must be an integer, got '0'"),
    ("pad_token_id", None, "pad_token_id must be an integer, got None"),
    ("pad_token_id", 0.0, "pad_token_id must be an integer, got 0.0"),
    ("pad_token_id", False, "pad_token_id must be an integer, got False"),
    ("vocab_size", True, "vocab_size must be a positive integer, got True"),
    ("hidden_act", ["gelu"], "unknown hidden_act ['gelu']"),
    ("fused_attention", "yes", "fused_attention must be true or false, got 'yes'"),
])
def test_wrong_typed_or_non_finite_settings_are_named(tmp_path, field, value, expected):
    assert expected in refusal(write_config(tmp_path, **{field: value}))
    with pytest.raises(ValueError):  # the same checks guard the Python constructor
        BertConfig(**{field: value})


def test_integer_settings_where_floats_are_expected_are_fine():
    config = BertConfig(hidden_dropout_prob=0, attention_probs_dropout_prob=0, layer_norm_eps=1)
    assert config.hidden_dropout_prob == 0


def test_a_config_json_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"hidden_act": "gel\xfc"}')  # Latin-1, not UTF-8
    assert "not UTF-8" in refusal(path)
