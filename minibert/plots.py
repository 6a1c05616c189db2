"""Pictures a reader would rather look at than read: training curves, 2-D maps of
sentence embeddings, heat maps. matplotlib's Agg backend, so it works without a screen
(except inside Jupyter, whose inline backend shows the figures)."""

import csv
import sys

import numpy as np


def pyplot():
    """matplotlib.pyplot, imported at the first picture rather than with this module: it takes
    most of a second, which every command (its --help too) and every process of a torchrun
    would otherwise spend at its start."""
    import matplotlib
    if "ipykernel" not in sys.modules:  # scripts draw into files, screen or not; notebooks keep inline plots
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_log(csv_path):
    """A training log CSV -> {column: numpy array}, empty cells as NaN."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else []
    return {c: np.array([float(r[c]) if r[c] not in ("", None) else np.nan for r in rows]) for c in columns}


def plot_training_log(csv_path, png_path, x="step", panels=(("train_loss", "eval_loss"), ("eval_accuracy",)),
                      title=None):
    """One panel per group of columns, against `x`. Columns missing from the log are skipped."""
    log = read_log(csv_path)
    panels = [[c for c in group if c in log and np.isfinite(log[c]).any()] for group in panels]
    panels = [group for group in panels if group]
    if not panels or x not in log:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, group in zip(axes[0], panels):
        for column in group:
            keep = np.isfinite(log[column])
            axis.plot(log[x][keep], log[column][keep], marker="." if keep.sum() < 50 else None, label=column)
        axis.set_xlabel(x)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def pca_2d(vectors):
    """Project rows onto their first two principal components (SVD of the centred data)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T  # (N, 2)


def plot_projection(vectors, groups, labels, png_path, title="sentence embeddings, PCA to 2-D"):
    """Scatter of the 2-D PCA of `vectors`, coloured by `groups`, each point annotated."""
    points = pca_2d(np.asarray(vectors, dtype=np.float64))
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(8, 6))
    for group in dict.fromkeys(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        axis.scatter(points[rows, 0], points[rows, 1], label=group, s=40)
    for (px, py), label in zip(points, labels):
        axis.annotate(label if len(label) < 40 else label[:37] + "...", (px, py), fontsize=7,
                      xytext=(3, 3), textcoords="offset points")
    axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def plot_heatmap(matrix, row_labels, column_labels, png_path, title=None, annotate=True):
    """A matrix as coloured cells with its values written in: attention weights over tokens,
    or each task's mean gate weight per expert. png_path=None: the figure is returned, to show
    in a notebook."""
    matrix = np.asarray(matrix, dtype=np.float64)
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(1.0 + 0.6 * matrix.shape[1], 1.0 + 0.5 * matrix.shape[0]))
    image = axis.imshow(matrix, cmap="viridis", aspect="auto")
    axis.set_xticks(range(matrix.shape[1]), column_labels, rotation=45, ha="right")
    axis.set_yticks(range(matrix.shape[0]), row_labels)
    if annotate:
        middle = (matrix.max() + matrix.min()) / 2
        for (i, j), value in np.ndenumerate(matrix):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="black" if value > middle else "white")
    fig.colorbar(image, ax=axis)
    if title:
        axis.set_title(title)
    fig.tight_layout()
    if png_path is None:
        return fig
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
