"""Rank correlation written from its definition, checked against scipy; the STS reader."""

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minibert.sts import average_ranks, pearson, read_sts, spearman


def test_average_ranks_by_hand():
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([1, 1, 1]).tolist() == [2.0, 2.0, 2.0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-1000, 1000)), min_size=3, max_size=60))
def test_spearman_and_pearson_match_scipy_with_ties(pairs):
    from scipy import stats
    x = np.array([p[0] for p in pairs], dtype=float)  # few distinct values: many ties
    y = np.array([p[1] for p in pairs]) / 1000  # cosines on a grid (denormal floats test numpy, not us)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return  # correlation undefined
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-9)
    assert average_ranks(x).tolist() == stats.rankdata(x).tolist()


def test_constant_input_is_nan_and_short_input_an_error():
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        pearson([1], [2])


def test_read_sts_splits_on_tabs_only(tmp_path):
    folder = tmp_path / "sts" / "stsbenchmark"
    folder.mkdir(parents=True)
    (folder / "sts-dev.csv").write_text(
        'main-captions\tMSRvid\t2012test\t0001\t5.000\tA "quoted plane.\t An air plane.\n'
        "main-news\theadlines\t2013\t0002\t1.5\tOne.\tTwo.\tlicence\textra\n")
    first, second, scores = read_sts("dev", tmp_path)
    assert first == ['A "quoted plane.', "One."] and second == ["An air plane.", "Two."]
    assert scores.tolist() == [5.0, 1.5]
    with pytest.raises(FileNotFoundError, match="MINIBERT_DATA"):
        read_sts("test", tmp_path)


def test_sts_scores_do_not_depend_on_the_batch_size(tmp_path):
    """Batches are padded to their longest sentence; mean pooling ignores the padding, so
    the vectors, and the scores, must be the same whatever the batch size."""
    import torch
    from minibert.config import BertConfig
    from minibert.embedder import SentenceEmbedder
    from minibert.sts import evaluate_sts
    from minibert.tokenizer import WordPieceTokenizer
    from minibert.transformer_with_heads import TransformerWithHeads
    words = "a cat dog sat on the mat plane takes off market fell sharply today is".split()
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    torch.manual_seed(0)
    model = TransformerWithHeads(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=37))
    embedder = SentenceEmbedder(model, tokenizer)
    folder = tmp_path / "sts" / "stsbenchmark"
    folder.mkdir(parents=True)
    pairs = [("a cat sat", "a cat sat on the mat", 4.0), ("the plane takes off", "a plane", 3.0),
             ("the market fell sharply today", "dog", 0.5), ("a dog is on the mat", "the cat is on the mat", 2.5),
             ("today", "the market is sharply today", 1.0)]
    (folder / "sts-dev.csv").write_text("".join(f"g\tf\t2012\t{i}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(pairs)))
    vectors = [embedder.encode([a for a, _, _ in pairs] + [b for _, b, _ in pairs], batch_size=n) for n in (1, 3, 10)]
    assert np.allclose(vectors[0], vectors[1], atol=1e-6) and np.allclose(vectors[0], vectors[2], atol=1e-6)
    scores = [evaluate_sts(embedder, "dev", tmp_path, batch_size=n) for n in (1, 2, 64)]
    assert scores[0]["spearman"] == pytest.approx(scores[1]["spearman"]) == pytest.approx(scores[2]["spearman"])


@pytest.mark.filterwarnings("ignore:An input array is constant")  # scipy says so, as the test asks it to
@pytest.mark.parametrize("value", [0.1, 0.3, 0.6218527938421128, -0.7, 1e-5])
def test_a_constant_side_is_nan_as_in_scipy(value):
    """Subtracting the mean of n equal floats can leave n equal crumbs (1e-17), not zeros;
    their correlation with anything is then about 1e-17, a number where scipy says NaN."""
    from scipy import stats
    y = np.linspace(0, 1, 22) ** 2
    for n in range(2, 23):
        assert np.isnan(pearson([value] * n, y[:n]))
        assert np.isnan(stats.pearsonr([value] * n, y[:n]).statistic)
        assert np.isnan(spearman([value] * n, y[:n]))


def test_non_finite_values_are_nan_or_ranked_as_in_scipy():
    """A diverged model gives NaN cosines: they must score NaN, not a rank correlation of
    wherever argsort happened to put the NaNs (it gave 0.8 here, and -0.87 in a real run)."""
    from scipy import stats
    x, y = [0.1, 0.2, np.nan, 0.4], [1, 2, 3, 4]
    assert np.isnan(spearman(x, y)) and np.isnan(stats.spearmanr(x, y).statistic)
    assert np.isnan(pearson(x, y)) and np.isnan(average_ranks(x)).all()
    assert average_ranks([np.inf, np.inf, 1.0]).tolist() == stats.rankdata([np.inf, np.inf, 1.0]).tolist()


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e160, 1e300])
def test_pearson_of_very_small_or_large_numbers(scale):
    """The sums of squares of 1e-300s underflow to 0 (-> NaN) and of 1e300s overflow (-> 0.0);
    scaling each side by its largest deviation first keeps them in range, as scipy does."""
    from scipy import stats
    x, y = np.array([1.0, 2.0, 4.0, 3.0]) * scale, [1.0, 3.0, 2.0, 4.0]
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


