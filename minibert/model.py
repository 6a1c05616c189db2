"""The BERT encoder, written out by hand (Devlin et al. 2019, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding").

A tensor's path, top to bottom of this file:
    token ids (B, T) -> Embeddings -> (B, T, H) -> N x Block -> (B, T, H) hidden states.
Each Block is post-LN, as in the original BERT and the checkpoints people load:
    x = LayerNorm(x + Dropout(SelfAttention(x)))
    x = LayerNorm(x + Dropout(FeedForward(x)))
B is the batch, T the sequence length, H the hidden size, nh the number of heads and
hs = H / nh the size of one head.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import BertConfig


def activation(name):
    """The feed-forward non-linearity. BERT uses the exact, erf-based GELU."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


def init_bert_weights(module, config):
    """BERT's initialisation: weights ~ N(0, 0.02), biases 0, LayerNorm 1 and 0.

    The padding token's embedding starts at zero, as in the reference implementation.
    Apply with `model.apply(lambda m: init_bert_weights(m, config))`.
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Embeddings(nn.Module):
    """word + position + token type, then LayerNorm and dropout."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        B, T = input_ids.shape
        position_ids = torch.arange(T, device=input_ids.device)  # (T,), broadcast over the batch
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) \
            + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        return self.dropout(self.layer_norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with two paths over the same weights.

    explicit: softmax(Q K^T / sqrt(hs) + mask) V, every step visible (set a breakpoint).
    fused:    F.scaled_dot_product_attention, the same maths in one kernel (flash or
              memory-efficient attention on a GPU, a fused loop on the CPU).
    tests/test_model.py checks that the two agree.
    """

    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.fused = config.fused_attention

    def split_heads(self, x):
        B, T, H = x.shape
        return x.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x, additive_mask=None):
        """x: (B, T, H). additive_mask: (B, 1, 1, T), 0 where a key may be attended and a
        very large negative number at padding, or None when nothing is padded."""
        B, T, H = x.shape
        dropout_p = self.attention_dropout if self.training else 0.0
        if self.fused:
            # One matrix product for Q, K and V (x times the three weights side by side): one
            # large kernel instead of three smaller ones, the same numbers.
            weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])  # (3H, H)
            bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])  # (3H,)
            q, k, v = map(self.split_heads, F.linear(x, weight, bias).split(H, dim=-1))  # 3 x (B, nh, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask, dropout_p=dropout_p)
        else:
            q, k, v = self.split_heads(self.query(x)), self.split_heads(self.key(x)), self.split_heads(self.value(x))
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, T)
            if additive_mask is not None:
                scores = scores + additive_mask  # padded keys get ~zero weight after softmax
            weights = F.dropout(scores.softmax(dim=-1), p=dropout_p, training=self.training)
            y = weights @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, H)  # (B, T, H): heads side by side again
        return self.output(y)


class FeedForward(nn.Module):
    """Position-wise MLP: H -> intermediate -> H."""

    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.down(self.act(self.up(x)))  # (B, T, I) in between


class Block(nn.Module):
    """One post-LN transformer layer: the residual is added before the LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, additive_mask=None):
        x = self.attention_norm(x + self.dropout(self.attention(x, additive_mask)))
        x = self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))
        return x


def additive_attention_mask(attention_mask, dtype):
    """(B, T) of 1 = token, 0 = padding  ->  (B, 1, 1, T) of 0 and the most negative float.

    The most negative finite float (not -inf) keeps softmax free of NaNs, and is what the
    reference implementation uses, so padded positions match it exactly.
    """
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def read_back_checks(checks):
    """Raise the ValueError of the first failed check. A check is (bad, message): `bad` a boolean
    tensor, True where a value is wrong, and `message()` the error that explains it.

    All the checks are read back to the host at once: on a GPU each read-back makes the host
    wait for the device, so a training step pays for one, however many checks it has. A
    compiled graph cannot read a tensor back at all, so under torch.compile the values go
    unchecked (types and shapes are checked by whoever made the checks, compiled or not).
    """
    if not checks or torch.compiler.is_compiling():
        return
    if not torch.stack([bad.any() for bad, _ in checks]).any():  # the one read-back
        return
    for bad, message in checks:
        if bad.any():
            raise ValueError(message())


