"""Run chapters at full scale and record the outcome: python scripts/record_full_run.py CHAPTER [...]

``--all`` runs every chapter of the table of contents, in its order (on a GPU: the whole book).
``--dry-run`` runs and reports the claims without recording anything (e.g. against a cache of full runs).
``--recheck`` runs against the cache of a recorded run (its GENLIB_CACHE) after its claims were
reworded, and records their new outcome while keeping the date, hardware and wall time of the run
that trained (the recheck itself reads the cache: its seconds say nothing).

Each chapter's notebook is executed top to bottom with GENLIB_SCALE=full (nbclient, no output
kept). Its claims are reported, not asserted, until recorded (see genlib/pages/claims.py); this script
writes the date, the hardware, the wall time and whether every claim held into
genlib/pages/full_runs.json, and the matching row of the timing page (book/timing.md).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from genlib.pages.claims import FULL_RUNS, RECORDING, full_runs  # noqa: E402


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU"
    cpuinfo = Path("/proc/cpuinfo")  # Linux: the CPU's model name
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())
    return f"{os.cpu_count()}-core CPU ({model})"


def run_experiment(chapter: str) -> dict:
    notebook = ROOT / "book" / f"{chapter}.ipynb"
    if not notebook.exists():
        raise SystemExit(f"chapter must name a notebook in book/; got {chapter!r}")
    with tempfile.TemporaryDirectory() as reports:
        # every claim reported, none asserted: a failing one must not stop the run before the others
        os.environ.update({"GENLIB_SCALE": "full", "GENLIB_CLAIMS_REPORT": reports, "GENLIB_PROGRESS": "0",
                           RECORDING: "1"})
        nb = nbformat.read(notebook, as_version=4)
        started = time.perf_counter()
        NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
                       ).execute()
        wall = time.perf_counter() - started
        report = json.loads((Path(reports) / f"{chapter}-full.json").read_text())
    return {"date": datetime.date.today().isoformat(), "hardware": hardware(), "wall_s": round(wall),
            "claims_held": not report["failed"], "claims": len(report["held"]) + len(report["failed"]),
            "failed": report["failed"], "not_claimed": report.get("not_claimed", [])}


RECORDED_RUNS = "## Full scale: recorded runs"  # the timing page's section this script keeps


def update_timing_page(chapter: str, record: dict) -> None:
    page = ROOT / "book" / "timing.md"
    held = "yes" if record["claims_held"] else f"no: {len(record['failed'])} of {record['claims']} did not hold"
    row = (f"| {{doc}}`{chapter}` | {record['date']} | {record['hardware']} | {record['wall_s'] / 60:.0f} min "
           f"| {held} |")
    lines, section = [], None
    for line in page.read_text().splitlines():  # only the recorded-runs table: other tables name chapters too
        section = line if line.startswith("## ") else section
        recorded = section == RECORDED_RUNS and line.startswith(f"| {{doc}}`{chapter}`")
        lines.append(row if recorded else line)
    page.write_text("\n".join(lines) + "\n")


def book_chapters() -> list[str]:
    """The notebooks of _toc.yml, in order."""
    toc = (ROOT / "_toc.yml").read_text().splitlines()
    files = [line.split("file:", 1)[1].strip().removeprefix("book/") for line in toc if "file:" in line]
    return [name for name in files if (ROOT / "book" / f"{name}.ipynb").exists()]


def rechecked(previous: dict, record: dict) -> dict:
    """``record``'s claims, with the date, hardware and wall time of the ``previous`` record (the run
    that trained), and the date of the recheck."""
    kept = {k: previous[k] for k in ("date", "hardware", "wall_s")}
    return record | kept | {"claims_rechecked": record["date"]}


def main(chapters: list[str]) -> None:
    dry_run = "--dry-run" in chapters  # run and report, record nothing (checking claims against a cached full run)
    recheck = "--recheck" in chapters
    chapters = [c for c in chapters if c not in ("--dry-run", "--recheck")]
    if chapters == ["--all"]:
        chapters = book_chapters()
    if not chapters:
        raise SystemExit(__doc__)
    for chapter in chapters:
        record = run_experiment(chapter)
        if recheck:
            if chapter not in full_runs():
                raise SystemExit(f"--recheck needs a recorded full run of {chapter}; there is none")
            record = rechecked(full_runs()[chapter], record)
        if not dry_run:
            FULL_RUNS.write_text(json.dumps(full_runs() | {chapter: record}, indent=1, sort_keys=True) + "\n")
            update_timing_page(chapter, record)
        print(f"{chapter}: {record['wall_s']} s on {record['hardware']}; every claim held: {record['claims_held']}"
              + "".join(f"\n  did not hold: {s}" for s in record["failed"]))


if __name__ == "__main__":
    main(sys.argv[1:])
