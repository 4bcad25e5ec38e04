"""The exercises' solutions are code that runs, and their numbers are claims.

Each chapter's "## Exercises" section holds, per exercise: one markdown cell starting
``**Exercise N`` (the prompt, its stub, its hints); then the solution's code cells, tagged
``solution``, ``skip-execution`` and ``hide-input`` and opening with ``# Solution to exercise N``;
then a ``Solution (exercise N)`` admonition with the discussion (an essay or a derivation has only
the admonition). scripts/editions.py relies on exactly this layout.

The quick HTML build skips the tagged cells (myst-nb honours ``skip-execution``), so solutions
cost it nothing. The instructor build is the test command's nbval run over book/: nbval executes every
cell, solutions included, so a stale solution, or a number in its discussion that no longer holds,
fails there. Under scripts/test GENLIB_CACHE points at the cache the book's build just filled: only
the solutions train.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
TAGS = ("solution", "skip-execution", "hide-input")

EXERCISE = re.compile(r"\*\*Exercise (\d+) ")
SOLUTION_CODE = re.compile(r"# Solution to exercise (\d+)\b")
DISCUSSION = re.compile(r":::\{admonition\} Solution \(exercise (\d+)\)\n:class: dropdown\n")


def source(cell) -> str:
    return "".join(cell["source"])


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def exercise_section(path: Path) -> tuple[list, dict, list]:
    """(the chapter's cells, the cell with the "## Exercises" heading, the cells after it)."""
    cells = json.loads(path.read_text())["cells"]
    headings = [i for i, c in enumerate(cells)
                if c["cell_type"] == "markdown" and re.search(r"(?m)^## Exercises\s*$", source(c))]
    assert len(headings) == 1, f"{path.name}: one '## Exercises' heading expected, found {len(headings)}"
    at = headings[0]
    return cells[:at], cells[at], cells[at + 1:]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_are_tagged_cells_after_their_exercise(notebook):
    chapter, heading, section = exercise_section(notebook)
    name = notebook.name
    assert not any("solution" in tags(c) or SOLUTION_CODE.match(source(c)) for c in chapter), \
        f"{name}: a solution cell before the exercises"
    assert not EXERCISE.search(source(heading)), f"{name}: the heading's cell holds an exercise; one cell per exercise"
    number, last = 0, None  # the exercise being read; what its last cell was: prompt, code or discussion
    for cell in section:
        text = source(cell)
        if cell["cell_type"] == "code":
            assert set(TAGS) <= set(tags(cell)), f"{name}: an exercise code cell not tagged {list(TAGS)}: {text[:60]!r}"
            found = SOLUTION_CODE.match(text)
            assert found, f"{name}: a solution cell must start with '# Solution to exercise N': {text[:60]!r}"
            assert int(found.group(1)) == number, f"{name}: solution {found.group(1)} follows exercise {number}"
            assert last in ("prompt", "code"), f"{name}: exercise {number}'s solution code comes after its discussion"
            last = "code"
        elif (found := EXERCISE.match(text)) is not None:
            assert int(found.group(1)) == number + 1, f"{name}: exercise {found.group(1)} follows exercise {number}"
            number, last = number + 1, "prompt"
            assert "{admonition} Solution" not in text, \
                f"{name}: exercise {number}'s cell holds a Solution box; solutions live in the tagged cells after it"
            assert not tags(cell), f"{name}: exercise {number}'s cell is tagged {tags(cell)}"
        elif (found := DISCUSSION.match(text)) is not None:
            assert int(found.group(1)) == number, f"{name}: discussion {found.group(1)} follows exercise {number}"
            assert last in ("prompt", "code"), f"{name}: exercise {number} has two discussions"
            assert text.rstrip().endswith(":::"), f"{name}: exercise {number}'s discussion must close its admonition"
            assert "```" not in text, f"{name}: exercise {number}'s discussion holds code; it goes in the solution cell"
            assert "{glue:text}" not in text, \
                f"{name}: exercise {number}'s discussion glues; the HTML build skips solutions: claim it there"
            last = "discussion"
        else:
            pytest.fail(f"{name}: after exercise {number}, a cell that is no exercise, solution or discussion: "
                        f"{text[:60]!r}")
    assert number >= 1, f"{name}: no exercises"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_runs_every_solution(notebook):
    """The test command's nbval run over book/ is the instructor build: nbval ignores myst-nb's
    skip-execution and executes every code cell, so each solution runs (after the chapter's own cells,
    whose runs the book's build has just cached) and its claims are asserted there."""
    skipped = [source(c)[:40] for c in json.loads(notebook.read_text())["cells"]
               if "solution" in tags(c) and ({"nbval-skip", "raises-exception"} & set(tags(c))
                                              or re.search(r"#\s*NBVAL_(SKIP|RAISES_EXCEPTION)", source(c)))]
    assert not skipped, f"{notebook.name}: solutions nbval would not run: {skipped}"
