"""Checkpoints in the Hugging Face layout: one explicit map between their names and ours.

A Hugging Face BERT directory holds `config.json` and `model.safetensors` (or the older
`pytorch_model.bin`). Its tensor names follow the original TensorFlow code
(`encoder.layer.3.attention.self.query.weight`); ours follow this package's modules
(`encoder.layers.3.attention.query.weight`). `hf_name_map` lists every pair, so loading
never guesses: a name that is not in the map is reported, never silently dropped.
"""

import pickle
import re
from pathlib import Path

import torch

from .heads import MaskedLanguageModelingHead
from .safetensors import load_file

# Names found in real checkpoints that no part of minibert uses: the position-id buffer,
# the [CLS] pooler (trained for next-sentence prediction) and the NSP classifier.
IGNORED_PREFIXES = ("embeddings.position_ids", "pooler.", "cls.seq_relationship.")
# The task heads of transformers' fine-tuned models (BertForSequenceClassification,
# ...TokenClassification, ...MultipleChoice: `classifier`; ...QuestionAnswering: `qa_outputs`).
# The encoder under them is an ordinary BERT, so it loads; the head is left out, with a note.
TASK_HEAD_PREFIXES = ("classifier.", "qa_outputs.")


def hf_name_map(config, mlm_head_name=None):
    """{Hugging Face name (without the `bert.` prefix): minibert name} for every tensor.

    >>> from minibert.config import BertConfig
    >>> m = hf_name_map(BertConfig.from_preset("tiny"), "mlm")
    >>> m["encoder.layer.1.attention.output.LayerNorm.weight"]
    'encoder.layers.1.attention_norm.weight'
    """
    pairs = {
        "embeddings.word_embeddings": "encoder.embeddings.word_embeddings",
        "embeddings.position_embeddings": "encoder.embeddings.position_embeddings",
        "embeddings.token_type_embeddings": "encoder.embeddings.token_type_embeddings",
        "embeddings.LayerNorm": "encoder.embeddings.layer_norm",
    }
    for i in range(config.num_hidden_layers):
        theirs, ours = f"encoder.layer.{i}", f"encoder.layers.{i}"
        pairs.update({
            f"{theirs}.attention.self.query": f"{ours}.attention.query",
            f"{theirs}.attention.self.key": f"{ours}.attention.key",
            f"{theirs}.attention.self.value": f"{ours}.attention.value",
            f"{theirs}.attention.output.dense": f"{ours}.attention.output",
            f"{theirs}.attention.output.LayerNorm": f"{ours}.attention_norm",
            f"{theirs}.intermediate.dense": f"{ours}.feed_forward.up",
            f"{theirs}.output.dense": f"{ours}.feed_forward.down",
            f"{theirs}.output.LayerNorm": f"{ours}.feed_forward_norm",
        })
    if mlm_head_name is not None:
        pairs.update({
            "cls.predictions.transform.dense": f"heads.{mlm_head_name}.dense",
            "cls.predictions.transform.LayerNorm": f"heads.{mlm_head_name}.layer_norm",
        })
    name_map = {}
    for theirs, ours in pairs.items():
        name_map[f"{theirs}.weight"] = f"{ours}.weight"
        if theirs != "embeddings.word_embeddings" and not theirs.startswith(("embeddings.position", "embeddings.token")):
            name_map[f"{theirs}.bias"] = f"{ours}.bias"
    if mlm_head_name is not None:
        name_map["cls.predictions.bias"] = f"heads.{mlm_head_name}.bias"
    return name_map


def normalize_hf_name(name):
    """Undo the spellings that differ between checkpoint generations:
    `bert.` prefix (task models) or none (BertModel), TF-era `LayerNorm.gamma/beta`, and
    `cls.predictions.decoder.bias`, which is the same tensor as `cls.predictions.bias`."""
    if name.startswith("bert."):
        name = name[len("bert."):]
    if name.endswith("LayerNorm.gamma"):
        name = name[:-len("gamma")] + "weight"
    elif name.endswith("LayerNorm.beta"):
        name = name[:-len("beta")] + "bias"
    if name == "cls.predictions.decoder.bias":
        name = "cls.predictions.bias"
    return name


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference


