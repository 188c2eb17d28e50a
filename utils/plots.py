"""Plots people look at: training curves (more come with the evaluation reports)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from utils.fileio import atomic_path  # noqa: E402


def plot_training_curves(csv_log: str | Path, png: str | Path, title: str = "") -> None:
    """Loss, recording-level validation metrics and learning rate per epoch, from train_log.csv."""
    log = pd.read_csv(csv_log)
    if log.empty:
        return
    epochs = log["epoch"] + 1
    panels = [("loss", ["loss", "val_loss"]), ("validation recordings", ["val_rec_mlrap", "val_rec_top1"]),
              ("learning rate", ["learning_rate"])]
    panels = [(name, [c for c in cols if c in log]) for name, cols in panels]
    panels = [(name, cols) for name, cols in panels if cols]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (name, columns) in zip(axes[0], panels):
        for column in columns:
            ax.plot(epochs, log[column], marker="o", markersize=3, label=column)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(columns) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
