"""One encoder, many named heads: the model every training script in minibert uses.

    model = TransformerWithHeads(BertConfig.from_preset("mini"))
    model.add_head("classification", SentenceClassificationHead(model.config, 10))
    model(input_ids)                                  # {"classification": logits}
    model(input_ids, head="classification", labels=y) # (loss, logits)

The encoder runs once per call; every head reads the same hidden states (B, T, H).
With a mixture of experts (add_mixture, see mixture.py) the top encoder layers become
experts and each head reads its own gated mixture of them.
"""

import json
import sys
from pathlib import Path

import torch.nn as nn

from .checkpoint import (TASK_HEAD_PREFIXES, find_weights, hf_state_dict, load_checkpoint_weights, normalize_hf_name,
                         read_weights)
from .config import BertConfig
from .heads import MaskedLanguageModelingHead, build_head
from .mixture import MultiGateMixture
from .model import BertModel, read_back_checks
from .safetensors import save_file


class TransformerWithHeads(nn.Module):

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.encoder = BertModel(config)
        self.heads = nn.ModuleDict()
        self.mixture = None
        # BERT's [CLS] pooler (dense + tanh, trained for next-sentence prediction): no part of
        # minibert uses it, but the one a checkpoint brought is kept as it was, so that
        # save_pretrained gives transformers back the pooler it had ({Hugging Face name: tensor}).
        self.unused_pooler = {}

    def add_head(self, name, head):
        if not isinstance(name, str):
            raise TypeError(f"head name must be a string such as 'classification', got {type(name).__name__} {name!r}")
        if not isinstance(head, nn.Module):
            got, example = (type(head).__name__, "SentenceClassificationHead(model.config, num_labels)")
            if isinstance(head, type):  # the class itself, not built
                got, example = f"the class {head.__name__}", f"{head.__name__}(model.config, ...)"
            raise TypeError(f"head {name!r} must be an nn.Module, got {got}; pass a head built from this model's "
                            f"config: {example}")
        for size in ("hidden_size", "vocab_size"):
            # A head keeps the sizes it was built for; one from another config would fail at its first
            # matrix product, and a model saved with it would not load back.
            built_for, expected = getattr(head, size, None), getattr(self.config, size)
            if built_for is not None and built_for != expected:
                raise ValueError(f"head {name!r} ({type(head).__name__}) was built for {size} {built_for}, but the "
                                 f"model's {size} is {expected}; build it from the model's config: "
                                 f"{type(head).__name__}(model.config, ...)")
        if not name.isidentifier():
            raise ValueError(f"head name {name!r} must be a Python identifier (letters, digits, _)")
        if name in self.heads:
            raise ValueError(f"a head named {name!r} already exists; remove it first with del model.heads[{name!r}]")
        if isinstance(head, MaskedLanguageModelingHead):
            # Weight tying (Press & Wolf 2017): the output projection is the input embedding matrix.
            head.decoder.weight = self.encoder.embeddings.word_embeddings.weight
        self.heads[name] = head
        return head

    def add_mixture(self, num_experts, expert_layers, tasks, top_k=0):
        """Turn the top `expert_layers` encoder layers into `num_experts` experts with one
        gate per task (MMoE). Every expert starts as a copy of those pretrained layers."""
        if self.mixture is not None:
            raise ValueError("this model already has a mixture of experts")
        layers = self.encoder.layers
        if not 1 <= expert_layers <= len(layers):
            raise ValueError(f"expert_layers must be between 1 and {len(layers)} (the encoder's layers), "
                             f"got {expert_layers}")
        template = layers[len(layers) - expert_layers:]
        self.mixture = MultiGateMixture(template, num_experts, list(tasks), self.config.hidden_size, top_k)
        self.encoder.layers = layers[:len(layers) - expert_layers]  # the shared bottom
        self.config.extra["minibert_mixture"] = self.mixture.describe()
        return self.mixture

    def get_encoder_output(self, input_ids, attention_mask=None, token_type_ids=None, task=None, inputs_checked=False):
        hidden_states = self.encoder(input_ids, attention_mask, token_type_ids, inputs_checked)  # (B, T, H)
        if self.mixture is None:
            return hidden_states
        if task is None:
            raise ValueError("a model with a mixture of experts needs the task whose gate to use (task=...)")
        return self.mixture(hidden_states, attention_mask, task)  # (B, T, H), task's mixture of experts

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, head=None, labels=None, **head_options):
        """head=None: {name: output} of every head (no losses). head="x": head x's (loss, output);
        head_options go to that head (the MLM head's max_predictions)."""
        if head is not None and head not in self.heads:
            raise ValueError(f"no head named {head!r}; this model has {list(self.heads)}")
        if head is None and (labels is not None or head_options):
            raise ValueError("labels and head options need a head: call model(input_ids, head=name, labels=labels)")
        checks = self.encoder.check_inputs(input_ids, attention_mask, token_type_ids)
        if labels is not None and hasattr(self.heads[head], "check_labels"):
            checks.append(self.heads[head].check_labels(labels, input_ids.shape, input_ids.device, f"head {head!r}"))
        read_back_checks(checks)  # inputs and labels in one read-back (on a GPU, one wait per step)
        if self.mixture is not None:  # each head reads its own gated mixture
            names = [head] if head is not None else list(self.heads)
            hidden = {name: self.get_encoder_output(input_ids, attention_mask, token_type_ids, task=name,
                                                    inputs_checked=True) for name in names}
        else:
            shared = self.get_encoder_output(input_ids, attention_mask, token_type_ids, inputs_checked=True)
            hidden = {name: shared for name in ([head] if head is not None else self.heads)}
        if head is not None:
            return self.heads[head](hidden[head], attention_mask=attention_mask, labels=labels, **head_options)
        return {name: module(hidden[name], attention_mask=attention_mask)[1] for name, module in self.heads.items()}

    # ---- Hugging Face layout on disk ----
    def save_pretrained(self, directory):
        """Write config.json + model.safetensors that both minibert and `transformers` load
        (a model with a mixture of experts only loads in minibert: its top layers are experts)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        has_mlm = any(isinstance(h, MaskedLanguageModelingHead) for h in self.heads.values())
        config["architectures"] = ["BertForMaskedLM" if has_mlm else "BertModel"]
        config["minibert_heads"] = {name: head.describe() for name, head in self.heads.items()}
        save_file(hf_state_dict(self), directory / "model.safetensors", metadata={"format": "pt"})
        (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, directory, **config_overrides):
        """Build the model from `directory/config.json` and copy in its weights by name.

        Heads described in config.json (written by save_pretrained) are rebuilt; a checkpoint
        with the reference library's MLM weights (`cls.predictions.*`) gets a head named "mlm".
        `config_overrides` change fields such as dropout or fused_attention. A fine-tuned
        transformers checkpoint (BertForSequenceClassification ...) loads its encoder; a note
        on stderr names the task head's tensors, which are left out.
        """
        directory = Path(directory)
        if directory.is_file():
            raise NotADirectoryError(f"{directory} is a file, not a model directory; pass the directory "
                                     "that holds config.json and model.safetensors")
        if not directory.is_dir():
            raise FileNotFoundError(f"model directory {directory} does not exist")
        config_path = directory / "config.json"
        config = BertConfig.from_json(config_path)
        for key, value in config_overrides.items():
            if not hasattr(config, key) or key == "extra":
                raise ValueError(f"unknown config field {key!r}")
            setattr(config, key, value)
        config.validate()
        weights_path = find_weights(directory)
        weights = read_weights(weights_path)
        model = cls(config)
        try:
            add_described_parts(model, weights)
        except ValueError as e:
            raise ValueError(f"{config_path}: {e}") from e
        ignored = load_checkpoint_weights(model, weights, source=str(weights_path))
        model.unused_pooler = {normalize_hf_name(name): weights[name] for name in ignored
                               if normalize_hf_name(name).startswith("pooler.")}
        if any(normalize_hf_name(name).startswith(TASK_HEAD_PREFIXES) for name in ignored):
            # A fine-tuned transformers model: its head is not one of ours, so say what was left out.
            architecture = ", ".join(config.extra.get("architectures") or ["a transformers task model"])
            left_out = sorted(name for name in ignored if not name.endswith("position_ids"))  # a buffer, not weights
            print(f"note: {weights_path}: not loaded: {', '.join(left_out)} (the task head of {architecture}); "
                  "the encoder is loaded: add a head (model.add_head) and fine-tune it", file=sys.stderr)
        return model


MIXTURE_FIELDS = ("num_experts", "expert_layers", "tasks", "top_k")


def add_described_parts(model, weights):
    """Rebuild the mixture and the heads that save_pretrained described in config.json
    (minibert_mixture, minibert_heads). Without minibert_heads, a checkpoint with the
    reference library's MLM weights (`cls.predictions.*`) gets a head named "mlm".
    The entries are JSON anyone may have edited: a wrong one is a ValueError naming it."""
    mixture = model.config.extra.get("minibert_mixture")
    if mixture is not None:
        if not isinstance(mixture, dict) or sorted(mixture) != sorted(MIXTURE_FIELDS):
            raise ValueError(f"minibert_mixture must be an object with exactly the fields {', '.join(MIXTURE_FIELDS)} "
                             f"(as save_pretrained writes it), got {mixture!r}")
        try:
            model.add_mixture(**mixture)
        except (TypeError, ValueError) as e:
            raise ValueError(f"minibert_mixture {mixture!r} cannot be rebuilt: {e}") from e
    head_descriptions = model.config.extra.get("minibert_heads")
    if head_descriptions is None:
        if any(k.startswith(("cls.predictions.", "bert.cls.predictions.")) for k in weights):
            head_descriptions = {"mlm": {"type": "MaskedLanguageModelingHead"}}
        else:
            head_descriptions = {}
    if not isinstance(head_descriptions, dict) or not all(isinstance(d, dict) for d in head_descriptions.values()):
        raise ValueError("minibert_heads must map each head's name to its description "
                         f"({{\"type\": \"TokenClassificationHead\", ...}}), got {head_descriptions!r}")
    for name, description in head_descriptions.items():
        try:
            model.add_head(name, build_head(model.config, description))
        except (TypeError, ValueError) as e:  # a TypeError: the description's arguments do not fit the head
            raise ValueError(f"minibert_heads[{name!r}] cannot be rebuilt: {e}") from e
