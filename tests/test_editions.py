"""The editions made by scripts/editions.py: current, free of MyST, and (for students) of solutions.

editions/colab (what the launch buttons open) and editions/student are committed; the first test
makes them again into a temporary folder and fails when they differ, so that they never go stale.
The others read the committed files, and a small made-up chapter in both exercise forms checks
the conversion itself, so that they do not depend on what the chapters say today.
"""
import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from genlib.pages import exercises
from genlib.pages.bootstrap import CELL

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "book").glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("editions_script", ROOT / "scripts" / "editions.py")
editions = sys.modules.setdefault("editions_script", importlib.util.module_from_spec(spec))
spec.loader.exec_module(editions)

COLAB = [ROOT / "editions" / "colab" / "book" / p.name for p in SOURCES]
STUDENT = [ROOT / "editions" / "student" / "book" / p.name for p in SOURCES]
GRADING = sorted((ROOT / "grading").glob("*.ipynb"))
# What MyST writes and plain Markdown does not: a role, a directive fence, a directive's option, a target.
MYST = re.compile(r"\{[a-zA-Z][\w:.+-]*\}`|^\s*(```+|:::+)\s*\{|^\s*:::|^\s*:(class|name|label):|^\s*\(.+\)=\s*$",
                  re.M)


def cells(path: Path, kind: str | None = None) -> list:
    notebook = nbformat.read(path, as_version=4)
    return [c for c in notebook.cells if kind is None or c.cell_type == kind]


def generated_files(folder: Path) -> dict[str, str]:
    found = {}
    for sub in ("editions", "grading"):
        for path in sorted((folder / sub).rglob("*")):
            parts = path.relative_to(folder).parts  # not otter's output, nor Jupyter's checkpoints
            if path.is_file() and "dist" not in parts and ".ipynb_checkpoints" not in parts:
                found[str(path.relative_to(folder))] = path.read_text()
    return found


def test_the_committed_editions_are_what_the_script_makes(tmp_path):
    made = editions.write(ROOT, tmp_path)
    assert made, "scripts/editions.py wrote nothing"
    want, have = generated_files(tmp_path), generated_files(ROOT)
    stale = sorted(name for name in want.keys() | have.keys() if want.get(name) != have.get(name))
    assert not stale, f"editions out of date: run `python scripts/editions.py` and commit them; differing: {stale}"


def test_the_script_writes_the_same_files_twice(tmp_path):
    editions.write(ROOT, tmp_path / "a")
    editions.write(ROOT, tmp_path / "b")
    assert generated_files(tmp_path / "a") == generated_files(tmp_path / "b")


