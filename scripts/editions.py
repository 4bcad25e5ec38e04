#!/usr/bin/env python
"""The book's editions, made from its one source (book/*.ipynb) by one command:

    python scripts/editions.py             # rewrite editions/ and grading/ in this checkout
    python scripts/editions.py --out DIR   # write them under DIR instead (tests/test_editions.py compares)

What it writes (committed; tests/test_editions.py fails when they differ from what this makes):

editions/colab/book/<chapter>.ipynb
    What the launch buttons open on Colab (``repository.path_to_book: editions/colab``). MyST made
    plain Markdown: glued numbers become "`name` (printed above)" (each code cell that glues a number
    lists it, with its value, under the cell), citations "Author et al. (Year)" linked to the HTML
    bibliography, glossary terms linked to the HTML glossary, {doc} links to the HTML pages,
    admonitions block quotes; solutions (cells tagged ``solution``, Solution admonitions) removed,
    hints kept as block quotes. Every code cell stays, so the chapter runs top to bottom.
editions/student/book/<chapter>.ipynb
    The same, and each exercise in its own cell followed by an answer cell: its stub as a code cell
    (a ``...`` body made ``raise NotImplementedError``, the check call kept) or "**Your answer:**".
    No solution, no hint.
grading/<chapter>.ipynb, grading/requirements.txt, grading/README.md, grading/.gitignore
    One otter-grader master notebook per chapter with auto-checked exercises (a stub that calls a
    ``check_*`` of genlib.pages.exercises): per question 3 points, a public test at seed 0 and hidden
    tests at seeds 1 and 2, each through ``genlib.pages.exercises.grade`` (genlib's reference for the
    exercise raises while the answer runs). ``otter assign grading/<chapter>.ipynb DIR`` makes the
    student notebook and the Gradescope autograder (grading/README.md).

The exercises are read in either form the chapters use: one markdown cell per exercise starting
``**Exercise N`` (prompt, optional ```python stub, optional Hint admonitions), then code cells tagged
``solution`` starting ``# Solution to exercise N``, then a ``Solution (exercise N)`` admonition cell;
or, older, Solution and Hint admonitions inside the exercise's markdown, several exercises per cell.
Nothing depends on an executed build, so the output is the same on every machine.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
EDITIONS = ("colab", "student")
POINTS = {0: 1, 1: 1, 2: 1}  # seed -> points of its test; seed 0 public, the others hidden


# ---------------------------------------------------------------------------------------------
# What the links point to: the published book, its glossary and bibliography


def _make_id(text: str) -> str:
    """The HTML anchor Sphinx gives a glossary term: ``term-`` and the term, ASCII, runs of other
    characters made ``-`` (sphinx.util.nodes._make_id; tests/test_editions.py compares the two)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    anchor = re.sub(r"[^a-zA-Z0-9._]+", "-", " ".join(ascii_text.split()))
    return re.sub(r"^[-0-9._]+|-+$", "", anchor)


@dataclass
class Book:
    """The source and where its HTML is published (from _config.yml's repository url)."""

    root: Path
    repository: str
    branch: str
    site: str  # https://OWNER.github.io/REPO/
    version: str
    titles: dict[str, str]  # page name (book/<name>) -> its title
    terms: dict[str, str]  # glossary term, lower case -> its anchor
    citations: dict[str, tuple[str, str]]  # bibtex key -> (authors as cited, year)

    @classmethod
    def read(cls, root: Path) -> Book:
        config = yaml.safe_load((root / "_config.yml").read_text())
        repository = config["repository"]["url"].rstrip("/")
        owner, name = repository.split("/")[-2:]
        sys.path.insert(0, str(root))
        try:
            import genlib
        finally:
            sys.path.remove(str(root))
        titles = {}
        for page in sorted((root / "book").glob("*.md")) + sorted((root / "book").glob("*.ipynb")):
            text = page.read_text() if page.suffix == ".md" else "\n".join(
                c.source for c in nbformat.read(page, as_version=4).cells if c.cell_type == "markdown")
            heading = re.search(r"^# (.+)$", text, re.M)
            titles[page.stem] = heading.group(1).strip() if heading else page.stem
        return cls(root, repository, config["repository"].get("branch", "main"),
                   f"https://{owner.lower()}.github.io/{name}/", genlib.__version__, titles,
                   _glossary_terms(root / "book" / "glossary.md"), _citations(root / config["bibtex_bibfiles"][0]))

    def page(self, name: str) -> str:
        return f"{self.site}book/{name}.html"


