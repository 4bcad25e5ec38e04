"""Checks on the built HTML book (scripts/test builds it before running pytest)."""
import re
from pathlib import Path

import pytest

HTML = Path(__file__).resolve().parents[1] / "_build" / "html"
PAGES = sorted(HTML.rglob("*.html")) if HTML.exists() else []
CHAPTERS = [HTML / "book" / f"{nb.stem}.html" for nb in (HTML.parents[1] / "book").glob("*.ipynb")]


def test_book_was_built():
    assert (HTML / "index.html").exists(), f"no built book in {HTML}: run `bash scripts/build-book` first"
    assert CHAPTERS, "no notebook chapters found in book/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(HTML)))
def test_page_loads_nothing_from_the_internet(page):
    html = page.read_text(encoding="utf-8")
    remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', html)
    assert not remote, f"{page.name} loads {remote} at read time; the book must work offline"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(HTML)))
def test_page_shows_no_error_output(page):
    html = page.read_text(encoding="utf-8")
    for marker in ("Traceback (most recent call last)", "AssertionError", 'class="output stderr"', "ERROR"):
        assert marker not in html, f"{page.name} shows {marker!r}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_figures_and_embedded_widgets(chapter):
    html = chapter.read_text(encoding="utf-8")
    assert html.count("<img") >= 4, f"{chapter.name}: expected its figures as images"
    assert "application/vnd.jupyter.widget-state+json" in html, f"{chapter.name}: widget state not embedded"
    for script in ("vendor/require.js", "vendor/widgets/embed-amd.js"):
        assert script in html, f"{chapter.name} does not load the local {script}"
