"""Evaluation plots: confusion matrix, ROC curve, reliability diagram (PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np


def _axes(size: tuple[float, float]):
    matplotlib.use("Agg")

    return plt.subplots(figsize=size)


def _save(fig, ax, title: str, path: Path) -> Path:
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(table: dict, title: str, path: Path) -> Path:
    matrix = np.asarray(table["matrix"])
    fig, ax = _axes((3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks([0, 1], table["labels"])
    ax.set_yticks([0, 1], table["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(fig, ax, title, path)


def plot_roc(points: dict, auc: float, title: str, path: Path) -> Path:
    fig, ax = _axes((3.6, 3.4))
    ax.plot(points["fpr"], points["tpr"], label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.legend(loc="lower right")
    return _save(fig, ax, title, path)


def plot_reliability(cal: dict, title: str, path: Path) -> Path:
    fig, ax = _axes((3.6, 3.4))
    xs = [r["mean_probability"] for r in cal["bins"]]
    ys = [r["observed_rate"] for r in cal["bins"]]
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8, label="perfect")
    ax.plot(xs, ys, "o-", label=f"ECE {cal['ece']:.3f}")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.legend(loc="upper left")
    return _save(fig, ax, title, path)
