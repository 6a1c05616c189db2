"""Task heads that sit on the encoder's last hidden states (B, T, H).

Every head has the same call: `head(hidden_states, attention_mask=None, labels=None)`
returns `(loss, output)`, with `loss=None` when no labels are given. Each head also
describes itself (`describe()`) so that a saved model can rebuild its heads, and a head
with weights keeps the sizes it was built for (`hidden_size`, and `vocab_size` for the MLM
head), so that TransformerWithHeads.add_head can refuse one that does not fit the model.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import activation, init_bert_weights


def at_least_float32(tensor):
    """Losses are reduced in float32 even under autocast (bfloat16 keeps 8 bits of mantissa:
    a sum over thousands of terms would lose the small ones); float64 stays float64."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def mean_pool(hidden_states, attention_mask=None):
    """Average the token vectors of each sequence, ignoring padding.

    hidden_states (B, T, H), attention_mask (B, T) of 1/0  ->  (B, H).
    A sentence gets the same vector alone or padded in a batch, because padded positions
    contribute neither to the sum nor to the count.
    """
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
    summed = (hidden_states * mask).sum(dim=1)  # (B, H)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1); clamp guards an all-padding row
    return summed / counts


def check_labels(labels, shape, device, num_classes, head):
    """Labels that a cross-entropy loss can use, or a ValueError that says what is wrong with
    them. torch's own errors come from deep inside the loss: on a CPU an IndexError, on a GPU a
    device-side assert that ends the process and names no labels.

    Labels are class indices (torch.long) of the given shape, each in [0, num_classes) or -100,
    which the loss ignores (as in transformers, for every head). Type, shape and device are
    checked now: the host knows them. The values are returned as a (bad, message) check for
    read_back_checks (model.py): TransformerWithHeads reads it back with the encoder's input
    checks, in the one read-back a step already has. `head` names the head in the messages.
    """
    expected = (f"{head} expects labels of shape {tuple(shape)}: class indices (torch.long) in "
                f"[0, {num_classes}) or -100 (ignored)")
    if not torch.is_tensor(labels):
        raise ValueError(f"{expected}; got a {type(labels).__name__}; make it a tensor: torch.tensor(labels)")
    if labels.dtype != torch.long:
        raise ValueError(f"{expected}; got {labels.dtype}; convert class indices with labels.long()")
    if labels.shape != shape:
        raise ValueError(f"{expected}; got shape {tuple(labels.shape)}")
    if labels.device != device:
        raise ValueError(f"{expected}; the labels are on {labels.device}, the inputs on {device}; "
                         f"move them: labels.to({str(device)!r})")
    bad = (labels != -100) & ((labels < 0) | (labels >= num_classes))
    return bad, lambda: f"{expected}; got {labels[bad][0].item()}"


