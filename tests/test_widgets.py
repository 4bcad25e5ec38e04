import matplotlib

matplotlib.use("Agg")
import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from genlib.pages.widgets import explorer  # noqa: E402


def draw(wd, loss):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, wd])
    ax.set_title(loss)
    return fig


def test_explorer_draws_every_combination_and_links_controls_to_stacks():
    calls = []

    def counting(**kw):
        calls.append(kw)
        return draw(**kw)

    box = explorer({"wd": (0.0, 1.0, 2.0), "loss": ("ce", "stablemax")}, counting, value={"wd": 1.0})
    assert len(calls) == 6, "one figure per combination"
    slider, dropdown = box.children[0].children
    outer = box.children[1]
    assert isinstance(outer, widgets.Stack) and outer.selected_index == 1 == slider.index
    inner = outer.children[0]
    assert isinstance(inner, widgets.Stack) and len(inner.children) == 2
    assert isinstance(inner.children[0], widgets.Image) and inner.children[0].value[:4] == b"\x89PNG"
    images = {id(s.children[j]) for s in outer.children for j in range(2)}
    assert len(images) == 6


def test_explorer_falls_back_to_tabs_where_ipywidgets_has_no_stack(monkeypatch):
    # ipywidgets 7 (Colab's) has no Stack: each level is a Tab, still linked to its control
    import genlib.pages.widgets as ours

    monkeypatch.delattr(ours.widgets, "Stack")
    box = explorer({"wd": (0.0, 1.0), "loss": ("ce", "stablemax")}, draw, value={"wd": 1.0}, labels={"wd": "decay"})
    slider = box.children[0].children[0]
    outer = box.children[1]
    assert isinstance(outer, widgets.Tab) and outer.selected_index == 1 == slider.index
    assert outer.get_title(1) == "decay = 1.0" and isinstance(outer.children[0], widgets.Tab)
    links = [w for w in widgets.Widget.widgets.values() if type(w).__name__ == "Link"]  # jslink's, run in the browser
    assert any(link.source == (slider, "index") and link.target == (outer, "selected_index") for link in links)


@pytest.mark.parametrize("controls, value, name", [
    ({"wd": ()}, {}, "wd"),
    ({"wd": (0.0, 1.0)}, {"wd": 2.0}, "wd"),
])
def test_explorer_bad_arguments(controls, value, name):
    with pytest.raises(ValueError, match=name):
        explorer(controls, lambda **kw: plt.figure(), value=value)


def test_trainer_trains_on_click_and_reports_bad_input(capsys):
    from genlib.pages.widgets import trainer

    calls = []

    def train_and_draw(weight_decay, loss):
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        calls.append((weight_decay, loss))
        return draw(weight_decay, loss)

    box = trainer({"weight_decay": 0.7, "loss": ("cross_entropy", "stablemax")}, train_and_draw)
    wd, loss, button = box.children[0].children
    loss.value = "stablemax"
    button.click()
    assert calls == [(0.7, "stablemax")]
    wd.value = -1.0
    button.click()
    assert calls == [(0.7, "stablemax")], "a bad value trains nothing"
    assert "Cannot train this configuration: weight_decay must be >= 0" in capsys.readouterr().out


def test_trainer_bad_fields():
    from genlib.pages.widgets import trainer

    with pytest.raises(ValueError, match="fields"):
        trainer({"wd": [1, 2]}, lambda **kw: None)
