"""Evaluation metrics, written from their definitions.

Sentence classification: accuracy, macro-F1 (the unweighted mean of per-class F1, so a
rare class counts as much as a common one) and the confusion matrix.

Token classification (entity recognition): entity-level, exact-span scores as the CoNLL
`conlleval` script computes them. Tags are turned into spans (type, start, end); a
predicted span is correct only if the type and both ends match a gold span exactly.
Micro precision = correct / predicted spans, recall = correct / gold spans.
"""

from collections import Counter

import numpy as np


def accuracy(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError("accuracy needs two non-empty sequences of the same length")
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_labels):
    """(num_labels, num_labels): rows are the true label, columns the predicted one."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def f1(correct, predicted, gold):
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def macro_f1(y_true, y_pred):
    """Mean F1 over the labels that occur in y_true or y_pred."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for label in np.union1d(y_true, y_pred):
        correct = int(((y_true == label) & (y_pred == label)).sum())
        scores.append(f1(correct, int((y_pred == label).sum()), int((y_true == label).sum()))[2])
    return float(np.mean(scores))


def entity_spans(tags):
    """BIO tags -> set of (type, start, end) spans, end exclusive, with conlleval's rules:
    a span starts at B-X, or at I-X that does not continue a span of type X (so IOB1 and
    malformed predictions are read the way conlleval reads them).

    >>> sorted(entity_spans(["B-Task", "I-Task", "O", "I-Method", "B-Method", "I-Method"]))
    [('Method', 3, 4), ('Method', 4, 6), ('Task', 0, 2)]
    """
    spans, current_type, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and kind == current_type
        if current_type is not None and not continues:
            spans.add((current_type, start, i))
            current_type = None
        if prefix in ("B", "I") and not continues:
            current_type, start = kind, i
    return spans


def span_scores(gold_sequences, predicted_sequences):
    """Micro precision/recall/F1 over all sentences, plus per-type F1.

    -> {"precision", "recall", "f1", "per_type": {type: {"precision", "recall", "f1", "support"}}}
    """
    if len(gold_sequences) != len(predicted_sequences):
        raise ValueError(f"{len(gold_sequences)} gold sentences but {len(predicted_sequences)} predicted")
    correct, predicted, gold = Counter(), Counter(), Counter()
    for sentence, (gold_tags, predicted_tags) in enumerate(zip(gold_sequences, predicted_sequences)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {sentence}: {len(gold_tags)} gold tags but {len(predicted_tags)} predicted; "
                             "every gold word must get a prediction")
        gold_spans, predicted_spans = entity_spans(gold_tags), entity_spans(predicted_tags)
        gold.update(t for t, _, _ in gold_spans)
        predicted.update(t for t, _, _ in predicted_spans)
        correct.update(t for t, _, _ in gold_spans & predicted_spans)
    precision, recall, f = f1(sum(correct.values()), sum(predicted.values()), sum(gold.values()))
    per_type = {}
    for kind in sorted(set(gold) | set(predicted)):
        p, r, ff = f1(correct[kind], predicted[kind], gold[kind])
        per_type[kind] = {"precision": p, "recall": r, "f1": ff, "support": gold[kind]}
    return {"precision": precision, "recall": recall, "f1": f, "per_type": per_type}
