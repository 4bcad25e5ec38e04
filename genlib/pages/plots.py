"""Figures in one style: curves with a seed band (median line, min-max shade), log-scaled steps."""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from ..core.history import History

LABELS = {
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
    "train_loss": "train loss",
    "test_loss": "test loss",
    "weight_norm": "parameter norm",
    "collapse": "share of examples with zero loss",
    "fourier": "Fourier concentration",
    "corrupted_acc": "fit of corrupted labels",
    "clean_train_acc": "clean train accuracy",
}

# The HTML book's text column is 804 px wide at a 1,100 px window; at figure.dpi 110 a figure up to
# COLUMN_INCHES wide shows at its own size, and 10.5 pt tick labels are the body text's 16 px.
COLUMN_INCHES = 7.2

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10.5,
    "axes.titlesize": "medium",
}


def use_style() -> None:
    """Apply the book's matplotlib style."""
    plt.rcParams.update(STYLE)


def panels(n: int, height: float = 3.0, columns: int = 2, **subplots_kw):
    """A figure of ``n`` axes that fits the text column: at most ``columns`` per row, rows of ``height``
    inches. Returns ``(fig, axes)`` with ``axes`` a list of ``n`` (unused grid cells are removed)."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n (the number of panels) must be an integer >= 1; got {n!r}")
    if not (isinstance(columns, int) and columns >= 1):
        raise ValueError(f"columns must be an integer >= 1; got {columns!r}")
    cols = min(n, columns)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(COLUMN_INCHES, height * rows), squeeze=False, **subplots_kw)
    axes = list(grid.flat)
    for unused in axes[n:]:
        unused.remove()
    return fig, axes[:n]


# Figures for slides: with $GENLIB_FIGURES set to a folder, every figure a chapter lays out with tidy()
# is also saved there as <chapter>/figure-NN.svg and .png (explorer frames are not).
_export = {"chapter": "figures", "count": 0, "paused": False}


def figures_of(chapter: str) -> None:
    """Name the figures exported from now on after ``chapter`` and number them from 1 (Claims calls it)."""
    _export.update(chapter=chapter, count=0)


@contextmanager
def export_paused() -> Iterator[None]:
    """Export no figure inside this block (an explorer draws dozens of frames)."""
    before, _export["paused"] = _export["paused"], True
    try:
        yield
    finally:
        _export["paused"] = before


def _export_figure(fig) -> None:
    folder = os.environ.get("GENLIB_FIGURES")
    if not folder or _export["paused"]:
        return
    _export["count"] += 1
    path = Path(folder) / _export["chapter"] / f"figure-{_export['count']:02d}"
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".svg", ".png"):
        fig.savefig(path.with_suffix(suffix), bbox_inches="tight", dpi=200 if suffix == ".png" else None)


def tidy(fig) -> None:
    """Lay a figure out for the text column: ``tight_layout``, then wrap every title and axis label
    that is longer than its axes (or the suptitle, than the figure) onto more lines, then lay out
    again. Without it a long title runs into its neighbour, or widens the saved image past the column.
    With ``$GENLIB_FIGURES`` set, the figure is also saved there for slides."""
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for title in (ax.title, ax._left_title, ax._right_title):
            _wrap(title, box.width, renderer)
        _wrap(ax.xaxis.label, box.width, renderer)
        _wrap(ax.yaxis.label, box.height, renderer, along=lambda extent: extent.height)
    if fig._suptitle is not None:
        _wrap(fig._suptitle, fig.bbox.width, renderer)
    fig.tight_layout()
    _export_figure(fig)


def _wrap(text, room: float, renderer, along=lambda extent: extent.width) -> None:
    """Break ``text`` at spaces so that each line's extent ``along`` its direction fits in ``room`` px."""
    words = text.get_text().replace("\n", " ").split()
    if not words or along(text.get_window_extent(renderer)) <= room:
        return
    lines = [words[0]]
    for word in words[1:]:
        text.set_text(f"{lines[-1]} {word}")
        if along(text.get_window_extent(renderer)) <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    text.set_text("\n".join(lines))


def band(ax, steps: np.ndarray, values: np.ndarray, label: str | None = None, color=None, **kw):
    """Median over members (columns) as a line, min to max as a shaded band. NaN entries (a diverged
    member, a value cut off the plot) are left out; where every member is NaN there is a gap."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        middle, low, high = np.nanmedian(values, axis=1), np.nanmin(values, 1), np.nanmax(values, 1)
    (line,) = ax.plot(steps, middle, label=label, color=color, **kw)
    if values.shape[1] > 1:
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    return line


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Label a log-scaled axis at 1, 2 and 5 times powers of ten, written as plain numbers (0.5, 1,
    2) rather than as powers (5 x 10^-1); for axes spanning a few decades at most."""
    target = {"x": ax.xaxis, "y": ax.yaxis}[axis]
    target.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(ticker.FormatStrFormatter("%g"))
    target.set_minor_formatter(ticker.NullFormatter())


def plot_metric(ax, history: History, metric: str, label: str | None = None, color=None, log_steps: bool = True, **kw):
    """One metric of a History over training steps, as a seed band."""
    steps = history.steps
    keep = steps > 0 if log_steps else slice(None)
    line = band(ax, steps[keep], history[metric][keep], label=label, color=color, **kw)
    if log_steps:
        ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(LABELS.get(metric, metric))
    return line


def train_test_figure(
    runs: dict[str, History],
    metrics: Sequence[str] = ("train_acc", "test_acc"),
    title: str | None = None,
    ax=None,
):
    """Train (dashed) and test (solid) accuracy bands for several labelled runs on one axis."""
    use_style()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(runs.items()):
        for metric, style in zip(metrics, ["--", "-", ":", "-."]):
            suffix = LABELS.get(metric, metric).split(" ")[0]
            plot_metric(ax, history, metric, label=f"{label}: {suffix}", color=colors[i % len(colors)], ls=style)
    ax.set_ylabel("accuracy" if all(m.endswith("acc") for m in metrics) else ax.get_ylabel())
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title)
    return fig


def heatmap(ax, values: np.ndarray, row_labels, col_labels, fmt: str = "{:.0f}", cmap="viridis", missing: str = "none"):
    """An annotated grid of values (NaN shown as ``missing``) with a colour bar."""
    values = np.asarray(values, dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", origin="lower")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.grid(False)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, missing if np.isnan(v) else fmt.format(v), ha="center", va="center", fontsize=9,
                color="black" if np.isnan(v) else "white")
    ax.figure.colorbar(image, ax=ax)
    return image
