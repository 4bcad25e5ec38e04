"""Explorers: controls over figures that work in the built HTML book, with no Python running.

Every combination of control values is drawn once (from cached runs) and stored as a PNG; the
figures sit in nested ``Stack`` widgets, one level per control, and each control's index is
linked to its level with ``jslink``. The links run in the browser, so moving a slider changes the
figure in Jupyter, in Colab and in the static HTML alike (the widget state is saved with the page).
``Stack`` is new in ipywidgets 8; under ipywidgets 7 (Colab ships 7.7) each level is a ``Tab``
instead, which shows the same figure with a row of tab titles above it.
"""
from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from .plots import export_paused


def figure_png(figure, dpi: float | None = None) -> bytes:
    """A matplotlib figure as PNG bytes, at the figure's own dpi unless given; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi or figure.dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _control(options: list, start: Any, label: str) -> widgets.Widget:
    common = dict(options=options, value=start, description=label, style={"description_width": "initial"})
    if isinstance(options[0], str):
        return widgets.Dropdown(**common)
    return widgets.SelectionSlider(**common, continuous_update=True)


def _stack(children: list[widgets.Widget], selected: int) -> widgets.Widget:
    """A container showing one child at a time, by ``selected_index``: Stack, or Tab before ipywidgets 8."""
    kind = getattr(widgets, "Stack", None) or widgets.Tab
    stack = kind(children)
    stack.selected_index = selected
    return stack


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
    boxes = {n: _control(options[n], value.get(n, options[n][0]), labels.get(n, n)) for n in names}
    with export_paused():  # its frames are not figures of the chapter
        pngs = {combo: figure_png(draw(**dict(zip(names, combo)))) for combo in itertools.product(*options.values())}

    def level(depth: int, chosen: tuple) -> widgets.Widget:
        if depth == len(names):
            return widgets.Image(value=pngs[chosen], format="png", layout=widgets.Layout(max_width="100%"))
        name = names[depth]
        stack = _stack([level(depth + 1, chosen + (v,)) for v in options[name]], boxes[name].index)
        if not hasattr(widgets, "Stack"):  # a Tab: name each page after its value
            for i, v in enumerate(options[name]):
                stack.set_title(i, f"{labels.get(name, name)} = {v}")
        widgets.jslink((boxes[name], "index"), (stack, "selected_index"))
        return stack

    return widgets.VBox([widgets.HBox(list(boxes.values())), level(0, ())])


def trainer(
    fields: dict[str, Any],
    train_and_draw: Callable[..., Any],
    labels: dict[str, str] | None = None,
) -> widgets.VBox:
    """Train any configuration from a live kernel: one input per field, a Train button, the figure.

    A number gives a number box, a tuple of strings a drop-down. Progress bars and errors (a
    ``ValueError`` naming the bad input) appear under the button. Needs a running kernel, so the
    chapters hide this widget's output in the HTML book.
    """
    labels = labels or {}
    if not fields:
        raise ValueError("fields must name at least one input; got {}")
    inputs = {}
    for name, spec in fields.items():
        common = dict(description=labels.get(name, name), style={"description_width": "initial"})
        if isinstance(spec, tuple) and spec and all(isinstance(v, str) for v in spec):
            inputs[name] = widgets.Dropdown(options=spec, value=spec[0], **common)
        elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
            inputs[name] = widgets.FloatText(value=float(spec), **common)
        else:
            raise ValueError(f"fields[{name!r}] must be a number or a tuple of strings; got {spec!r}")
    button = widgets.Button(description="Train", button_style="primary", icon="play")
    out = widgets.Output()

    def run(_=None):
        with out:
            out.clear_output(wait=True)
            try:
                figure = train_and_draw(**{name: box.value for name, box in inputs.items()})
            except ValueError as error:
                print(f"Cannot train this configuration: {error}")
                return
            display(figure)
            plt.close(figure)

    button.on_click(run)
    return widgets.VBox([widgets.HBox([*inputs.values(), button]), out])
