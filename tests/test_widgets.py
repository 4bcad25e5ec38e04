import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from genlib.widgets import explorer  # noqa: E402


def test_explorer_draws_the_default_then_redraws_on_change():
    calls = []

    def draw(wd, loss):
        calls.append((wd, loss))
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, wd])
        return fig

    box = explorer({"wd": (0.0, 1.0), "loss": ("cross_entropy", "stablemax")}, draw, value={"wd": 1.0})
    assert calls == [(1.0, "cross_entropy")]
    slider, dropdown = box.children[0].children
    dropdown.value = "stablemax"
    assert calls[-1] == (1.0, "stablemax")


@pytest.mark.parametrize("controls, value, name", [
    ({"wd": ()}, {}, "wd"),
    ({"wd": (0.0, 1.0)}, {"wd": 2.0}, "wd"),
])
def test_explorer_bad_arguments(controls, value, name):
    with pytest.raises(ValueError, match=name):
        explorer(controls, lambda **kw: plt.figure(), value=value)
