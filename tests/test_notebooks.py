"""Every notebook: stored without outputs, opening with the same bootstrap cell."""
import ast
import json
import re
from pathlib import Path

import pytest

from genlib.pages.bootstrap import CELL, REPOSITORY

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ should hold the chapters' notebooks"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_the_bootstrap_cell(notebook):
    first = "".join(code_cells(notebook)[0]["source"])
    assert first == CELL, f"{notebook.name}: the first code cell must be genlib.pages.bootstrap.CELL"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(notebook):
    assert not any(c.get("outputs") for c in code_cells(notebook)), f"{notebook.name} holds outputs"


def test_bootstrap_installs_from_the_configured_repository():
    config = (ROOT / "_config.yml").read_text()
    url = re.search(r"^\s*url:\s*(\S+)", config, re.M).group(1)
    assert url == REPOSITORY, f"_config.yml names {url}, genlib.pages.bootstrap {REPOSITORY}"


def glue_formats(code: str) -> dict[str, str]:
    """{name: format} of every glue("name", value[, "format"]) call in the code."""
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "glue" and n.args and isinstance(n.args[0], ast.Constant)]
    return {c.args[0].value: c.args[2].value if len(c.args) > 2 else "" for c in calls}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_glued_numbers_are_shown_in_the_format_they_are_printed_in(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    formats = glue_formats(code)
    for name, shown in re.findall(r"\{glue:text\}`(\w+)(?::([^`]*))?`", text):
        assert name in formats, f"{notebook.name}: the text shows {name}, which no cell glues"
        assert shown == formats[name], f"{notebook.name}: {name} is printed as {formats[name]!r} but shown as {shown!r}"


PRESENTATION = re.compile(r"\b(claim|glue|explorer)\(|\bplt\.|\bfig\b")


def shown_open(cell) -> bool:
    return not {"hide-input", "remove-input", "remove-cell"} & set(cell.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_the_page_shows_the_experiment_code_and_folds_the_rest(notebook):
    cells = code_cells(notebook)
    open_cells = [c for c in cells if shown_open(c)]
    presenting = ["".join(c["source"])[:60] for c in open_cells
                  if PRESENTATION.search("".join(c["source"])) and 'Claims("' not in "".join(c["source"])
                  and "remove-output" not in c["metadata"].get("tags", [])]
    assert not presenting, f"{notebook.name}: plotting, claim or glue code shown open (tag it hide-input): {presenting}"
    runs = [c for c in open_cells if re.search(r"run_experiment\(|sweep\(", "".join(c["source"]))]
    assert runs, f"{notebook.name}: the code that runs the experiments should be shown"
    assert len(open_cells) <= 9, f"{notebook.name}: {len(open_cells)} code cells shown open; fold what only plots"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_drawn_to_fit_the_text_column(notebook):
    from genlib.pages.plots import COLUMN_INCHES

    code = "\n".join("".join(c["source"]) for c in code_cells(notebook))
    wide = [w for w in re.findall(r"figsize=\(([\d.]+),", code) if float(w) > COLUMN_INCHES]
    assert not wide, f"{notebook.name}: figures {wide} inches wide; the column holds {COLUMN_INCHES} (use panels())"
    tagged = [c for c in code_cells(notebook) if "full-width" in c["metadata"].get("tags", [])]
    assert not tagged, f"{notebook.name}: full-width cells overflow the column at the book's width"