def _glossary_terms(path: Path) -> dict[str, str]:
    """Every term of the ```{glossary} block: its lines start in the first column (definitions are indented)."""
    terms, inside = {}, False
    for line in path.read_text().splitlines():
        if re.match(r"^(```+|:::+)\{glossary\}", line):
            inside = True
        elif inside and re.match(r"^(```+|:::+)\s*$", line):
            inside = False
        elif inside and line.strip() and not line[0].isspace() and not line.startswith(":"):
            terms[line.strip().lower()] = "term-" + _make_id(line.strip())
    return terms


def _citations(path: Path) -> dict[str, tuple[str, str]]:
    """key -> ("Power et al.", "2022"), as sphinxcontrib-bibtex's author_year style cites it."""
    from pybtex.backends.plaintext import Backend
    from pybtex.database import parse_file  # sphinxcontrib-bibtex's own parser (installed with jupyter-book)
    from pybtex.richtext import Text

    plain = Backend()  # one backend: render_as("text") looks the plugin up again at every call, slowly
    cited = {}
    for key, entry in parse_file(str(path)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render(plain) for p in people]
        if not last:
            raise ValueError(f"{path.name}: {key} has no author")
        authors = last[0] if len(last) == 1 else " and ".join(last) if len(last) == 2 else f"{last[0]} et al."
        cited[key] = (authors, entry.fields["year"])
    return cited


