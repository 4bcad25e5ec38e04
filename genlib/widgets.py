"""Explorers: controls over a figure that a function draws for the chosen values.

In Jupyter and Colab, moving a control calls the draw function again (which trains, or reads
the cache); in the built HTML the figure drawn for the default values is stored with the page.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display


def explorer(
    controls: dict[str, Sequence[Any]],
    draw: Callable[..., Any],
    value: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> widgets.VBox:
    """One selection control per entry of ``controls``; ``draw(**values)`` returns a figure."""
    value = value or {}
    labels = labels or {}
    boxes = {}
    for name, options in controls.items():
        options = list(options)
        if not options:
            raise ValueError(f"controls[{name!r}] must list at least one value; got []")
        start = value.get(name, options[0])
        if start not in options:
            raise ValueError(f"value[{name!r}] must be one of {options}; got {start!r}")
        common = dict(options=options, value=start, description=labels.get(name, name),
                      style={"description_width": "initial"})
        if isinstance(options[0], str):
            boxes[name] = widgets.Dropdown(**common)
        else:  # redraw when the slider is released, not at every value it passes
            boxes[name] = widgets.SelectionSlider(**common, continuous_update=False)
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            figure = draw(**{name: box.value for name, box in boxes.items()})
            display(figure)
            plt.close(figure)  # shown once, inside the widget

    for box in boxes.values():
        box.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(boxes.values())), out])
