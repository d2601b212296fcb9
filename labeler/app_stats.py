"""The Stats tab's handler and its plot (a mixin of `labeler.app.ReviewUI`)."""
from __future__ import annotations

from labeler import stats, taxonomy, views


class StatsHandlers:
    """`stats`: everything the tab shows, from `labeler.stats.summary`."""

    def stats(self) -> tuple:
        st = stats.summary(self.ws, self.settings)
        per_cat = st["acceptance"]["per_category"]
        return (views.stats_cards_html(st["progress"], st["acceptance"], st["agreement"], st["model"]),
                st["rates"], per_cat, confusion_figure(st["confusion"], taxonomy.of(self.ws)),
                views.metrics_html(st["model"]))


def confusion_figure(matrix, tax=None):
    """Model top-1 (rows) vs reviewer's category (columns), only categories that occur; the
    matrix (`labeler.stats.confusion`) is indexed by key, named in `tax` (default: Rakuten's)."""
    tax = tax or taxonomy.default()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keep = [c for c in matrix.index if matrix.loc[c].sum() > 0 or matrix[c].sum() > 0]
    fig, ax = plt.subplots(figsize=(7.5, 6.2), dpi=100)
    if not keep:
        ax.text(0.5, 0.5, "no reviewed products yet", ha="center", va="center", fontsize=13)
        ax.axis("off")
        return fig
    m = matrix.loc[keep, keep].to_numpy()
    ax.imshow(m, cmap="Blues")
    labels = [f"{tax.name(c)[:22]} {tax.code(c)}" for c in keep]
    ax.set_xticks(range(len(keep)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), labels, fontsize=8)
    for i in range(len(keep)):
        for j in range(len(keep)):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("reviewer's category")
    ax.set_ylabel("model top-1 shown")
    ax.set_title("Model vs reviewer")
    fig.tight_layout()
    return fig