# ---------------------------------------------------------------------------------------------
# MyST markdown, as blocks: text, and fences (code blocks and directives)

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<marks>`{3,}|:{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\{(?P<name>[a-zA-Z][\w:-]*)\}\s*(?P<argument>.*)$")
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}


@dataclass
class Fence:
    lines: list[str]  # as written, opening and closing lines included
    info: str
    body: list[str]

    @property
    def directive(self) -> str | None:
        found = DIRECTIVE.match(self.info.strip())
        return found.group("name") if found else None

    @property
    def argument(self) -> str:
        found = DIRECTIVE.match(self.info.strip())
        return found.group("argument").strip() if found else ""

    def options_and_content(self) -> tuple[dict[str, str], list[str]]:
        options, body = {}, list(self.body)
        while body and re.match(r"^\s*:[\w-]+:", body[0]):
            key, _, value = body.pop(0).strip()[1:].partition(":")
            options[key] = value.strip()
        if body and body[0].strip() == "---":  # YAML options block
            end = body.index("---", 1)
            options.update(yaml.safe_load("\n".join(body[1:end])) or {})
            body = body[end + 1:]
        return options, body

    @property
    def title(self) -> str:
        if self.directive == "admonition":
            return self.argument
        return (self.directive or "").capitalize()

    def is_admonition(self, *titles: str) -> bool:
        """An admonition whose title starts with one of ``titles`` (a ``hint`` directive counts as "Hint")."""
        if self.directive not in ADMONITIONS | {"admonition"}:
            return False
        return any(self.title.startswith(t) for t in titles)


def parse_blocks(lines: list[str]) -> list[list[str] | Fence]:
    """Top-level blocks: runs of text lines (lists) and fences. A fence closes on a line of its own
    character, at least as long, and nothing else; what is inside is not parsed here."""
    blocks: list[list[str] | Fence] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening and not (opening["marks"][0] == "`" and "`" in opening["info"]):
            mark = opening["marks"]
            close = re.compile(rf"^ {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}\s*$")
            end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
            blocks.append(Fence(lines[i:end + 1], opening["info"], lines[i + 1:end]))
            i = end + 1
        else:
            if not blocks or isinstance(blocks[-1], Fence):
                blocks.append([])
            blocks[-1].append(lines[i])
            i += 1
    return blocks


def unparse(blocks: list[list[str] | Fence]) -> list[str]:
    return [line for b in blocks for line in (b.lines if isinstance(b, Fence) else b)]


# ---------------------------------------------------------------------------------------------
# MyST to the Markdown that Colab and Jupyter show

ROLE_OR_CODE = re.compile(r"\{(?P<role>[a-zA-Z][\w:.+-]*)\}`(?P<content>[^`]*)`|(?P<ticks>`+)(?:.|\n)*?(?P=ticks)")
TITLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


class Converter:
    """One notebook's markdown made plain. ``glued_at`` maps a glued name to the index of the code cell
    that glues it, so that its mention can say where the claims list shows it."""

    def __init__(self, book: Book, glued_at: dict[str, int] | None = None, drop: tuple[str, ...] = ("Solution",)):
        self.book, self.glued_at, self.drop = book, glued_at or {}, drop
        self.cell = 0  # index of the markdown cell being converted (in the source notebook)

    def markdown(self, text: str, cell: int = 0) -> str:
        self.cell = cell
        lines = self._blocks(text.split("\n"))
        squeezed: list[str] = []
        for line in lines:  # one blank line where a dropped block leaves several
            if not (line.strip() == "" and squeezed and squeezed[-1].strip() == ""):
                squeezed.append(line)
        while squeezed and not squeezed[0].strip():
            squeezed.pop(0)
        while squeezed and not squeezed[-1].strip():
            squeezed.pop()
        return "\n".join(squeezed)

    def _blocks(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        for block in parse_blocks(lines):
            if isinstance(block, Fence):
                out += self._fence(block)
            else:
                kept = [line for line in block if not re.match(r"^\s*(\(.+\)=\s*|%.*|\+\+\+.*)$", line)]
                out += self._inline("\n".join(kept)).split("\n") if kept else []
        return out

    def _fence(self, fence: Fence) -> list[str]:
        name = fence.directive
        if name is None:  # a code block: kept as written
            return fence.lines
        options, body = fence.options_and_content()
        if name == "math":
            return ["$$", *body, "$$"]
        if name not in ADMONITIONS | {"admonition"}:
            raise ValueError(f"no plain-Markdown form for the directive {{{name}}}: {fence.lines[0]!r}")
        if fence.is_admonition(*self.drop):
            return []
        if name != "admonition" and fence.argument:
            body = [fence.argument, *body]
        title = {"Seealso": "See also"}.get(fence.title, fence.title)
        inner = self.markdown("\n".join(body), self.cell).split("\n")
        quoted = [f"> **{self._inline(title)}**", ">"] + [f"> {line}" if line.strip() else ">" for line in inner]
        return ["", *quoted, ""]

    def _inline(self, text: str) -> str:
        if "{{" in text:
            raise ValueError(f"MyST substitutions have no plain-Markdown form: {text!r}")
        return ROLE_OR_CODE.sub(lambda m: self._role(m["role"], m["content"]) if m["role"] else m[0], text)

    def _role(self, role: str, content: str) -> str:
        content = " ".join(content.split())
        titled = TITLED.match(content)
        text, target = (titled["text"], titled["target"]) if titled else (None, content)
        if role in ("glue", "glue:text", "glue:md"):
            name = content.split(":")[0]
            where = self.glued_at.get(name)
            place = "above" if where is not None and where < self.cell else "below"
            return f"`{name}` (printed {place})"
        if role in ("cite", "cite:p", "cite:t"):
            cited = []
            for key in (k.strip() for k in content.split(",")):
                if key not in self.book.citations:
                    raise ValueError(f"{{{role}}}`{content}`: {key} is not in the bibliography")
                authors, year = self.book.citations[key]
                link = self.book.page("bibliography")
                cited.append(f"[{authors} ({year})]({link})" if role == "cite:t" else f"[{authors}, {year}]({link})")
            return "; ".join(cited) if role == "cite:t" else f"({'; '.join(cited)})"
        if role == "term":
            anchor = self.book.terms.get(target.lower())
            if anchor is None:
                raise ValueError(f"{{term}}`{content}`: {target!r} is not in book/glossary.md")
            return f"[{text or target}]({self.book.page('glossary')}#{anchor})"
        if role == "doc":
            page = target.removeprefix("/").removeprefix("book/").removesuffix(".md").removesuffix(".ipynb")
            if page not in self.book.titles:
                raise ValueError(f"{{doc}}`{content}`: no page book/{page}")
            return f"[{text or self.book.titles[page]}]({self.book.page(page)})"
        if role == "math":
            return f"${content}$"
        if role == "ref" and text:
            return text
        raise ValueError(f"no plain-Markdown form for the role {{{role}}}`{content}`")


# ---------------------------------------------------------------------------------------------
# A chapter as cells and exercises

EXERCISE = re.compile(r"^\*\*Exercise (\d+)\b")
SOLUTION_CODE = re.compile(r"^# Solution to exercise (\d+)\b")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass
class Exercise:
    number: int
    prompt: list[list[str] | Fence]  # blocks: text, code, hints; no solution
    id: str
    solution_cells: list[str] = field(default_factory=list)  # code cells tagged solution
    solution_blocks: list[str] = field(default_factory=list)  # ```python blocks of Solution admonitions

    @property
    def solution(self) -> str:
        return "\n\n".join(self.solution_cells or self.solution_blocks)

    @property
    def stub(self) -> Fence | None:
        """The ```python block that defines the answer's function and calls a check_*, if any."""
        for block in self.prompt:
            if isinstance(block, Fence) and block.info.strip() == "python" and re.search(
                    r"\bcheck_\w+\(", "\n".join(block.body)):
                return block
        return None

    @property
    def check(self) -> str | None:
        found = self.stub and re.search(r"\b(check_\w+)\(", "\n".join(self.stub.body))
        return found.group(1) if found else None


@dataclass
class Chapter:
    name: str
    notebook: nbformat.NotebookNode
    items: list  # (index of the source cell, an nbformat cell or an Exercise), in order; no solution
    glued_at: dict[str, int]  # glued name -> index of the code cell that glues it


def read_chapter(path: Path) -> Chapter:
    """A chapter's cells, its exercises (in either form) gathered with their solutions, split from the
    markdown around them, and where each glued number is printed."""
    notebook = nbformat.read(path, as_version=4)
    glued_at: dict[str, int] = {}
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            for name in re.findall(r"\bglue\(\s*[\"'](\w+)[\"']", cell.source):
                glued_at.setdefault(name, i)
    items: list = []
    exercises: dict[int, Exercise] = {}
    section: int | None = None  # heading level of "Exercises" while inside that section
    current: Exercise | None = None
    for index, cell in enumerate(notebook.cells):
        cell = copy.deepcopy(cell)
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and "solution" in tags:
            number = SOLUTION_CODE.match(cell.source)
            owner = exercises.get(int(number.group(1))) if number else current
            if owner is None:
                raise ValueError(f"{path.name}: a cell tagged solution belongs to no exercise:\n{cell.source[:200]}")
            owner.solution_cells.append(SOLUTION_CODE.sub("", cell.source, count=1).strip("\n"))
            continue
        if cell.cell_type != "markdown":
            items.append((index, cell))
            current = None
            continue
        chunks, section = _split_exercises(cell.source.split("\n"), section)
        for k, chunk in enumerate(chunks):
            number = EXERCISE.match(next((line for line in chunk if line.strip()), ""))
            blocks = parse_blocks(chunk)
            solutions = [b for b in blocks if isinstance(b, Fence) and b.is_admonition("Solution")]
            rest = [b for b in blocks if not (isinstance(b, Fence) and b.is_admonition("Solution"))]
            if number:
                current = Exercise(int(number.group(1)), rest, f"exercise-{number.group(1)}")
                exercises[current.number] = current
                items.append((index, current))
            elif solutions and not "".join(unparse(rest)).strip():  # a Solution (exercise N) cell
                said = re.search(r"exercise (\d+)", solutions[0].argument)
                current = exercises.get(int(said.group(1))) if said else current
                if current is None:
                    raise ValueError(f"{path.name}: a Solution admonition belongs to no exercise")
            else:
                part = nbformat.v4.new_markdown_cell("\n".join(unparse(blocks)), metadata=cell.metadata)
                part.id = cell.id if k == 0 else f"{cell.id}-{k}"[:64]
                items.append((index, part))
                current = None
            if current is not None:
                for solution in solutions:
                    _, body = solution.options_and_content()
                    current.solution_blocks += ["\n".join(b.body) for b in parse_blocks(body)
                                              if isinstance(b, Fence) and b.info.strip() == "python"]
    return Chapter(path.stem, notebook, items, glued_at)


def _split_exercises(lines: list[str], section: int | None) -> tuple[list[list[str]], int | None]:
    """The cell's lines cut before each top-level "**Exercise N" line of the Exercises section."""
    chunks: list[list[str]] = [[]]
    for block in parse_blocks(lines):
        if isinstance(block, Fence):
            chunks[-1] += block.lines
            continue
        for line in block:
            heading = HEADING.match(line)
            if heading:
                level = len(heading.group(1))
                if heading.group(2).strip().lower().startswith("exercises"):
                    section = level
                elif section is not None and level <= section:
                    section = None
            if section is not None and EXERCISE.match(line) and any(x.strip() for x in chunks[-1]):
                chunks.append([])
            chunks[-1].append(line)
    return chunks, section


# ---------------------------------------------------------------------------------------------
# The editions


def answer_code(stub: Fence) -> str:
    """The stub's code with every ``...`` function body made ``raise NotImplementedError``."""
    code = "\n".join(stub.body)
    lines = code.split("\n")
    bodies = [node.body[0] for node in ast.walk(ast.parse(code)) if isinstance(node, ast.FunctionDef)
              and len(node.body) == 1 and isinstance(node.body[0], ast.Expr)
              and getattr(node.body[0].value, "value", None) is Ellipsis]
    for body in sorted(bodies, key=lambda b: b.lineno, reverse=True):
        line = lines[body.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        comment = line.encode()[body.end_col_offset:].decode().strip()  # ast's offsets count UTF-8 bytes
        replacement = [indent + 'raise NotImplementedError("your code here")']
        if comment and comment.lstrip("# ").rstrip(".") not in ("your code", "your code here"):
            replacement.insert(0, indent + comment)
        lines[body.lineno - 1: body.end_lineno] = replacement
    return "\n".join(lines)


NOTE = {
    "colab": ("*The Colab edition of [{title}]({url}), made from `book/{name}.ipynb` by `scripts/editions.py`. "
              "A number the text quotes appears as its name, printed with its value under the code cell "
              "that measured it; the exercises' solutions are in the HTML book.*"),
    "student": ("*The student edition of [{title}]({url}), made from `book/{name}.ipynb` by `scripts/editions.py`: "
                "each exercise is followed by a cell for your answer. A number the text quotes appears as its "
                "name, printed with its value under the code cell that measured it.*"),
}


def edition(book: Book, chapter: Chapter, which: str) -> nbformat.NotebookNode:
    """The Colab or student edition of one chapter."""
    student = which == "student"
    convert = Converter(book, chapter.glued_at, ("Solution", "Hint") if student else ("Solution",))
    cells = []
    for index, item in copy.deepcopy(chapter.items):
        if isinstance(item, Exercise):
            blocks = [b for b in item.prompt if not (student and b is item.stub)]
            prompt = nbformat.v4.new_markdown_cell(convert.markdown("\n".join(unparse(blocks)), index))
            prompt.id = item.id
            cells.append(prompt)
            if student:
                answer = (nbformat.v4.new_code_cell(answer_code(item.stub)) if item.stub
                          else nbformat.v4.new_markdown_cell("**Your answer:**"))
                answer.id = f"{item.id}-answer"
                cells.append(answer)
        elif item.cell_type == "markdown":
            item.source = convert.markdown(item.source, index)
            if item.source:
                cells.append(item)
        else:
            cells.append(item)
    first = next(c for c in cells if c.cell_type == "markdown")
    heading, _, rest = first.source.partition("\n")
    title = book.titles.get(chapter.name, chapter.name)
    note = NOTE[which].format(title=title, url=book.page(chapter.name), name=chapter.name)
    if heading.startswith("# "):
        first.source = f"{heading}\n\n{note}\n\n{rest.lstrip()}".rstrip()
    else:
        first.source = f"{note}\n\n{first.source}"
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(chapter.notebook.metadata))
    notebook.nbformat_minor = max(chapter.notebook.nbformat_minor, 5)
    return notebook


# ---------------------------------------------------------------------------------------------
# Grading: otter-grader master notebooks


def _raw(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def master(book: Book, chapter: Chapter) -> nbformat.NotebookNode | None:
    """The otter-grader master notebook of a chapter's auto-checked exercises (None if it has none)."""
    checked = [item for _, item in chapter.items if isinstance(item, Exercise) and item.check]
    if not checked:
        return None
    convert = Converter(book, {}, ("Solution", "Hint"))
    setup = next(c for _, c in chapter.items if not isinstance(c, Exercise) and c.cell_type == "code")
    title = book.titles.get(chapter.name, chapter.name)
    config = {"name": chapter.name, "requirements": "requirements.txt", "init_cell": False,
              "check_all_cell": False, "export_cell": False, "show_question_points": True,
              "tests": {"ok_format": False}}
    cells = [
        _raw("# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False).strip()),
        nbformat.v4.new_markdown_cell(
            f"# Auto-checked exercises\n\n"
            f"The exercises of [{title}]({book.page(chapter.name)}) that genlib checks. Write each answer in "
            "its cell and run the check under it (it prints ✓ or what differs). Your notebook is graded on that "
            "check and on hidden ones at other random inputs; while your answer runs, genlib's own function for "
            "the exercise is not available. On Colab, run the first cell: it installs genlib."),
        nbformat.v4.new_code_cell(setup.source),
    ]
    for exercise in checked:
        question = exercise.check.removeprefix("check_")
        function = _answer_function(exercise)
        solution = exercise.solution
        if not re.search(rf"^def {function}\(", solution, re.M):
            raise ValueError(f"{chapter.name}, exercise {exercise.number}: no solution defines {function}()")
        stub = answer_code(exercise.stub)
        prompt = [b for b in exercise.prompt if b is not exercise.stub]
        cells += [
            _raw(f"# BEGIN QUESTION\nname: {question}\npoints: {sum(POINTS.values())}\ncheck_cell: false"),
            nbformat.v4.new_markdown_cell(convert.markdown("\n".join(unparse(prompt)))),
            _raw("# BEGIN SOLUTION"), nbformat.v4.new_code_cell(_solution_cell(stub, solution)), _raw("# END SOLUTION"),
            _raw("# BEGIN TESTS"),
            *[nbformat.v4.new_code_cell(_test(exercise.check, function, seed)) for seed in POINTS],
            _raw("# END TESTS"), _raw("# END QUESTION"),
        ]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(chapter.notebook.metadata))
    for k, cell in enumerate(notebook.cells):
        cell.id = f"{chapter.name}-{k}"
    return notebook


def _answer_function(exercise: Exercise) -> str:
    call = re.search(rf"\b{exercise.check}\(\s*(\w+)", "\n".join(exercise.stub.body))
    if not call:
        raise ValueError(f"exercise {exercise.number}: the stub should call {exercise.check}(<your function>)")
    return call.group(1)


def _solution_cell(stub: str, solution: str) -> str:
    """The answer cell in otter's markup: the stub's imports and check call around the solution's
    functions (removed from the student's copy) and the stub's (kept there, a string in the master)."""
    tree = ast.parse(stub)
    lines = stub.split("\n")
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    start, end = defs[0].lineno - 1, defs[-1].end_lineno
    kept = _definitions(solution, set(lines))
    if '"""' in "\n".join(lines[start:end]) or re.search(r"# *(BEGIN|END) (SOLUTION|PROMPT)", kept):
        raise ValueError(f"otter's markup cannot hold this stub or solution:\n{stub}\n{kept}")
    marked = ["# BEGIN SOLUTION NO PROMPT", kept, "# END SOLUTION",
              '""" # BEGIN PROMPT', *lines[start:end], '""" # END PROMPT']
    return "\n".join(lines[:start] + marked + lines[end:])


def _definitions(solution: str, imported: set[str]) -> str:
    """The solution's imports (but those in ``imported``), functions and classes: its check call
    (``claim(check_x(f), ...)`` in the chapter) and whatever else it runs are left to the tests."""
    lines = solution.split("\n")
    imports, definitions = [], []
    for node in ast.parse(solution).body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(lines[start - 1:node.end_lineno])
        if isinstance(node, (ast.Import, ast.ImportFrom)) and text not in imported:
            imports.append(text)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            definitions.append(text)
    return "\n\n".join((["\n".join(imports)] if imports else []) + definitions)


def _test(check: str, function: str, seed: int) -> str:
    hidden = "# HIDDEN\n" if seed else ""
    return (f"{hidden}def test_{check.removeprefix('check_')}_seed_{seed}({function}):\n"
            f"    from genlib.pages.exercises import {check}, grade\n"
            f"    result = grade({check}, {function}, seed={seed})\n"
            f"    assert result.passed, result.message\n\n"
            f"test_{check.removeprefix('check_')}_seed_{seed}({function})")


GRADING_README = """\
# Grading the auto-checked exercises

Made by `python scripts/editions.py` from the chapters (do not edit: edit `book/*.ipynb` and rerun it).
Each `<chapter>.ipynb` here is an [otter-grader](https://otter-grader.readthedocs.io) master notebook
holding that chapter's auto-checked exercises: the prompt, the stub students see, the solution, and per
question {points} points: a public test at seed 0 (the check students run in the notebook) and hidden
tests at seeds {hidden}. Every test runs `genlib.pages.exercises.grade`, which makes genlib's own
function for the exercise raise while the student's answer runs, so an answer that calls it gets no points.

| notebook | questions |
|---|---|
{rows}

Make the student notebook and the autograder of one chapter (otter-grader is in requirements-test.txt):

```bash
otter assign grading/grokking.ipynb grading/dist/grokking   # grading/dist/ is not committed
```

- `grading/dist/grokking/student/grokking.ipynb` is what students get. It needs nothing but genlib:
  its first cell installs genlib on Colab, and each answer cell ends with the check students can run.
- `grading/dist/grokking/autograder/grokking-autograder_*.zip` is the Gradescope autograder (it
  installs `requirements.txt`: genlib at this book's version, from its git tag). To grade a submission
  on your own machine without Docker: `otter run -a <that zip> submission.ipynb`.
"""


# ---------------------------------------------------------------------------------------------


def write(root: Path, out: Path) -> list[Path]:
    """Write every edition and the grading folder under ``out``; returns the files written."""
    book = Book.read(root)
    written: dict[Path, str] = {}
    rows = []
    for path in sorted((root / "book").glob("*.ipynb")):
        try:
            chapter = read_chapter(path)
            for which in EDITIONS:
                written[Path("editions", which, "book", path.name)] = _json(edition(book, chapter, which))
            gradable = master(book, chapter)
        except ValueError as error:
            raise SystemExit(f"scripts/editions.py: book/{path.name}: {error}") from error
        if gradable is not None:
            written[Path("grading", path.name)] = _json(gradable)
            names = [c.source.split("name: ")[1].split("\n")[0] for c in gradable.cells
                     if c.cell_type == "raw" and c.source.startswith("# BEGIN QUESTION")]
            rows.append(f"| `{path.name}` | {', '.join(f'`{n}`' for n in names)} |")
    written[Path("grading", "requirements.txt")] = (
        "# What the autograder installs besides otter-grader: genlib at this book's version.\n"
        f"genlib-book @ git+{book.repository}@v{book.version}\n")
    written[Path("grading", ".gitignore")] = "dist/\n"
    hidden = " and ".join(str(s) for s in POINTS if s)
    written[Path("grading", "README.md")] = GRADING_README.format(
        points=sum(POINTS.values()), hidden=hidden, rows="\n".join(rows))
    for folder in ("editions/colab/book", "editions/student/book"):  # a chapter removed: its editions go too
        for old in (out / folder).glob("*.ipynb"):
            if old.relative_to(out) not in written:
                old.unlink()
    for old in (out / "grading").glob("*.ipynb"):
        if old.relative_to(out) not in written:
            old.unlink()
    for relative, text in written.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    return sorted(written)


def _json(notebook: nbformat.NotebookNode) -> str:
    nbformat.validate(notebook)
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="where to write editions/ and grading/ (default: here)")
    args = parser.parse_args(argv)
    files = write(ROOT, args.out)
    print(f"wrote {len(files)} files under {args.out}/editions and {args.out}/grading")


if __name__ == "__main__":
    main()