def test_the_launch_buttons_open_the_colab_edition():
    """sphinx-book-theme's Colab link is <colab>/github/<org>/<repo>/blob/<branch>/<path_to_book>/<page>.ipynb."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["path_to_book"] == "editions/colab"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    chapters = [page for page in pages if (ROOT / f"{page}.ipynb").exists()]
    assert chapters and len(chapters) == len(SOURCES)
    for page in chapters:
        assert (ROOT / config["repository"]["path_to_book"] / f"{page}.ipynb").exists(), page


@pytest.mark.parametrize("path", COLAB + STUDENT + GRADING, ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_no_myst_syntax_is_left(path):
    for cell in cells(path, "markdown"):
        left = MYST.search(cell.source)
        assert not left, f"{path.relative_to(ROOT)}: MyST left, {left.group(0)!r} in\n{cell.source[:500]}"


@pytest.mark.parametrize("path", COLAB + STUDENT, ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_every_code_cell_but_the_solutions_is_kept(path):
    """So the edition runs top to bottom as the chapter does, starting with the bootstrap cell."""
    source = ROOT / "book" / path.name
    kept = [c.source for c in cells(source, "code") if "solution" not in c.metadata.get("tags", [])]
    code = [c.source for c in cells(path, "code") if not c.id.endswith("-answer")]
    assert code == kept
    assert code[0] == CELL


def solution_and_hint_text(path: Path) -> tuple[list[str], list[str]]:
    """Read without scripts/editions.py: (every line of a cell tagged solution and of a Solution or Hint
    admonition's body (``` or ::: fences), every other line of the chapter)."""
    found, public = [], []
    for cell in cells(path):
        if "solution" in cell.metadata.get("tags", []):
            found += cell.source.split("\n")
            continue
        if cell.cell_type != "markdown":
            public += cell.source.split("\n")
            continue
        fence = None
        for line in cell.source.split("\n"):
            if fence is None:
                opened = re.match(r"^\s*(`{3,}|:{3,})\{(admonition|hint)\}\s*(Solution|Hint)?", line)
                if opened and (opened.group(2) == "hint" or opened.group(3)):
                    fence = opened.group(1)
            elif re.match(rf"^\s*{re.escape(fence)}\s*$", line):
                fence = None
            else:
                found.append(line)
            if fence is None:
                public.append(line)
    return [line.strip() for line in found], [line.strip() for line in public]


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_a_student_notebook_holds_no_solution_or_hint(path):
    text = path.read_text()
    notebook = json.loads(text)
    everything = "\n".join("".join(c["source"]) for c in notebook["cells"])
    secret, public = solution_and_hint_text(ROOT / "book" / path.name)
    shown = "\n".join(public)  # what the chapter shows outside solutions and hints (a prompt may quote code)
    secret = {line for line in secret if len(line) >= 20 and not line.startswith(":") and line not in shown}
    assert secret, "no solution found in the chapter: has the exercise form changed?"
    leaked = [line for line in secret if line in everything]
    assert not leaked, f"{path.name} shows solution or hint text: {leaked[:3]}"
    assert not any("solution" in c["metadata"].get("tags", []) for c in notebook["cells"])
    assert not re.search(r"\*\*(Solution|Hint)\b|# Solution to exercise", everything)


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_every_exercise_is_followed_by_an_answer_cell(path):
    notebook = cells(path)
    numbers = [int(m.group(1)) for c in notebook if c.cell_type == "markdown"
               for m in [re.match(r"\*\*Exercise (\d+)", c.source)] if m]
    source = "\n".join(c.source for c in cells(ROOT / "book" / path.name, "markdown"))
    assert numbers == [int(n) for n in re.findall(r"^\*\*Exercise (\d+)", source, re.M)]
    for i, cell in enumerate(notebook):
        if cell.cell_type == "markdown" and re.match(r"\*\*Exercise \d+", cell.source):
            answer = notebook[i + 1]
            assert answer.id == f"{cell.id}-answer"
            if answer.cell_type == "markdown":
                assert answer.source == "**Your answer:**"
            else:
                assert 'raise NotImplementedError("your code here")' in answer.source
                assert re.search(r"^check_\w+\(\w+\)", answer.source, re.M), answer.source
                assert "```" not in cell.source, "the stub moves to the answer cell"


def reference_names() -> set[str]:
    return {path.rpartition(".")[2] for paths in exercises.REFERENCES.values() for path in paths}


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_no_student_cell_calls_genlibs_reference_for_an_exercise(path):
    for cell in cells(path, "code"):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                assert name not in reference_names(), f"{path.name} calls {name}:\n{cell.source}"


def test_links_point_at_the_published_book():
    book = editions.Book.read(ROOT)
    assert book.site == "https://genlib-book.github.io/generalization-book/"  # README and book.yml say so
    pages = {book.page(name) for name in book.titles}
    for path in COLAB + STUDENT:
        for cell in cells(path, "markdown"):
            for url in re.findall(r"\]\((https://genlib-book[^)\s]*)\)", cell.source):
                page, _, anchor = url.partition("#")
                assert page in pages, url
                if anchor:
                    assert page == book.page("glossary") and anchor in book.terms.values(), url


def test_glossary_anchors_are_the_ones_sphinx_makes():
    from sphinx.util.nodes import _make_id

    terms = editions._glossary_terms(ROOT / "book" / "glossary.md")
    assert len(terms) > 20 and "term-grokking" in terms.values()
    for term in terms:
        assert editions._make_id(term) == _make_id(term).removeprefix("-")
    assert editions._make_id("⊥Grad") == "Grad" and editions._make_id("Softmax Collapse") == "Softmax-Collapse"


# A made-up chapter, in the new exercise form and in the older one

NEW_FORM = [
    ("markdown", [], "# Made up\n\n{cite}`power2022grokking,nanda2023progress` saw it; {cite:t}`nanda2023progress`"
                     " explained it. A {term}`lazy <lazy regime>` network is not {term}`rich\nregime`; see"
                     " {doc}`grokking`. It took {glue:text}`delay:,.0f` steps."),
    ("code", ["remove-cell"], CELL),
    ("code", ["hide-input"], 'glue("delay", 1234.0)'),
    ("markdown", [], "(target)=\n## Section\n\nAgain {glue:text}`delay:.0f`.\n\n```{admonition} Predict, then run\n"
                     ":class: tip\nWhat will {term}`grokking` do?\n```\n\n```{note}\nA note.\n```"),
    ("markdown", [], "## Exercises"),
    ("markdown", [], "**Exercise 1 (easy).** Write StableMax.\n\n```python\nimport torch\n"
                     "from genlib.pages.exercises import check_stablemax\n\ndef my_f(x):\n"
                     "    ...  # return probabilities over the last dimension\n\ncheck_stablemax(my_f)\n```\n\n"
                     ":::{admonition} Hint\n:class: dropdown\nSECRET HINT about torch.where and the clamp.\n:::"),
    ("code", ["solution", "skip-execution", "hide-input"],
     "# Solution to exercise 1\ndef my_f(x):\n    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))  # SECRET\n"
     "    return s / s.sum(-1, keepdim=True)\n\nclaim(check_stablemax(my_f), \"my_f is StableMax\")"),
    ("markdown", [], ":::{admonition} Solution (exercise 1)\n:class: dropdown\nSECRET EXPLANATION of the clamp.\n:::"),
    ("markdown", [], "**Exercise 2 (open).** Think about {term}`grokking`.\n\n:::{admonition} Hint\n"
                     ":class: dropdown\nSECRET HINT number two.\n:::"),
]
OLD_FORM = [
    NEW_FORM[0], NEW_FORM[1], NEW_FORM[2], NEW_FORM[3],
    ("markdown", [], "## Exercises\n\n" + NEW_FORM[5][2] + "\n\n````{admonition} Solution\n:class: dropdown\n"
                     "```python\ndef my_f(x):\n    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))  # SECRET\n"
                     "    return s / s.sum(-1, keepdim=True)\n```\nSECRET EXPLANATION of the clamp.\n````\n\n"
                     + NEW_FORM[8][2] + "\n\n:::{admonition} Solution\n:class: dropdown\nSECRET ANSWER two.\n:::"),
]


def made_up(tmp_path: Path, form: list) -> Path:
    made = [nbformat.v4.new_code_cell(s, metadata={"tags": t}) if kind == "code"
            else nbformat.v4.new_markdown_cell(s, metadata={"tags": t} if t else {}) for kind, t, s in form]
    for k, cell in enumerate(made):
        cell.id = f"cell-{k}"
    path = tmp_path / "made_up.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=made), path)
    return path


@pytest.mark.parametrize("form", [NEW_FORM, OLD_FORM], ids=["new form", "old form"])
def test_a_made_up_chapter(form, tmp_path):
    book = editions.Book.read(ROOT)
    chapter = editions.read_chapter(made_up(tmp_path, form))
    colab, student = (editions.edition(book, chapter, which) for which in ("colab", "student"))
    bib, glossary = book.page("bibliography"), book.page("glossary")
    text = "\n\n".join(c.source for c in colab.cells if c.cell_type == "markdown")
    assert not MYST.search(text), MYST.search(text)
    assert f"([Power et al., 2022]({bib}); [Nanda et al., 2023]({bib})) saw it" in text
    assert f"[Nanda et al. (2023)]({bib}) explained it" in text
    assert f"A [lazy]({glossary}#term-lazy-regime) network is not [rich regime]({glossary}#term-rich-regime)" in text
    assert f"see [{book.titles['grokking']}]({book.page('grokking')})" in text
    assert "It took `delay` (printed below) steps" in text and "Again `delay` (printed above)." in text
    assert f"> **Predict, then run**\n>\n> What will [grokking]({glossary}#term-grokking) do?" in text
    assert "> **Note**\n>\n> A note." in text
    assert "> **Hint**\n>\n> SECRET HINT about" in text  # Colab keeps hints
    assert "SECRET EXPLANATION" not in text and "SECRET ANSWER" not in text and "SECRET\n" not in text
    assert [c.source for c in colab.cells if c.cell_type == "code"] == [CELL, 'glue("delay", 1234.0)']

    everything = "\n".join(c.source for c in student.cells)
    assert "SECRET" not in everything and "Hint" not in everything
    exercise = [c.id for c in student.cells if c.id.startswith("exercise-")]
    assert exercise == ["exercise-1", "exercise-1-answer", "exercise-2", "exercise-2-answer"]
    answer = next(c for c in student.cells if c.id == "exercise-1-answer")
    assert answer.cell_type == "code" and answer.source == (
        "import torch\nfrom genlib.pages.exercises import check_stablemax\n\ndef my_f(x):\n"
        "    # return probabilities over the last dimension\n    raise NotImplementedError(\"your code here\")\n\n"
        "check_stablemax(my_f)")
    assert next(c for c in student.cells if c.id == "exercise-2-answer").source == "**Your answer:**"
    prompt = next(c for c in student.cells if c.id == "exercise-1").source
    assert prompt == "**Exercise 1 (easy).** Write StableMax."

    gradable = editions.master(book, chapter)
    questions = [c.source for c in gradable.cells if c.source.startswith("# BEGIN QUESTION")]
    assert questions == ["# BEGIN QUESTION\nname: stablemax\npoints: 3\ncheck_cell: false"]
    solution = next(c.source for c in gradable.cells if "# BEGIN SOLUTION NO PROMPT" in c.source)
    assert "1 / (1 - x.clamp(max=0)))  # SECRET" in solution and 'raise NotImplementedError' in solution
    assert "claim(" not in solution and solution.endswith("\ncheck_stablemax(my_f)")


def test_myst_without_a_plain_form_stops_the_script():
    convert = editions.Converter(editions.Book.read(ROOT))
    for text in ["See {numref}`fig-1`.", "```{figure} a.png\nA figure.\n```", "{cite}`nobody1999`",
                 "{term}`no such term`", "{doc}`no_such_page`", "Hello {{ name }}"]:
        with pytest.raises(ValueError):
            convert.markdown(text)
    assert convert.markdown("`{term}` is a role; $\\text{lr}$ stays.") == "`{term}` is a role; $\\text{lr}$ stays."
