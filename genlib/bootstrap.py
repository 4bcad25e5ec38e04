"""The first code cell of every notebook (tests/test_notebooks.py checks that they all carry it).

On Colab it installs genlib at the book's version, from the repository named in _config.yml;
Colab's own torch satisfies genlib's requirement, so it is kept. Elsewhere, and on a second run,
it does nothing.
"""
from . import __version__

REPOSITORY = "https://github.com/genlib-book/generalization-book"  # must equal _config.yml's

CELL = f"""\
# Setup: on Colab, install genlib at this book's version (Colab's torch is kept).
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("genlib") is None:
    BOOK = "git+{REPOSITORY}@v{__version__}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", BOOK], check=True)"""