class BertModel(nn.Module):
    """Embeddings followed by num_hidden_layers Blocks. Returns the last hidden states."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_hidden_layers)])
        self.apply(lambda module: init_bert_weights(module, config))

    def check_inputs(self, input_ids, attention_mask, token_type_ids):
        """Clear errors here instead of an index error deep inside an embedding lookup.

        Types and shapes are checked now: the host knows them. The values are returned
        as (bad, message) checks for read_back_checks, since looking at them makes the host wait
        for the device; a caller with checks of its own (TransformerWithHeads, a head's labels)
        reads them all back at once."""
        if not torch.is_tensor(input_ids) or input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int):
            raise ValueError("input_ids must be an integer tensor of shape (batch, seq_len); "
                             "use the tokenizer with return_tensors='pt'")
        B, T = input_ids.shape
        if T == 0:  # the mean of no token vectors would be NaN
            raise ValueError(f"input_ids has no tokens (shape {(B, T)}); every row holds at least [CLS] and [SEP]: "
                             f"use the tokenizer")
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} is longer than max_position_embeddings "
                             f"({self.config.max_position_embeddings}); truncate the input "
                             f"(tokenizer(..., truncation=True, max_length={self.config.max_position_embeddings}))")
        for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if tensor is None:
                continue
            if not torch.is_tensor(tensor):
                raise ValueError(f"{name} must be a tensor of shape {(B, T)}, got a {type(tensor).__name__}; "
                                 f"make it one (torch.tensor({name})) or use the tokenizer with return_tensors='pt'")
            if tensor.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)} but input_ids has {tuple(input_ids.shape)}")
            if tensor.device != input_ids.device:
                raise ValueError(f"{name} is on {tensor.device} but input_ids on {input_ids.device}; "
                                 f"move it: {name}.to({str(input_ids.device)!r})")
        if token_type_ids is not None and token_type_ids.dtype not in (torch.long, torch.int):
            raise ValueError(f"token_type_ids must be integers (0 or 1), got {token_type_ids.dtype}; "
                             f"convert with token_type_ids.long()")
        checks = [(
            (input_ids < 0) | (input_ids >= self.config.vocab_size),
            lambda: f"input_ids must lie in [0, {self.config.vocab_size}) (the vocabulary size), got values in "
                    f"[{input_ids.min().item()}, {input_ids.max().item()}]; is the tokenizer's vocab the model's?")]
        if token_type_ids is not None:
            checks.append(((token_type_ids < 0) | (token_type_ids >= self.config.type_vocab_size),
                           lambda: f"token_type_ids must lie in [0, {self.config.type_vocab_size})"))
        if attention_mask is not None:
            # Another value would be silently wrong: (1 - mask) * min makes a 2 a huge bonus and a 0.5
            # half a mask, where transformers attends to any non-zero position (and mean pooling weighs it).
            bad_mask = (attention_mask != 0) & (attention_mask != 1)
            checks.append((bad_mask, lambda: f"attention_mask must hold 1 (a token) and 0 (padding) only, got "
                                             f"{attention_mask[bad_mask][0].item():g}"))
        return checks

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, inputs_checked=False):
        """inputs_checked=True: the caller has checked the inputs (TransformerWithHeads does, with
        the labels, in one read-back)."""
        if not inputs_checked:
            read_back_checks(self.check_inputs(input_ids, attention_mask, token_type_ids))
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        additive_mask = None if attention_mask is None else additive_attention_mask(attention_mask, x.dtype)
        for block in self.layers:
            x = block(x, additive_mask)
        return x  # (B, T, H)
