"""Where each chapter's time goes at quick scale, from an empty cache (genlib.running.profile).

    python benchmarks/profile_chapters.py                   # every chapter, a markdown table
    python benchmarks/profile_chapters.py sharpness grokking --save profile.json

Each notebook is executed as the book build executes it (cells tagged skip-execution skipped), in a
fresh kernel with an empty cache directory, with a first cell that starts a
:class:`~genlib.running.profile.Profile` and a last one that prints its seconds. The table gives
seconds per kind of work and the notebook's wall time, kernel start included.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from genlib.running.profile import KINDS as COLUMNS  # the table's columns: each kind of work

BOOK = Path(__file__).resolve().parents[1] / "book"
START = ("import genlib.experiments  # every module that imports train(), so the profile wraps it there too\n"
         "from genlib.running.profile import Profile as _Profile\n_profile = _Profile().start()")
REPORT = ("import json as _json\n"
          "print('PROFILE', _json.dumps(_profile.stop().seconds() | {'experiments': _profile.by_experiment}))")


def profile_chapter(name: str) -> dict[str, float]:
    """Seconds per kind of work for one chapter, plus ``total`` (in the kernel) and ``wall``."""
    nb = nbformat.read(BOOK / f"{name}.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(START))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    with tempfile.TemporaryDirectory() as cache:
        env = {"GENLIB_CACHE": cache, "GENLIB_SCALE": "quick", "GENLIB_PROGRESS": "0"}
        previous = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            started = time.perf_counter()
            NotebookClient(nb, timeout=1800, resources={"metadata": {"path": str(BOOK)}}).execute()
            wall = time.perf_counter() - started
        finally:
            for k, v in previous.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    printed = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    seconds = json.loads(printed.split("PROFILE", 1)[1])
    return seconds | {"wall": wall}


def table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per chapter and a total row, seconds rounded."""
    head = ["chapter", *COLUMNS, "wall (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals = dict.fromkeys([*COLUMNS, "wall"], 0.0)
    for name, s in rows.items():
        # the file name as the link's text: the chapters' titles would widen the table past the page
        link = f"{{doc}}`{name.replace('_', ' ')} <{name}>`"
        lines.append(f"| {link} | " + " | ".join(f"{s[c]:.0f}" for c in (*COLUMNS, "wall")) + " |")
        for c in totals:
            totals[c] += s[c]
    lines.append("| **all** | " + " | ".join(f"**{totals[c]:.0f}**" for c in (*COLUMNS, "wall")) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter names (default: every notebook in book/)")
    parser.add_argument("--save", help="also write every chapter's seconds (and per experiment) to this JSON file")
    args = parser.parse_args()
    names = args.chapters or sorted(p.stem for p in BOOK.glob("*.ipynb"))
    rows = {}
    for name in names:
        rows[name] = profile_chapter(name)
        print(f"{name}: " + json.dumps(rows[name]), file=sys.stderr, flush=True)
    print(table(rows))
    if args.save:
        Path(args.save).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
