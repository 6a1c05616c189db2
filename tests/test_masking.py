"""BERT's masking recipe: exact counts, the 80/10/10 split, specials untouched, whole words."""

import pytest
import torch

from minibert.masking import Masker

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
VOCAB = 50
CONTINUATION = list(range(40, 50))  # ids 40..49 play the "##" pieces


def make_batch(batch=64, seq=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (batch, seq), generator=g)
    lengths = torch.randint(3, seq + 1, (batch,), generator=g)
    for row, length in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, length - 1] = CLS, SEP
        ids[row, length:] = PAD
    return ids, lengths


def masker(rate=0.15, strategy="exact", **kwargs):
    return Masker(VOCAB, special_ids=[PAD, UNK, CLS, SEP, MASK], mask_id=MASK, rate=rate, strategy=strategy,
                  continuation_ids=CONTINUATION, **kwargs)


@pytest.mark.parametrize("rate", [0.15, 0.4])
def test_exact_count_per_sequence(rate):
    ids, lengths = make_batch()
    _, labels = masker(rate=rate)(ids, torch.Generator().manual_seed(1))
    real = lengths - 2  # without [CLS] and [SEP]
    expected = torch.round(real.float() * rate).long().clamp(min=1)
    assert torch.equal((labels != -100).sum(dim=1), expected)


def test_max_predictions_caps_the_count():
    ids, _ = make_batch()
    _, labels = masker(rate=0.5, max_predictions=3)(ids, torch.Generator().manual_seed(1))
    assert (labels != -100).sum(dim=1).max() == 3


def test_specials_are_never_picked_and_labels_hold_originals():
    ids, _ = make_batch()
    for strategy in Masker.STRATEGIES:
        masked, labels = masker(rate=0.5, strategy=strategy)(ids, torch.Generator().manual_seed(2))
        picked = labels != -100
        assert not torch.isin(ids[picked], torch.tensor([PAD, CLS, SEP])).any()
        assert torch.equal(labels[picked], ids[picked])
        assert torch.equal(masked[~picked], ids[~picked])  # nothing else changes


def test_80_10_10_split_over_many_draws():
    ids, _ = make_batch(batch=256, seq=64)
    m = masker(rate=0.15)
    counts = torch.zeros(3)
    for seed in range(20):
        masked, labels = m(ids, torch.Generator().manual_seed(seed))
        picked = labels != -100
        is_mask = masked[picked] == MASK
        unchanged = masked[picked] == ids[picked]
        counts += torch.tensor([is_mask.sum(), (~is_mask & ~unchanged).sum(), unchanged.sum()], dtype=torch.float)
    fractions = counts / counts.sum()
    # A random replacement equal to the original counts as "unchanged": 1/35 of the 10%.
    expected = torch.tensor([0.8, 0.1 * 34 / 35, 0.1 + 0.1 / 35])
    n = counts.sum()
    tolerance = 4 * torch.sqrt(expected * (1 - expected) / n)  # 4 standard errors
    assert torch.all((fractions - expected).abs() < tolerance), (fractions, expected)


def test_random_replacements_are_never_special():
    ids, _ = make_batch(batch=256)
    masked, labels = masker(rate=0.5, mask_fraction=0.0, random_fraction=1.0)(ids, torch.Generator().manual_seed(3))
    assert not torch.isin(masked[labels != -100], torch.tensor([PAD, UNK, CLS, SEP, MASK])).any()


def test_whole_words_are_masked_together():
    ids, lengths = make_batch(batch=128)
    ids[:, 2::3] = torch.where(ids[:, 2::3] > 5, 40 + ids[:, 2::3] % 10, ids[:, 2::3])  # some "##" pieces
    ids[:, 0] = CLS
    for row, length in enumerate(lengths.tolist()):
        ids[row, length - 1], ids[row, length:] = SEP, PAD
    _, labels = masker(rate=0.3, strategy="whole_word")(ids, torch.Generator().manual_seed(4))
    picked = labels != -100
    is_piece = torch.isin(ids, torch.tensor(CONTINUATION))
    # A "##" piece is picked exactly when the token before it is picked.
    assert torch.equal(picked[:, 1:][is_piece[:, 1:]], picked[:, :-1][is_piece[:, 1:]])
    real = lengths - 2
    budget = torch.round(real.float() * 0.3).clamp(min=1)
    assert torch.all(picked.sum(dim=1) <= budget)
    assert picked.sum() > 0.8 * budget.sum()  # words fill most of the budget


