"""The run's plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"model": "tab:blue", "most-popular": "tab:orange", "random": "tab:gray"}


def training_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss per epoch, and the per-epoch monitoring metrics if there are any."""
    monitors = sorted(k for k in history if k.startswith("monitor/"))
    fig, axes = plt.subplots(1, 2 if monitors else 1, figsize=(11 if monitors else 6, 4), squeeze=False)
    loss = history.get("mean_loss") or history.get("loss") or []
    epochs = np.arange(1, len(loss) + 1)
    axes[0][0].plot(epochs, loss, marker="o")
    axes[0][0].set(xlabel="epoch", ylabel="mean in-batch softmax loss", title="training loss")
    if monitors:
        for k in monitors:
            axes[0][1].plot(np.arange(1, len(history[k]) + 1), history[k], marker="o", label=k.split("/", 1)[1])
        axes[0][1].set(xlabel="epoch", title="test sample, per epoch (monitoring only)")
        axes[0][1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def recall_curve(curves: dict, path: Path) -> Path:
    """recall@K against K (log scale) for the model and the baselines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, values in curves.items():
        if method == "k":
            continue
        ax.plot(curves["k"], values, marker="o", label=method, color=COLORS.get(method))
    ax.set_xscale("log")
    ax.set(xlabel="K", ylabel="recall@K", title="full-catalogue recall@K (test)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def popularity_long_tail(train_counts: np.ndarray, path: Path) -> Path:
    """Training positives per item, items sorted by popularity (log-log)."""
    counts = np.sort(np.asarray(train_counts)[1:])[::-1]
    counts = counts[counts > 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(np.arange(1, counts.size + 1), counts)
    if counts.size:
        head = max(1, int(0.2 * counts.size))
        share = counts[:head].sum() / counts.sum()
        ax.set_title(f"item popularity: top 20% of items hold {share:.0%} of positives")
    ax.set(xlabel="item rank", ylabel="training positives")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
