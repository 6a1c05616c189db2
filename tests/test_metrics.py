"""Our metrics against scikit-learn and seqeval (reference oracles, test extra only)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minibert.metrics import accuracy, confusion_matrix, entity_spans, macro_f1, span_scores

TAGS = ["O", "B-Task", "I-Task", "B-Method", "I-Method", "I-Metric"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=80))
def test_classification_metrics_match_sklearn(pairs):
    from sklearn import metrics
    y_true, y_pred = [p[0] for p in pairs], [p[1] for p in pairs]
    assert accuracy(y_true, y_pred) == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred) == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert np.array_equal(confusion_matrix(y_true, y_pred, 5), metrics.confusion_matrix(y_true, y_pred, labels=range(5)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(TAGS), st.sampled_from(TAGS)), min_size=1, max_size=12),
                min_size=1, max_size=6))
def test_span_scores_match_seqeval_default_mode(sentences):
    """seqeval's default mode follows conlleval, malformed sequences (I- after O) included."""
    from seqeval import metrics
    gold = [[g for g, _ in s] for s in sentences]
    predicted = [[p for _, p in s] for s in sentences]
    ours = span_scores(gold, predicted)
    assert ours["precision"] == pytest.approx(metrics.precision_score(gold, predicted, zero_division=0))
    assert ours["recall"] == pytest.approx(metrics.recall_score(gold, predicted, zero_division=0))
    assert ours["f1"] == pytest.approx(metrics.f1_score(gold, predicted, zero_division=0))
    report = metrics.classification_report(gold, predicted, output_dict=True, zero_division=0)
    for kind, scores in ours["per_type"].items():
        if scores["support"]:
            assert scores["f1"] == pytest.approx(report[kind]["f1-score"])


def test_entity_spans_by_hand():
    assert entity_spans(["O", "I-Task", "I-Task", "B-Task", "O", "I-Method"]) == \
        {("Task", 1, 3), ("Task", 3, 4), ("Method", 5, 6)}
    assert entity_spans([]) == set()


def test_every_gold_word_needs_a_prediction():
    with pytest.raises(ValueError, match="every gold word"):
        span_scores([["O", "B-Task"]], [["O"]])
