"""Explorers: controls over figures that work in the built HTML book, with no Python running.

Every combination of control values is drawn once (from cached runs) and stored as a PNG; the
figures sit in nested ``Stack`` widgets, one level per control, and each control's index is
linked to its level with ``jslink``. The links run in the browser, so moving a slider changes the
figure in Jupyter, in Colab and in the static HTML alike (the widget state is saved with the page).
"""
from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt


def figure_png(figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _control(name: str, options: list, start: Any, label: str) -> widgets.Widget:
    common = dict(options=options, value=start, description=label, style={"description_width": "initial"})
    if isinstance(options[0], str):
        return widgets.Dropdown(**common)
    return widgets.SelectionSlider(**common, continuous_update=True)


def explorer(
    controls: dict[str, Sequence[Any]],
    draw: Callable[..., Any],
    value: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> widgets.VBox:
    """One control per entry of ``controls``; ``draw(**values)`` returns the figure for a choice.

    All combinations are drawn up front, so keep the grid small (tens of figures).
    """
    value, labels = value or {}, labels or {}
    names = list(controls)
    options = {}
    for name in names:
        options[name] = list(controls[name])
        if not options[name]:
            raise ValueError(f"controls[{name!r}] must list at least one value; got []")
        start = value.get(name, options[name][0])
        if start not in options[name]:
            raise ValueError(f"value[{name!r}] must be one of {options[name]}; got {start!r}")
    boxes = {n: _control(n, options[n], value.get(n, options[n][0]), labels.get(n, n)) for n in names}
    pngs = {combo: figure_png(draw(**dict(zip(names, combo)))) for combo in itertools.product(*options.values())}

    def level(depth: int, chosen: tuple) -> widgets.Widget:
        if depth == len(names):
            return widgets.Image(value=pngs[chosen], format="png", layout=widgets.Layout(max_width="100%"))
        name = names[depth]
        stack = widgets.Stack([level(depth + 1, chosen + (v,)) for v in options[name]],
                              selected_index=boxes[name].index)
        widgets.jslink((boxes[name], "index"), (stack, "selected_index"))
        return stack

    return widgets.VBox([widgets.HBox(list(boxes.values())), level(0, ())])
