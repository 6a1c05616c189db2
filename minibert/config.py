"""The shape of a BERT encoder, as one dataclass.

The field names are those of a Hugging Face `config.json`, so a checkpoint's config reads
straight into `BertConfig` and ours reads straight into `transformers`. Presets are the
published compact BERT sizes (Turc et al. 2019, "Well-Read Students Learn Better") plus
MiniLM-L6 and BERT-base.
"""

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# name: (num_hidden_layers, hidden_size, num_attention_heads, intermediate_size)
PRESETS = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "minilm-l6": (6, 384, 12, 1536),
    "base": (12, 768, 12, 3072),
}

# "gelu" is the exact erf form BERT was trained with; "gelu_new" is the tanh approximation.
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


def is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # minibert's own switch: F.scaled_dot_product_attention (fast) or the explicit
    # softmax(QK^T/sqrt(d) + mask) V (for reading). Both use the same weights.
    fused_attention: bool = True
    # Anything else found in a config.json (architectures, id2label, head descriptions ...)
    # is kept here and written back, so a round trip loses nothing.
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.validate()

    def validate(self):
        # A config.json can hold any JSON value, so each field's type is checked as well as its
        # range (True is an int to Python, not a size). Ranges are written as the condition
        # that must hold, `not 0 < x < inf`, because NaN fails every comparison.
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not is_integer(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head gets hidden_size / num_attention_heads dims")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unknown hidden_act {self.hidden_act!r}; choose one of {ACTIVATIONS}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not (is_number(value) and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not (is_number(value) and 0.0 < value < math.inf):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not is_integer(self.pad_token_id):
            raise ValueError(f"pad_token_id must be an integer, got {self.pad_token_id!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary (size {self.vocab_size})")
        if not isinstance(self.fused_attention, bool):
            raise ValueError(f"fused_attention must be true or false, got {self.fused_attention!r}")

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        layers, hidden, heads, intermediate = PRESETS[name]
        return cls(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                   intermediate_size=intermediate, **overrides)

    # ---- config.json ----
    def to_dict(self):
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        d.update({"model_type": "bert", "position_embedding_type": "absolute"})
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)} - {"extra"}
        # Other encoders share most of these field names (RoBERTa's config is BERT's with
        # offset position ids), so their weights would load and give wrong hidden states.
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"model_type {d['model_type']!r} is not BERT; minibert reads only BERT "
                             "checkpoints (model_type \"bert\")")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported, "
                             f"got position_embedding_type={d['position_embedding_type']!r}")
        extra = {k: v for k, v in d.items() if k not in known and k not in ("model_type", "position_embedding_type")}
        return cls(**{k: v for k, v in d.items() if k in known}, extra=extra)

    def to_json(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}; a model directory needs a config.json")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))  # JSON is UTF-8 whatever the locale says
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); "
                             "a config.json is UTF-8 JSON: fix or re-save the config") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix or re-save the config") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path} holds a JSON {type(d).__name__}, not the object of settings a config.json "
                             "is ({\"hidden_size\": ..., ...}); fix or re-save the config")
        # The checks live in from_dict and validate, which do not know the file: name it here.
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
