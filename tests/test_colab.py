"""The book on Colab as Colab really is: its package versions, its `google.colab`, our bootstrap cell.

A virtual environment is built with the versions of Colab's image (googlecolab/backend-info,
pip-freeze.txt of 2026-08-19): ipywidgets 7.7.1, ipykernel 6.17.1, IPython 7.34.0, notebook 6.5.7,
numpy 2.1.3, matplotlib 3.10.0, scikit-learn 1.6.1, tqdm 4.67.3. Python is Colab's 3.13 where this
machine has one: $GENLIB_COLAB_PYTHON when set, else a working `python3.13` on PATH; otherwise it is the
tests' own Python (3.11 here), and the test says which ran (printed, in its failure messages and as the
`colab_python` property of the JUnit report). Torch is the 2.13.0 CPU build, not Colab's 2.11.0 (any
other torch here is a multi-GB download). A stub `google.colab` is imported at kernel
start, so the bootstrap cell takes its Colab branch. The cell is run twice, installing genlib from
a git tag `v<version>` of a local clone of this repository (GENLIB_BOOK_REPOSITORY, one setting);
the test fails if pip changed any package Colab had, or installed genlib twice. Then every chapter
runs top to bottom in that environment at quick scale, as the launch buttons open it: its Colab edition
(editions/colab/book, made by scripts/editions.py; tests/test_editions.py checks that it is current and
keeps every code cell of the chapter but the solutions).

Runs come from ``$GENLIB_CACHE`` when set: the test command sets it to the cache the book build
has just filled, with the same torch and genlib source, so the cache keys match. The chapters'
plotting, widgets (ipywidgets 7) and every claim then run under Colab's versions, but training
itself does not; set GENLIB_COLAB_TRAIN=1 to train from an empty cache (about 7 minutes on 2 cores).
The environment is kept in _build/colab-venv and rebuilt when the versions below or its Python change.
"""
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import genlib
from genlib.pages.bootstrap import CELL

ROOT = Path(__file__).resolve().parents[1]
COLAB = {  # Colab's versions; torch: the nearest build on this machine (see above)
    "ipywidgets": "7.7.1", "ipykernel": "6.17.1", "ipython": "7.34.0", "jupyter-client": "7.4.9",
    "traitlets": "5.7.1", "notebook": "6.5.7", "nbformat": "5.11.1", "numpy": "2.1.3",
    "matplotlib": "3.10.0", "scikit-learn": "1.6.1", "tqdm": "4.67.3", "torch": "2.13.0",
}
NOTEBOOKS = sorted((ROOT / "editions" / "colab" / "book").glob("*.ipynb"))  # what the launch buttons open


def run(*args: str, **kw) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def python_version_of(python: str) -> str:
    return run(python, "-c", "import platform; print(platform.python_version())").strip()


def colab_python() -> tuple[str, str]:
    """(interpreter, its version) for the Colab-like environment: Colab's Python 3.13 where there is one."""
    named = os.environ.get("GENLIB_COLAB_PYTHON")  # must work when named
    if named:
        return named, python_version_of(named)
    found = shutil.which("python3.13")
    if found:
        try:  # a pyenv shim is on PATH even when no 3.13 is selected, and then fails
            return found, python_version_of(found)
        except (OSError, subprocess.CalledProcessError):
            pass
    return sys.executable, platform.python_version()


def freeze(python: Path) -> dict[str, str]:
    """{normalized name: version} of everything pip sees in the environment."""
    listed = json.loads(run(str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"))
    return {p["name"].lower().replace("_", "-"): p["version"].split("+")[0] for p in listed}  # 2.13.0+cpu: 2.13.0


@pytest.fixture(scope="module")
def colab(tmp_path_factory, record_testsuite_property):
    """(jupyter path, the venv's python, which Python ran): Colab's packages, genlib not installed."""
    venv = ROOT / "_build" / "colab-venv"
    python = venv / "bin" / "python"
    interpreter, python_version = colab_python()
    which = f"Python {python_version} ({interpreter}{'' if python_version.startswith('3.13') else '; Colab runs 3.13'})"
    print(f"Colab-like environment on {which}")
    record_testsuite_property("colab_python", which)
    pins = [f"{name}=={version}" for name, version in COLAB.items()]
    stamp, want = venv / ".colab-versions", hashlib.sha256(" ".join(pins).encode()).hexdigest()
    fresh = python.exists() and stamp.exists() and stamp.read_text() == want
    if fresh:  # an earlier run installed genlib; a broken one may have changed more
        run(str(python), "-m", "pip", "uninstall", "-q", "-y", "genlib-book")
        fresh = all(freeze(python).get(name) == version for name, version in COLAB.items())
        fresh = fresh and python_version_of(str(python)) == python_version
    if not fresh:
        run(interpreter, "-m", "venv", "--clear", str(venv))
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
    return kernels.parents[1], python, which


def execute(notebook: nbformat.NotebookNode, jupyter_path: Path, monkeypatch,
            folder: Path = ROOT / "book") -> nbformat.NotebookNode:
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    where = {"metadata": {"path": str(folder)}}
    NotebookClient(notebook, timeout=1200, kernel_name="colab", resources=where).execute()
    return notebook


@pytest.fixture(scope="module")
def installed(colab, tmp_path_factory):
    """Run the bootstrap cell twice in a Colab-like kernel; (pip list before, after)."""
    jupyter_path, python, _ = colab
    before = freeze(python)
    check = "import genlib, google.colab; print(genlib.__version__, genlib.__file__)"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (CELL, CELL, check)])
    with pytest.MonkeyPatch.context() as monkeypatch:
        execute(notebook, jupyter_path, monkeypatch)
    return before, freeze(python), notebook.cells[-1].outputs[0]["text"]


def test_bootstrap_installs_genlib_and_changes_nothing_colab_ships(installed, colab):
    before, after, printed = installed
    on = f"on {colab[2]}"
    assert printed.split()[0] == genlib.__version__ and "colab-venv" in printed, on  # installed, not this checkout
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    assert not changed, f"installing genlib changed Colab's packages {on}: {changed}"
    assert set(after) - set(before) == {"genlib-book"}, f"the bootstrap must install genlib and nothing else ({on})"
    assert {name: after.get(name) for name in COLAB} == COLAB, f"the environment is not Colab's ({on})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_runs_top_to_bottom_in_the_colab_like_environment(path, installed, colab, monkeypatch):
    try:
        notebook = execute(nbformat.read(path, as_version=4), colab[0], monkeypatch, path.parent)
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed on {colab[2]}:\n{error}")
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"on {colab[2]}"  # nbclient raises on the first error; this guards against allow_errors
