"""The book on Colab as Colab really is: its package versions, its `google.colab`, our bootstrap cell.

A virtual environment is built with the versions of Colab's image (googlecolab/backend-info,
pip-freeze.txt of 2026-08-19): ipywidgets 7.7.1, ipykernel 6.17.1, IPython 7.34.0, notebook 6.5.7,
numpy 2.1.3, matplotlib 3.10.0, scikit-learn 1.6.1, tqdm 4.67.3. Two things differ, as near as this
machine allows: Python is 3.11, not 3.13, and torch is the 2.13.0 CPU build on this disk, not
2.11.0 (any other torch here is a multi-GB download). A stub `google.colab` is imported at kernel
start, so the bootstrap cell takes its Colab branch. The cell is run twice, installing genlib from
a git tag `v<version>` of a local clone of this repository (GENLIB_BOOK_REPOSITORY, one setting);
the test fails if pip changed any package Colab had, or installed genlib twice. Then every chapter
runs top to bottom in that environment at quick scale.

Runs come from ``$GENLIB_CACHE`` when set: the test command sets it to the cache the book build
has just filled, with the same torch and genlib source, so the cache keys match. The chapters'
plotting, widgets (ipywidgets 7) and every claim then run under Colab's versions, but training
itself does not; set GENLIB_COLAB_TRAIN=1 to train from an empty cache (about 7 minutes on 2 cores).
The environment is kept in _build/colab-venv and rebuilt when the versions below change.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import genlib
from genlib.pages.bootstrap import CELL

ROOT = Path(__file__).resolve().parents[1]
COLAB = {  # Colab's versions; torch: the nearest build on this machine (see above)
    "ipywidgets": "7.7.1", "ipykernel": "6.17.1", "ipython": "7.34.0", "jupyter-client": "7.4.9",
    "traitlets": "5.7.1", "notebook": "6.5.7", "nbformat": "5.11.1", "numpy": "2.1.3",
    "matplotlib": "3.10.0", "scikit-learn": "1.6.1", "tqdm": "4.67.3", "torch": "2.13.0",
}
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def run(*args: str, **kw) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def freeze(python: Path) -> dict[str, str]:
    """{normalized name: version} of everything pip sees in the environment."""
    listed = json.loads(run(str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"))
    return {p["name"].lower().replace("_", "-"): p["version"].split("+")[0] for p in listed}  # 2.13.0+cpu: 2.13.0


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(kernel environment variables, the venv's python): Colab's packages, genlib not installed."""
    venv = ROOT / "_build" / "colab-venv"
    python = venv / "bin" / "python"
    pins = [f"{name}=={version}" for name, version in COLAB.items()]
    stamp, want = venv / ".colab-versions", hashlib.sha256(" ".join(pins).encode()).hexdigest()
    fresh = python.exists() and stamp.exists() and stamp.read_text() == want
    if fresh:  # an earlier run installed genlib; a broken one may have changed more
        run(str(python), "-m", "pip", "uninstall", "-q", "-y", "genlib-book")
        fresh = all(freeze(python).get(name) == version for name, version in COLAB.items())
    if not fresh:
        run(sys.executable, "-m", "venv", "--clear", str(venv))  # the same Python as the tests: 3.11 here
        run(str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins)
        stamp.write_text(want)
    stub = tmp_path_factory.mktemp("colab-stub")
    (stub / "google" / "colab").mkdir(parents=True)  # `google` stays a namespace package
    (stub / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s own module."""\n')
    (stub / "sitecustomize.py").write_text("import google.colab  # noqa: F401  (as in every Colab kernel)\n")
    kernels = tmp_path_factory.mktemp("jupyter") / "kernels" / "colab"
    kernels.mkdir(parents=True)
    clone = tmp_path_factory.mktemp("repo") / "generalization-book"
    run("git", "clone", "-q", str(ROOT), str(clone))
    run("git", "-C", str(clone), "tag", "-f", f"v{genlib.__version__}")
    cache = os.environ.get("GENLIB_CACHE") if not os.environ.get("GENLIB_COLAB_TRAIN") else None
    env = {"PYTHONPATH": str(stub), "GENLIB_BOOK_REPOSITORY": f"git+file://{clone}", "GENLIB_SCALE": "quick",
           "GENLIB_PROGRESS": "0", "GENLIB_CACHE": cache or str(tmp_path_factory.mktemp("cache"))}
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Colab-like", "language": "python", "env": env}
    (kernels / "kernel.json").write_text(json.dumps(spec))
    return kernels.parents[1], python


def execute(notebook: nbformat.NotebookNode, jupyter_path: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    where = {"metadata": {"path": str(ROOT / "book")}}
    NotebookClient(notebook, timeout=1200, kernel_name="colab", resources=where).execute()
    return notebook


@pytest.fixture(scope="module")
def installed(colab, tmp_path_factory):
    """Run the bootstrap cell twice in a Colab-like kernel; (pip list before, after)."""
    jupyter_path, python = colab
    before = freeze(python)
    check = "import genlib, google.colab; print(genlib.__version__, genlib.__file__)"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (CELL, CELL, check)])
    with pytest.MonkeyPatch.context() as monkeypatch:
        execute(notebook, jupyter_path, monkeypatch)
    return before, freeze(python), notebook.cells[-1].outputs[0]["text"]


def test_bootstrap_installs_genlib_and_changes_nothing_colab_ships(installed):
    before, after, printed = installed
    assert printed.split()[0] == genlib.__version__ and "colab-venv" in printed  # installed, not this checkout
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    assert not changed, f"installing genlib changed Colab's packages: {changed}"
    assert set(after) - set(before) == {"genlib-book"}, "the bootstrap must install genlib and nothing else"
    assert {name: after.get(name) for name in COLAB} == COLAB, "the environment is not Colab's"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_runs_top_to_bottom_in_the_colab_like_environment(path, installed, colab, monkeypatch):
    notebook = execute(nbformat.read(path, as_version=4), colab[0], monkeypatch)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors  # nbclient raises on the first error; this guards against allow_errors
