"""The figures of notebooks/01_explore.py, drawn from its queries' pandas results, and 02_train's ranker curves.

Each function returns a matplotlib Figure built without pyplot: a kernel then keeps no
global figure state and needs no display backend; `lakerec.notebook.show_figure` renders it.

`lakerec.retrieval.plots` draws the training run's figures (curves, recall@K, the popularity of
the training positives) to PNG files for MLflow; 02_train shows those files as they are. Its
`popularity_long_tail` is close to `plot_long_tail` here but reads other data: positives per
item in the filtered vocabulary, against impressions per item in `samples` before any filter
(plus the cumulative share), so the two are not one function.
"""

from __future__ import annotations


def _figure(width: float = 9, height: float = 4):
    """An empty Figure of the given size in inches, not registered with pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_ctr_by_position(rows):
    """CTR per position (bars) and impressions per position (line), one panel per split.

    Args:
        rows: pandas frame of the "CTR and CVR by position" query (split, position,
            impressions, ctr, ...).

    Returns:
        The matplotlib Figure.
    """
    splits = sorted(rows["split"].unique(), key=lambda s: (s != "train", s))
    fig = _figure(5 * max(1, len(splits)), 4)
    for i, split in enumerate(splits, start=1):
        part = rows[rows["split"] == split].dropna(subset=["position"]).sort_values("position")
        # Positions are feature ids of field 301, in display order: label them as they are.
        labels = part["position"].astype("int64").astype(str).tolist()
        ax = fig.add_subplot(1, len(splits), i)
        ax.bar(labels, part["ctr"].astype(float), color="tab:blue")
        ax.set(xlabel="position (feature id of field 301)", ylabel="CTR", title=f"CTR by position ({split})")
        ax.tick_params(axis="x", labelrotation=30)
        twin = ax.twinx()
        twin.plot(labels, part["impressions"].astype(float), color="tab:orange", marker="o")
        twin.set_ylabel("impressions", color="tab:orange")
    fig.tight_layout()
    return fig


def plot_long_tail(curve):
    """Impressions per item by popularity rank (log-log) and the cumulative share of impressions.

    Args:
        curve: pandas frame of `lakerec.notebook_data.long_tail` (item_rank, impressions,
            share_of_items, share_of_impressions).

    Returns:
        The matplotlib Figure.
    """
    fig = _figure(10, 4)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.loglog(curve["item_rank"], curve["impressions"], marker=".", linestyle="-")
    left.set(xlabel="item rank", ylabel="train impressions", title="item popularity (log-log)")
    left.grid(True, alpha=0.3)
    right.plot(curve["share_of_items"], curve["share_of_impressions"])
    right.plot([0, 1], [0, 1], color="gray", linestyle=":", label="equal exposure")
    top = curve[curve["share_of_items"] <= 0.2]
    if len(top):
        share = float(top["share_of_impressions"].iloc[-1])
        right.set_title(f"the top 20% of items get {share:.0%} of the impressions")
    right.set(xlabel="share of items (most shown first)", ylabel="share of impressions")
    right.legend()
    fig.tight_layout()
    return fig


def plot_field_coverage(rows):
    """Share of impressions carrying each field, train and test side by side.

    Args:
        rows: pandas frame of the "Field coverage" query (split, field, coverage).

    Returns:
        The matplotlib Figure.
    """
    table = rows.pivot(index="field", columns="split", values="coverage").astype(float)
    table = table[sorted(table.columns, key=lambda s: (s != "train", s))]
    order = list(dict.fromkeys(rows["field"]))  # the query's field order
    table = table.reindex(order[::-1])
    fig = _figure(8, 0.3 * len(table) + 1.5)
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / max(1, len(table.columns))
    for i, split in enumerate(table.columns):
        ax.barh([y + i * height for y in range(len(table))], table[split], height=height, label=split)
    ax.set_yticks([y + height * (len(table.columns) - 1) / 2 for y in range(len(table))], table.index)
    ax.set(xlabel="share of impressions with the field", xlim=(0, 1.05), title="field coverage")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_ranker_curves(curves, validation: str = "validation/"):
    """The ranker's training losses and validation AUCs by epoch, side by side.

    Args:
        curves: pandas frame of `lakerec.notebook_data.epoch_metrics` (epoch and one column per metric).
        validation: the prefix of the validation columns: their AUCs are drawn on the right, every
            other column (the training losses) on the left.

    Returns:
        The matplotlib Figure.
    """
    fig = _figure(10, 4)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name in (c for c in curves if c != "epoch" and not c.startswith(validation)):
        left.plot(curves["epoch"], curves[name], marker="o", label=name)
    left.set(xlabel="epoch", ylabel="mean training loss", title="ranker training loss")
    for name in (c for c in curves if c.startswith(validation) and c.endswith("_auc")):
        right.plot(curves["epoch"], curves[name], marker="o", label=name[len(validation):])
    right.set(xlabel="epoch", ylabel="AUC", title="validation slice")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return fig
