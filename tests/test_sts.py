"""Rank correlation written from its definition, checked against scipy; the STS reader."""

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
