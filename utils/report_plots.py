"""The PNG plots of a test report: where the model fails, at a glance."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from utils.fileio import atomic_path  # noqa: E402

LABELLED_CLASSES = 60  # more classes than this: no per-class tick labels (they would overlap)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    """Rows normalised to the share of each true class (counts written in small classes)."""
    n = len(classes)
    size = min(4 + 0.28 * n, 24)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= LABELLED_CLASSES:
        ax.set_xticks(range(n), [_short(c) for c in classes], rotation=90, fontsize=7)
        ax.set_yticks(range(n), [_short(c) for c in classes], fontsize=7)
    if n <= 40:
        for i, j in zip(*np.nonzero(matrix)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(matrix.sum())} recordings)")
    _save(fig, path)


def plot_class_ap(per_class, path: Path) -> None:
    """Average precision per class, sorted, with the number of test recordings of each class."""
    table = per_class.dropna(subset=["average_precision"]).sort_values("average_precision")
    n = len(table)
    fig, ax = plt.subplots(figsize=(7, min(2 + 0.22 * n, 30)))
    bars = ax.barh(range(n), table["average_precision"], color="tab:blue")
    ax.bar_label(bars, labels=[f"n={s}" for s in table["support"]], fontsize=6, padding=2)
    if n <= LABELLED_CLASSES * 2:
        ax.set_yticks(range(n), [_short(c) for c in table["class"]], fontsize=7)
    ax.set_xlim(0, 1.1)
    ax.axvline(table["average_precision"].mean(), color="tab:red", linestyle="--",
               label=f"mean {table['average_precision'].mean():.3f}")
    ax.set_xlabel("average precision")
    ax.set_title("average precision per class")
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_pr_curves(targets: np.ndarray, scores: np.ndarray, classes: list[str], per_class,
                   path: Path, highlight: int = 3) -> None:
    """Micro-averaged curve in black; every class in grey; the best and worst classes named."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    scored = per_class.dropna(subset=["average_precision"]).sort_values("average_precision")
    named = set(scored["class"].head(highlight)) | set(scored["class"].tail(highlight))
    for c, name in enumerate(classes):
        if name not in set(scored["class"]):
            continue
        precision, recall, _ = precision_recall_curve(targets[:, c], scores[:, c])
        ap = float(scored.loc[scored["class"] == name, "average_precision"].iloc[0])
        if name in named:
            ax.plot(recall, precision, drawstyle="steps-post", linewidth=1.3, label=f"{_short(name, 22)} (AP {ap:.2f})")
        else:
            ax.plot(recall, precision, drawstyle="steps-post", color="grey", alpha=0.25, linewidth=0.8)
    precision, recall, _ = precision_recall_curve(targets.ravel(), scores.ravel())
    ax.plot(recall, precision, drawstyle="steps-post", color="black", linewidth=2.2, label="all classes (micro)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall curves")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_score_histograms(targets: np.ndarray, scores: np.ndarray, path: Path) -> None:
    """Pooled scores of true labels against those of the other classes: the overlap is where a
    threshold must choose between missed calls and false alarms."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(min(0.0, scores.min()), max(1.0, scores.max()), 41)
    truth = targets > 0
    ax.hist(scores[~truth], bins=bins, alpha=0.6, label=f"other classes (n={int((~truth).sum())})",
            color="tab:grey", density=True)
    ax.hist(scores[truth], bins=bins, alpha=0.6, label=f"true labels (n={int(truth.sum())})",
            color="tab:green", density=True)
    ax.set_yscale("log")
    ax.set_xlabel("pooled score")
    ax.set_ylabel("density (log)")
    ax.set_title("score distribution: true labels vs other classes")
    ax.legend()
    _save(fig, path)


def plot_report(report, out_dir: str | Path) -> list[Path]:
    """All report plots into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    scores = report.scored
    paths = [out_dir / name for name in ("confusion_matrix.png", "class_ap.png", "pr_curves.png",
                                         "score_histogram.png")]
    plot_confusion(report.confusion, report.classes, paths[0])
    plot_class_ap(report.per_class, paths[1])
    plot_pr_curves(report.targets, scores, report.classes, report.per_class, paths[2])
    plot_score_histograms(report.targets, scores, paths[3])
    return paths
