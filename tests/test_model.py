"""The encoder's modules: shapes on odd sizes, gradients, the two attention paths, errors."""

import pytest
import torch

from minibert.model import Block, BertModel, Embeddings, FeedForward, SelfAttention, additive_attention_mask

from conftest import BATCH, SEQ, odd_config, random_batch


def test_shapes_of_every_module():
    config = odd_config()
    input_ids, attention_mask, token_type_ids = random_batch(config)
    x = Embeddings(config)(input_ids, token_type_ids)
    assert x.shape == (BATCH, SEQ, 32)
    mask = additive_attention_mask(attention_mask, x.dtype)
    assert mask.shape == (BATCH, 1, 1, SEQ)
    attention = SelfAttention(config)
    assert attention.split_heads(x).shape == (BATCH, 4, SEQ, 8)
    assert attention(x, mask).shape == (BATCH, SEQ, 32)
    feed_forward = FeedForward(config)
    assert feed_forward.up(x).shape == (BATCH, SEQ, 37)
    assert feed_forward(x).shape == (BATCH, SEQ, 32)
    assert Block(config)(x, mask).shape == (BATCH, SEQ, 32)
    assert BertModel(config)(input_ids, attention_mask, token_type_ids).shape == (BATCH, SEQ, 32)


def test_init_follows_bert():
    config = odd_config(vocab_size=2000, hidden_size=64)
    model = BertModel(config)
    words = model.embeddings.word_embeddings.weight
    assert torch.all(words[config.pad_token_id] == 0)
    assert abs(words[1:].std().item() - 0.02) < 0.001
    block = model.layers[0]
    assert torch.all(block.attention.query.bias == 0)
    assert torch.all(block.attention_norm.weight == 1) and torch.all(block.attention_norm.bias == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explicit_and_fused_attention_agree_with_padding(seed):
    config = odd_config(attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    fused = SelfAttention(config).eval()
    explicit = SelfAttention(odd_config(fused_attention=False))
    explicit.load_state_dict(fused.state_dict())  # the same weights, the other path
    explicit.eval()
    x = torch.randn(BATCH, SEQ, 32)
    _, attention_mask, _ = random_batch(config, seed=seed)
    mask = additive_attention_mask(attention_mask, x.dtype)
    assert torch.allclose(fused(x, mask), explicit(x, mask), atol=1e-6, rtol=0)
    assert torch.allclose(fused(x, None), explicit(x, None), atol=1e-6, rtol=0)


def test_padding_keys_get_no_attention():
    """Changing what sits at padded positions must not change any real token's output."""
    config = odd_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertModel(config).eval()
    input_ids, attention_mask, token_type_ids = random_batch(config)
    scrambled = torch.where(attention_mask.bool(), input_ids, torch.randint(1, 99, input_ids.shape))
    with torch.no_grad():
        a = model(input_ids, attention_mask, token_type_ids)
        b = model(scrambled, attention_mask, token_type_ids)
    real = attention_mask.bool()
    assert torch.allclose(a[real], b[real], atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck_attention(fused):
    config = odd_config(fused_attention=fused, attention_probs_dropout_prob=0.0)
    attention = SelfAttention(config).double().eval()
    x = torch.randn(2, 5, 32, dtype=torch.float64, requires_grad=True)
    mask = additive_attention_mask(torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), torch.float64)
    assert torch.autograd.gradcheck(lambda x: attention(x, mask), (x,))


@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck_block(fused):
    config = odd_config(fused_attention=fused, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    block = Block(config).double().eval()
    x = torch.randn(2, 5, 32, dtype=torch.float64, requires_grad=True)
    mask = additive_attention_mask(torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]), torch.float64)
    assert torch.autograd.gradcheck(lambda x: block(x, mask), (x,))


def test_gelu_is_exact_erf():
    config = odd_config()
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)  # float64: 1 + erf(x) cancels in float32
    exact = 0.5 * x * (1 + torch.erf(x / 2 ** 0.5))
    assert torch.allclose(FeedForward(config).act(x), exact, atol=1e-12)
    tanh_approximation = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3)))
    assert (tanh_approximation - exact).abs().max() > 1e-5  # the test can tell the two apart


def test_bad_inputs_raise_clear_errors():
    config = odd_config()
    model = BertModel(config)
    input_ids, attention_mask, _ = random_batch(config)
    with pytest.raises(ValueError, match=r"\[0, 99\)"):
        model(input_ids.masked_fill(input_ids == input_ids[0, 0], 99))
    with pytest.raises(ValueError, match=r"\[0, 99\)"):
        model(input_ids - 100)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        model(input_ids.float())
    with pytest.raises(ValueError, match="integer tensor"):
        model(input_ids[0])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(input_ids, attention_mask[:, :3])
    with pytest.raises(ValueError, match="token_type_ids"):
        model(input_ids, attention_mask, torch.full_like(input_ids, 2))
