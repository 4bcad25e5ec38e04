"""The first code cell of every notebook (tests/test_notebooks.py checks that they all carry it).

On Colab it installs genlib at the book's version (the git tag ``v<version>``) from the repository
named in _config.yml, or from ``$GENLIB_BOOK_REPOSITORY`` when set (tests/test_colab.py points it
at a local clone). genlib's requirements are met by what Colab ships (torch, numpy, matplotlib,
ipywidgets 7, scikit-learn, tqdm), so pip installs genlib alone. Elsewhere, and once genlib is
installed, it does nothing.
"""
from .. import __version__

REPOSITORY = "https://github.com/genlib-book/generalization-book"  # must equal _config.yml's

CELL = f"""\
# Setup: on Colab, install genlib at this book's version (Colab's own packages are kept).
import importlib.util, os, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("genlib") is None:
    BOOK = os.environ.get("GENLIB_BOOK_REPOSITORY", "git+{REPOSITORY}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"{{BOOK}}@v{__version__}"], check=True)"""