def write_dev(tmp_path, content):
    folder = tmp_path / "sts" / "stsbenchmark"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sts-dev.csv"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


GOOD = "g\tf\t2012\t0001\t4.0\tA plane.\tAn air plane.\n"


@pytest.mark.parametrize("line, problem", [
    ("g\tf\t2012\t0002\tfive\tA.\tB.\n", "the score 'five' is not a number"),
    ("g\tf\t2012\t0002\t5.5\tA.\tB.\n", "the score 5.5 is outside [0, 5]"),
    ("g\tf\t2012\t0002\t-0.25\tA.\tB.\n", "the score -0.25 is outside [0, 5]"),
    ("g\tf\t2012\t0002\tnan\tA.\tB.\n", "the score 'nan' is not a number"),
    ("g\tf\t2012\t0002\tinf\tA.\tB.\n", "the score 'inf' is not a number"),
    ("g\tf\t2012\t0002\t3\t \tB.\n", "sentence 1 is empty"),
    ("g\tf\t2012\t0002\t3\tA.\t\n", "sentence 2 is empty"),
    ("g\tf\t2012\t0002\t3\tA. B.\n", "expected 7 tab-separated columns, got 6"),
])
def test_a_bad_line_is_named_by_file_and_line(tmp_path, line, problem):
    path = write_dev(tmp_path, GOOD + GOOD + line)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}:3: {problem}')}"):
        read_sts("dev", tmp_path)


def test_bytes_that_are_not_utf8_are_named_by_file_and_line(tmp_path):
    path = write_dev(tmp_path, (GOOD + GOOD).encode() + b"g\tf\t2012\t3\t3\tA caf\xe9.\tB.\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:3: not valid UTF-8"):
        read_sts("dev", tmp_path)


def test_blank_lines_crlf_a_bom_and_a_stray_carriage_return_are_read(tmp_path):
    """What editors and other systems leave in a file: a BOM, CRLF line ends, an empty last
    line. A lone carriage return inside a sentence is not a line end (Python's text mode
    would cut the line there and report a short line)."""
    write_dev(tmp_path, "\ufeff" + GOOD.replace("\n", "\r\n") + "\r\n"
              + "g\tf\t2012\t0002\t1.5\tOne\rstray.\tTwo.\tlicence\textra\r\n\n")
    first, second, scores = read_sts("dev", tmp_path)
    assert first == ["A plane.", "One\rstray."] and second == ["An air plane.", "Two."]
    assert scores.tolist() == [4.0, 1.5]


@pytest.mark.parametrize("pairs", [0, 1])
def test_a_file_of_fewer_than_two_pairs_is_named(tmp_path, pairs):
    """A correlation needs two pairs: the error names the file, not pearson's arguments."""
    path = write_dev(tmp_path, GOOD * pairs + "\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {pairs} pair"):
        read_sts("dev", tmp_path)