class MaskedLanguageModelingHead(nn.Module):
    """dense -> activation -> LayerNorm -> decoder tied to the word embeddings (+ own bias).

    With labels, logits are computed only at the masked positions (labels != -100): the
    decoder is a (H x vocab) matrix multiply, the largest in a small model with a 30k
    vocabulary, and ~85% of the positions carry no label. The loss is the same as with full
    logits. Two ways to find the masked positions, the same loss (forward's max_predictions):

      None  boolean indexing, hidden_states[labels != -100]: the output is the (M, vocab)
            logits of the M masked positions, in row-major order. M is known only once the
            host has read the labels back: on a GPU the host waits for the device, and a
            compiled step breaks into several graphs around the read-back.
      P     P slots per sequence (BERT's max_predictions_per_seq, gathered as its
            run_pretraining.py does): each row's masked positions in order, then unmasked
            ones whose label -100 keeps them out of the loss. The output is (B, P, vocab); no
            read-back, so a compiled step is one graph that a GPU can replay (CUDA graphs).
            A row may have at most P labels: Masker.max_per_sequence(T) gives the P of a
            batch of T tokens (the host knows T; asking per batch keeps the empty slots few).

    prediction_targets(labels, max_predictions) gives the label of every output row in
    either case. Without labels the output is the full (B, T, vocab) logits.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.hidden_size, self.vocab_size = config.hidden_size, config.vocab_size
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # The decoder weight is replaced by the word-embedding matrix in
        # TransformerWithHeads.add_head (weight tying); only the bias is the head's own.
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.apply(lambda module: init_bert_weights(module, config))

    def logits(self, hidden_states):
        h = self.layer_norm(self.act(self.dense(hidden_states)))
        return self.decoder(h) + self.bias

    @staticmethod
    def prediction_slots(labels, max_predictions):
        """(B, T) labels -> (B, P) positions: each row's labelled positions first, in order.

            >>> labels = torch.tensor([[-100, 7, -100, 9], [5, -100, -100, -100]])
            >>> MaskedLanguageModelingHead.prediction_slots(labels, max_predictions=2)
            tensor([[1, 3],
                    [0, 1]])
        """
        if max_predictions < 1:
            raise ValueError(f"max_predictions must be a positive number of slots or None, got {max_predictions}")
        P = min(max_predictions, labels.shape[1])
        labelled = labels != -100  # (B, T)
        sort_key = (~labelled).to(torch.uint8)  # labelled (0) before unlabelled (1)
        slots = torch.sort(sort_key, dim=1, stable=True).indices[:, :P]  # (B, P)
        # A row with more labels than slots would lose some without a word. The check runs on
        # the device, so the host does not wait for it (on a GPU it fails at the next sync).
        torch._assert_async((labelled.sum(dim=1) <= P).all(),
                            "a row of labels has more masked positions than max_predictions")
        return slots

    def prediction_targets(self, labels, max_predictions=None):
        """The label of every row of forward's output: (M,) without slots, (B, P) with
        slots, where a slot left empty holds -100."""
        if max_predictions is None:
            return labels[labels != -100]
        return labels.gather(1, self.prediction_slots(labels, max_predictions))

    def check_labels(self, labels, input_shape, device, name=None):
        """One label per token, a vocabulary id or -100; input_shape is (B, T)."""
        return check_labels(labels, input_shape, device, self.vocab_size, name or type(self).__name__)

    def forward(self, hidden_states, attention_mask=None, labels=None, max_predictions=None):
        if labels is None:
            return None, self.logits(hidden_states)  # (B, T, V)
        self.check_labels(labels, hidden_states.shape[:2], hidden_states.device)
        if max_predictions is None:
            masked_positions = labels != -100  # (B, T) bool
            logits = self.logits(hidden_states[masked_positions])  # (M, V), M = number of masked tokens
            targets = labels[masked_positions]  # (M,)
        else:
            slots = self.prediction_slots(labels, max_predictions)  # (B, P)
            H = hidden_states.shape[-1]
            logits = self.logits(hidden_states.gather(1, slots[..., None].expand(-1, -1, H)))  # (B, P, V)
            targets = labels.gather(1, slots)  # (B, P), -100 at empty slots
        loss = F.cross_entropy(at_least_float32(logits).flatten(0, -2), targets.flatten())  # ignores -100
        return loss, logits

    def describe(self):
        return {"type": type(self).__name__}


class SentenceEmbeddingHead(nn.Module):
    """Attention-masked mean pooling, optionally L2-normalised. It has no parameters and
    no loss of its own: contrastive objectives work on its output."""

    def __init__(self, config=None, normalize=False):
        super().__init__()
        self.normalize = normalize

    def forward(self, hidden_states, attention_mask=None, labels=None):
        if labels is not None:
            raise ValueError("SentenceEmbeddingHead has no loss of its own; train embeddings with a "
                             "contrastive objective on its output")
        pooled = mean_pool(hidden_states, attention_mask)  # (B, H)
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return None, pooled

    def describe(self):
        return {"type": type(self).__name__, "normalize": self.normalize}


class SentenceClassificationHead(nn.Module):
    """Pool the sequence (mean of tokens, or the [CLS] vector) -> dropout -> linear."""

    def __init__(self, config, num_labels, pooling="mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if num_labels < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {num_labels}")
        self.num_labels = num_labels
        self.pooling = pooling
        self.hidden_size = config.hidden_size
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.apply(lambda module: init_bert_weights(module, config))

    def check_labels(self, labels, input_shape, device, name=None):
        """One label per sentence; input_shape is (B, T)."""
        return check_labels(labels, input_shape[:1], device, self.num_labels, name or type(self).__name__)

    def forward(self, hidden_states, attention_mask=None, labels=None):
        pooled = mean_pool(hidden_states, attention_mask) if self.pooling == "mean" else hidden_states[:, 0]
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            self.check_labels(labels, hidden_states.shape[:2], hidden_states.device)
            loss = F.cross_entropy(at_least_float32(logits), labels)  # ignores -100
        return loss, logits

    def describe(self):
        return {"type": type(self).__name__, "num_labels": self.num_labels, "pooling": self.pooling}


class TokenClassificationHead(nn.Module):
    """dropout -> linear on every token. Labels of -100 (sub-word continuations, specials,
    padding) are ignored by the loss."""

    def __init__(self, config, num_labels):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"a token classifier needs at least 2 labels, got {num_labels}")
        self.num_labels = num_labels
        self.hidden_size = config.hidden_size
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.apply(lambda module: init_bert_weights(module, config))

    def check_labels(self, labels, input_shape, device, name=None):
        """One label per token; input_shape is (B, T)."""
        return check_labels(labels, input_shape, device, self.num_labels, name or type(self).__name__)

    def forward(self, hidden_states, attention_mask=None, labels=None):
        logits = self.classifier(self.dropout(hidden_states))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            self.check_labels(labels, hidden_states.shape[:2], hidden_states.device)
            loss = F.cross_entropy(at_least_float32(logits.reshape(-1, self.num_labels)), labels.reshape(-1),
                                   ignore_index=-100)
        return loss, logits

    def describe(self):
        return {"type": type(self).__name__, "num_labels": self.num_labels}


HEAD_TYPES = {cls.__name__: cls for cls in
              (MaskedLanguageModelingHead, SentenceEmbeddingHead, SentenceClassificationHead, TokenClassificationHead)}


def build_head(config, description):
    """Rebuild a head from its `describe()` dict (as stored in config.json)."""
    kwargs = dict(description)
    type_name = kwargs.pop("type", None)
    if type_name not in HEAD_TYPES:
        raise ValueError(f"unknown head type {type_name!r} in config.json; known: {sorted(HEAD_TYPES)}")
    return HEAD_TYPES[type_name](config, **kwargs)
