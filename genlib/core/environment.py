"""What the environment asks of genlib's core: progress bars (``$GENLIB_PROGRESS``) and where files
are kept (``$GENLIB_CACHE``). The scale (``$GENLIB_SCALE``) belongs to running experiments:
:mod:`genlib.running.scale`."""
from __future__ import annotations

import os
from pathlib import Path


def show_progress(requested: bool | None = None) -> bool:
    """Whether to draw progress bars: as requested, else on unless ``$GENLIB_PROGRESS=0``."""
    return requested if requested is not None else os.environ.get("GENLIB_PROGRESS", "1") != "0"


def cache_dir() -> Path:
    """``$GENLIB_CACHE`` if set, else ``~/.cache/genlib``: trained runs, and downloaded data under data/."""
    return Path(os.environ.get("GENLIB_CACHE") or Path.home() / ".cache" / "genlib")