def find_weights(directory):
    """The weights file of a model directory: model.safetensors, else pytorch_model.bin."""
    directory = Path(directory)
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            return path
        if path.exists():
            raise IsADirectoryError(f"{path} is a directory, not a weights file; a model directory holds "
                                    f"its weights in one file, {' or '.join(WEIGHT_FILES)}")
    # Large models are saved in shards listed by an index; a BERT small enough for minibert
    # fits in one file, so rather than a second reader we ask for the one file.
    for index in (f"{name}.index.json" for name in WEIGHT_FILES):
        if (directory / index).is_file():
            raise FileNotFoundError(f"{directory} holds a sharded checkpoint ({index} and its shards), which "
                                    "minibert does not read; merge the shards into one model.safetensors "
                                    "(e.g. load it in transformers and save_pretrained with a max_shard_size "
                                    "above the model's size)")
    raise FileNotFoundError(f"{directory} has no model.safetensors or pytorch_model.bin; "
                            "is it a model directory written by save_pretrained?")


def read_weights(path):
    """The tensors of a weights file found by find_weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(path)
    # weights_only: a .bin is a pickle, and unpickling arbitrary objects runs code.
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own text runs to paragraphs and suggests turning weights_only off, the unsafe
        # path; we name the object it stopped at and point to the safe format instead.
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        raise ValueError(f"{path} holds objects other than plain tensors"
                         f"{f' ({found.group(1)})' if found else ''}; minibert refuses it because "
                         "unpickling them could run code. If you trust its source, convert it to "
                         "model.safetensors with a tool you trust") from None
    except Exception as e:
        first_line = (str(e).splitlines() or [""])[0]  # torch's messages run to paragraphs
        why = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise ValueError(f"{path} could not be read as a PyTorch checkpoint ({why}); "
                         "it may be truncated or damaged: re-download or re-save it") from e
    # A pickle can hold anything plain: a lone tensor, a list, a training checkpoint that
    # nests the state dict. Only a flat {name: tensor} dict is a model's weights.
    if not isinstance(weights, dict):
        raise ValueError(f"{path} holds a {type(weights).__name__}, not a state dict "
                         "(a dict of tensor name -> tensor)")
    for name, tensor in weights.items():
        if not isinstance(name, str):
            raise ValueError(f"{path} is not a state dict: its entry {name!r} has a name that is not a string")
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path} is not a state dict: its entry {name!r} is a {type(tensor).__name__}, "
                             "not a tensor")
    return weights


def mlm_head_names(model):
    return [name for name, head in model.heads.items() if isinstance(head, MaskedLanguageModelingHead)]


# config field: (minibert tensor, dimension) whose size it is
SIZES = {
    "vocab_size": ("encoder.embeddings.word_embeddings.weight", 0),
    "hidden_size": ("encoder.embeddings.word_embeddings.weight", 1),
    "max_position_embeddings": ("encoder.embeddings.position_embeddings.weight", 0),
    "type_vocab_size": ("encoder.embeddings.token_type_embeddings.weight", 0),
    "intermediate_size": ("encoder.layers.0.feed_forward.up.weight", 0),
}
SHOWN = 3  # tensors named per kind of mismatch; the count says how many more


def sizes_in_weights(incoming, weights):
    """The config sizes that the checkpoint's shapes reveal: {field: size}.

    `incoming` holds the tensors under minibert's names, `weights` under the file's names,
    whose `encoder.layer.<i>.` numbers give the layer count when they run 0, 1, ... L-1."""
    sizes = {field: incoming[name].shape[dim] for field, (name, dim) in SIZES.items()
             if name in incoming and incoming[name].dim() > dim}
    layers = {int(found.group(1)) for found in
              (re.match(r"encoder\.layer\.(\d+)\.", normalize_hf_name(name)) for name in weights) if found}
    if layers and layers == set(range(len(layers))):
        sizes["num_hidden_layers"] = len(layers)
    return sizes


def load_checkpoint_weights(model, weights, source="checkpoint"):
    """Copy `weights` (Hugging Face names, or minibert's `heads.*` and `mixture.*` names) into `model`.

    Raises one ValueError naming every missing, unexpected, mis-shaped and non-float tensor.
    Returns the list of names that were deliberately ignored (pooler, NSP, a transformers task head ...).
    """
    mlm_heads = mlm_head_names(model)
    name_map = hf_name_map(model.config, mlm_heads[0] if mlm_heads else None)
    tied = {f"heads.{name}.decoder.weight" for name in mlm_heads}  # shares the word embeddings
    expected = {k: v for k, v in model.state_dict().items() if k not in tied}

    incoming, incoming_names, ignored, unexpected, decoder_weight = {}, {}, [], [], None
    for name, tensor in weights.items():
        hf_name = normalize_hf_name(name)
        if hf_name in name_map:
            ours = name_map[hf_name]
        elif name in expected and name.startswith(("heads.", "mixture.")):
            ours = name
        elif hf_name == "cls.predictions.decoder.weight":
            decoder_weight = tensor  # older files store the tied matrix twice; checked below
            continue
        elif hf_name.startswith(IGNORED_PREFIXES + TASK_HEAD_PREFIXES):
            ignored.append(name)
            continue
        else:
            unexpected.append(name)
            continue
        if ours in incoming and not torch.equal(incoming[ours], tensor):
            raise ValueError(f"{source}: two different tensors map to {ours!r} (one is {name!r})")
        incoming[ours], incoming_names[ours] = tensor, name

    missing = sorted(set(expected) - set(incoming))
    misshaped = [f"{k}: checkpoint {tuple(incoming[k].shape)} vs model {tuple(expected[k].shape)}"
                 for k in sorted(incoming) if incoming[k].shape != expected[k].shape]
    # copy_ would cast integers into a float weight without a word; float16/bfloat16 weights
    # are upcast on purpose (that is how half-precision checkpoints load).
    not_float = [f"{incoming_names[k]} is {incoming[k].dtype} where the model holds {expected[k].dtype}"
                 for k in sorted(incoming) if expected[k].is_floating_point() and not incoming[k].is_floating_point()]
    if missing or unexpected or misshaped or not_float:
        # Lead with the likely cause (a size in the config that the weights contradict), then a
        # few tensors of each kind: a config without hidden_size mis-shapes nearly every tensor.
        config, revealed = model.config, sizes_in_weights(incoming, weights)
        if getattr(model, "mixture", None) is not None:
            revealed.pop("num_hidden_layers", None)  # the experts, not encoder.layer.<i>, hold the top layers
        causes = [f"the config says {field} {getattr(config, field)}, the weights have {size}"
                  for field, size in revealed.items() if size != getattr(config, field)]
        listed = [f"{title} ({len(items)}): " + ", ".join(items[:SHOWN])
                  + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
                  for title, items in (("missing", missing), ("unexpected", sorted(unexpected)),
                                       ("wrong shape", misshaped), ("not floating point", not_float)) if items]
        raise ValueError(f"{source} does not fit the model its config describes ({config.num_hidden_layers} layers, "
                         f"hidden {config.hidden_size}, vocab {config.vocab_size}): "
                         + "; ".join(causes + listed) + "; check that config.json belongs to these weights")

    word_embeddings = incoming["encoder.embeddings.word_embeddings.weight"]
    if decoder_weight is not None and not torch.equal(decoder_weight, word_embeddings):
        raise ValueError(f"{source}: cls.predictions.decoder.weight differs from the word embeddings; "
                         "minibert ties the two, so this checkpoint cannot be loaded faithfully")
    with torch.no_grad():
        for name, tensor in incoming.items():
            expected[name].copy_(tensor)
    return ignored


def hf_state_dict(model):
    """The model's tensors under Hugging Face names (`bert.` prefix, `cls.predictions.*`; the
    pooler a loaded checkpoint brought), plus minibert's other heads under `heads.<name>.*` (and experts under `mixture.*`). The tied decoder is not written:
    the reference library re-ties it from the word embeddings when it loads."""
    mlm_heads = mlm_head_names(model)
    name_map = hf_name_map(model.config, mlm_heads[0] if mlm_heads else None)
    ours_to_hf = {ours: theirs for theirs, ours in name_map.items()}
    tied = {f"heads.{name}.decoder.weight" for name in mlm_heads}
    out = {}
    for name, tensor in model.state_dict().items():
        if name in tied:
            continue
        hf_name = ours_to_hf.get(name)
        if hf_name is None:
            out[name] = tensor  # a head only minibert knows
        elif hf_name.startswith("cls."):
            out[hf_name] = tensor
        else:
            out["bert." + hf_name] = tensor
    for hf_name, tensor in model.unused_pooler.items():  # the checkpoint's, written back as it came
        out["bert." + hf_name] = tensor
    return out