def test_a_leading_continuation_piece_is_a_word_of_its_own():
    """A piece cut from the middle of a document can start with "##x": that piece is a word
    (its head is in the piece before), not a part of the unrelated word after it."""
    ids = torch.tensor([[CLS, 40, 5, 6, SEP]])  # [CLS] ##x a b [SEP]: three one-token words
    picked_alone = torch.zeros(5, dtype=torch.long)
    for seed in range(60):
        _, labels = masker(rate=0.34, strategy="whole_word")(ids, torch.Generator().manual_seed(seed))  # budget 1
        picked = labels[0] != -100
        assert picked.sum() == 1
        picked_alone += picked.long()
    assert (picked_alone[1:4] > 0).all(), picked_alone  # each of ##x, a, b is masked on its own sometimes


def test_same_seed_same_masks_and_input_untouched():
    ids, _ = make_batch()
    original = ids.clone()
    for strategy in Masker.STRATEGIES:
        a = masker(strategy=strategy)(ids, torch.Generator().manual_seed(7))
        b = masker(strategy=strategy)(ids, torch.Generator().manual_seed(7))
        c = masker(strategy=strategy)(ids, torch.Generator().manual_seed(8))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[1], c[1])
    assert torch.equal(ids, original)


def test_bernoulli_rate():
    ids, lengths = make_batch(batch=512)
    _, labels = masker(rate=0.2, strategy="bernoulli")(ids, torch.Generator().manual_seed(5))
    rate = (labels != -100).sum() / (lengths - 2).sum()
    assert abs(rate.item() - 0.2) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(strategy="span"), "unknown masking strategy"),
    (dict(rate=0.0), "mask rate"),
    (dict(mask_fraction=0.9, random_fraction=0.2), "sum to at most 1"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        masker(**kwargs)
    with pytest.raises(ValueError, match="continuation_ids"):
        Masker(VOCAB, [0], MASK, rate=0.15, strategy="whole_word")


@pytest.mark.parametrize("strategy, rate, cap", [("exact", 0.15, None), ("exact", 0.4, None), ("exact", 0.5, 3),
                                                 ("whole_word", 0.15, None), ("whole_word", 0.4, None)])
def test_max_per_sequence_bounds_every_row_and_is_reached(strategy, rate, cap):
    # The MLM head gets this many slots per row: a row with more picks would lose labels.
    ids, _ = make_batch(batch=256)
    ids[:8, 1:] = 7  # full rows (no [SEP], no padding): every position a candidate
    m = masker(rate=rate, strategy=strategy, max_predictions=cap)
    _, labels = m(ids, torch.Generator().manual_seed(2))
    counts = (labels != -100).sum(dim=1)
    bound = m.max_per_sequence(ids.shape[1])
    assert counts.max() <= bound
    assert (counts[:8] == bound).all()  # the bound is tight: no slot is wasted on a full row
    assert masker(strategy="bernoulli").max_per_sequence(40) is None


@pytest.mark.parametrize("strategy", Masker.STRATEGIES)
def test_mask_rate_one_picks_every_real_token(strategy):
    # --mask_rate=1.0 is in the range train_mlm.py accepts (training.SETTING_RULES): the
    # masker must not refuse it after the corpus is read and the model built.
    ids, lengths = make_batch()
    _, labels = masker(rate=1.0, strategy=strategy)(ids, torch.Generator().manual_seed(0))
    assert ((labels != -100).sum(dim=1) == lengths - 2).all()


def test_whole_word_masking_with_a_vocabulary_without_continuation_pieces():
    # A vocabulary trained on text whose words are all one character (Chinese, say) has
    # no "##" pieces: every token is a whole word, and whole-word masking is exact masking.
    m = Masker(VOCAB, [PAD, UNK, CLS, SEP, MASK], MASK, rate=0.15, strategy="whole_word", continuation_ids=[])
    ids, lengths = make_batch()
    _, labels = m(ids, torch.Generator().manual_seed(0))
    assert ((labels != -100).sum(dim=1) == torch.round((lengths - 2) * 0.15).clamp(min=1)).all()
