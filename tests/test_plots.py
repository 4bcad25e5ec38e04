"""genlib.pages.plots: figures that fit the book's text column."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from genlib.pages.plots import COLUMN_INCHES, STYLE, panels, tidy  # noqa: E402
from genlib.pages.widgets import figure_png  # noqa: E402


@pytest.mark.parametrize("n, rows, cols", [(1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 2, 2), (5, 3, 2)])
def test_panels_fill_rows_of_two_at_the_column_width(n, rows, cols):
    fig, axes = panels(n, height=2.5)
    assert len(axes) == n == len(fig.axes), "unused grid cells are removed"
    assert fig.get_size_inches().tolist() == [COLUMN_INCHES, 2.5 * rows]
    assert axes[-1].get_subplotspec().get_geometry()[:2] == (rows, cols)
    plt.close(fig)


def test_panels_reject_bad_counts():
    with pytest.raises(ValueError, match=r"n \(the number of panels\) must be an integer >= 1; got 0"):
        panels(0)
    with pytest.raises(ValueError, match="columns must be an integer >= 1; got 1.5"):
        panels(2, columns=1.5)


def test_a_column_wide_figure_fits_804_pixels_with_body_size_ticks():
    """At the style's dpi the widest figure is at most the 804 px column, ticks at least the 16 px text."""
    with plt.rc_context(STYLE):
        fig, _ = panels(2)
        png = figure_png(fig)
    width = int.from_bytes(png[16:20], "big")  # the PNG header's width field
    assert width <= 804, f"{width} px"
    assert STYLE["font.size"] * STYLE["figure.dpi"] / 72 >= 16


def test_tidy_wraps_long_titles_so_the_saved_figure_keeps_its_width():
    with plt.rc_context(STYLE):
        fig, (left, right) = panels(2)
        left.set_title("a title much longer than the half of the column that its axes occupy, on one line")
        right.set_xlabel("an axis label also far too long to sit under this narrow panel without wrapping")
        fig.suptitle("a suptitle that runs on and on, wider than the whole figure it is meant to head, surely")
        drawn_px = fig.get_size_inches()[0] * fig.dpi
        tidy(fig)
        assert "\n" in left.get_title() and "\n" in right.get_xlabel() and "\n" in fig._suptitle.get_text()
        assert int.from_bytes(figure_png(fig)[16:20], "big") <= drawn_px + 1


def test_tidy_leaves_short_titles_alone():
    fig, (ax,) = panels(1)
    ax.set_title("short")
    tidy(fig)
    assert ax.get_title() == "short"
    plt.close(fig)


def test_figures_are_exported_for_slides_when_asked(tmp_path, monkeypatch):
    from genlib.pages.claims import Claims
    from genlib.pages.plots import export_paused
    from genlib.pages.widgets import explorer

    monkeypatch.setenv("GENLIB_FIGURES", str(tmp_path))
    Claims("grokking", scale="quick")  # names the chapter's figures
    for _ in range(2):
        fig, _ = panels(1)
        tidy(fig)
        plt.close(fig)
    with export_paused():
        tidy(panels(1)[0])

    def frame(x):
        fig, _ = panels(1)
        tidy(fig)
        return fig

    explorer({"x": [1, 2]}, frame)
    assert sorted(p.name for p in (tmp_path / "grokking").iterdir()) == [
        "figure-01.png", "figure-01.svg", "figure-02.png", "figure-02.svg"]


def test_no_export_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("GENLIB_FIGURES", raising=False)
    monkeypatch.chdir(tmp_path)
    fig, _ = panels(1)
    tidy(fig)
    assert not list(tmp_path.iterdir())
